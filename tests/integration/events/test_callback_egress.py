"""Callback destinations go through the egress rules of ``fetch``: no loopback, private, link-local,
multicast or metadata address (IPv4, IPv6, IPv4 inside IPv6, numeric host spellings, names resolving
there) unless FABRIC_CALLBACK_ALLOW names it; the POST connects only to the addresses checked when
it connects (a name rebound to loopback after the subscription was made is refused)."""

from __future__ import annotations

import os
import threading

import pytest

from shared.errors import ConfigurationError, InvalidInput
from shared.events.delivery import CallbackClient, CallbackDenied, CallbackPolicy, DeliveryFailed, DeliveryKey
from tests.helpers import QuietHandler, http_server, resolver_for

REFUSED = [
    "http://127.0.0.1:10000/x",
    "http://localhost/x",
    "http://169.254.169.254/latest/meta-data/",
    "http://168.63.129.16/machine?comp=goalstate",
    "http://10.1.2.3/x",
    "http://192.168.0.1/x",
    "http://172.16.0.1/x",
    "http://100.64.0.1/x",
    "http://0.0.0.0/x",
    "http://224.0.0.1/x",
    "http://[::1]/x",
    "http://[::ffff:127.0.0.1]/x",
    "http://[::ffff:a9fe:a9fe]/x",
    "http://[64:ff9b::a00:1]/x",
    "http://[2002:7f00:1::]/x",
    "http://[fe80::1]/x",
    "http://[fd00:ec2::254]/x",
    "http://[ff02::1]/x",
    "http://internal.test/x",
    "http://mixed.test/x",
]
MALFORMED = [
    "http://2130706433/x",
    "http://0x7f.0.0.1/x",
    "http://0177.0.0.1/x",
    "http://127.1/x",
    "http://user:pw@hooks.test/x",
    "ftp://hooks.test/x",
    "http:///x",
]
RESOLVER = resolver_for(
    {
        "localhost": ["127.0.0.1", "::1"],
        "internal.test": ["10.0.0.7"],
        "mixed.test": ["169.254.169.254", "fd00::1"],
        "hooks.test": ["93.184.215.14"],
    }
)


@pytest.mark.parametrize("url", REFUSED)
def test_non_public_destinations_are_refused(url: str) -> None:
    with pytest.raises(CallbackDenied) as refused:
        CallbackPolicy(resolver=RESOLVER).check(url)
    assert refused.value.field == "url"


@pytest.mark.parametrize("url", MALFORMED)
def test_ambiguous_or_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput):
        CallbackPolicy(resolver=RESOLVER).check(url)


def test_public_and_unresolvable_hosts_pass_the_subscribe_check() -> None:
    policy = CallbackPolicy(resolver=RESOLVER)
    policy.check("https://hooks.test/x")
    policy.check("https://nowhere.test/x")  # re-checked (and failing) at each delivery
    assert policy.addresses("hooks.test", 443) == ["93.184.215.14"]


def test_the_admin_allow_list_names_hosts_addresses_and_networks() -> None:
    policy = CallbackPolicy("localhost, 10.0.0.0/8, [fd00::1], 169.254.169.254", resolver=RESOLVER)
    assert policy.addresses("localhost", 80) == ["127.0.0.1", "::1"]
    assert policy.addresses("internal.test", 80) == ["10.0.0.7"]
    assert policy.addresses("mixed.test", 80) == ["169.254.169.254", "fd00::1"]
    with pytest.raises(CallbackDenied):
        policy.addresses("192.168.1.1", 80)
    only_v4 = CallbackPolicy("127.0.0.1", resolver=RESOLVER)
    assert only_v4.addresses("localhost", 80) == ["127.0.0.1"]  # ::1 is not allowed: never connected to
    with pytest.raises(ConfigurationError):
        CallbackPolicy("not a host!")


class Receiver(QuietHandler):
    bodies: list[bytes] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            self.bodies.append(self.headers["Host"].encode() + b" " + body)
        self.send_json(200, b"{}")


def test_a_delivery_connects_only_to_addresses_checked_when_it_connects() -> None:
    key = DeliveryKey(os.urandom(32))
    with http_server(Receiver) as where:
        port = int(where.rsplit(":", 1)[1])
        names = {"hooks.test": ["127.0.0.1"]}
        resolver = resolver_for(names)
        refused = CallbackClient(key, CallbackPolicy(resolver=resolver))
        with pytest.raises(DeliveryFailed, match="refused"):
            refused.post(f"http://hooks.test:{port}/cb", {"n": 1})
        refused.close()
        assert Receiver.bodies == []

        allowed = CallbackClient(key, CallbackPolicy("hooks.test", resolver=resolver))
        allowed.post(f"http://hooks.test:{port}/cb", {"n": 2})
        assert Receiver.bodies == [f"hooks.test:{port}".encode() + b' {"n":2}']
        allowed.close()

        # DNS rebinding: a name that passed (public) at subscribe time now resolves to loopback
        rebinding = CallbackClient(key, CallbackPolicy(resolver=resolver))
        names["rebind.test"] = ["93.184.215.14"]
        rebinding.policy.check(f"http://rebind.test:{port}/cb")
        names["rebind.test"] = ["127.0.0.1"]
        with pytest.raises(DeliveryFailed, match="refused"):
            rebinding.post(f"http://rebind.test:{port}/cb", {"n": 3})
        with pytest.raises(DeliveryFailed, match="refused"):
            rebinding.post(f"http://[::ffff:127.0.0.1]:{port}/cb", {"n": 4})
        with pytest.raises(DeliveryFailed, match="refused"):
            rebinding.post(f"http://2130706433:{port}/cb", {"n": 5})
        rebinding.close()
        assert len(Receiver.bodies) == 1
