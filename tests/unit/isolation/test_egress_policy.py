"""The egress policy without a network: allow-list matching, malformed URLs and patterns, the SSRF
address checks over a fake resolver, the fetch call-out's parameter checks, the error types.
(fetch against real local servers and through a real region: tests/integration/isolation/test_egress.py.)"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import pytest

from shared.errors import FabricError, InvalidInput
from shared.isolation.callout import HostCallOuts
from shared.isolation.egress import EgressDenied, EgressPolicy, EgressTooLarge, FetchFailed, non_public_reason
from tests.helpers import resolver_for

# -- matching ---------------------------------------------------------------------------------------
PATTERNS = ["api.example.com", "*.chain.example:8545", "*.svc.example", "127.0.0.1:9000", "localhost:9001"]


@pytest.mark.parametrize(
    "url, allowed",
    [
        ("https://api.example.com/v1?q=1", True),
        ("http://api.example.com/", True),
        ("https://API.Example.COM./x", True),  # case and a trailing dot do not matter
        ("https://api.example.com:443/", True),  # the default port, spelled out
        ("https://api.example.com:8443/", False),  # no port in the entry: the scheme's port only
        ("http://api.example.com:443/", False),  # 443 is not http's port
        ("https://www.api.example.com/", False),  # an exact entry has no subdomains
        ("https://example.com/", False),
        ("https://api.example.com.evil.test/", False),
        ("http://rpc.chain.example:8545/", True),
        ("https://a.b.chain.example:8545/", True),  # any depth of subdomain
        ("http://chain.example:8545/", False),  # *.suffix excludes the apex
        ("http://rpc.chain.example/", False),  # the entry's port only
        ("http://rpc.chain.example:8546/", False),
        ("http://xchain.example:8545/", False),  # a suffix match is on a label boundary
        ("https://x.svc.example/", True),
        ("https://svc.example/", False),
        ("http://127.0.0.1:9000/", True),
        ("http://127.0.0.1:9001/", False),
        ("http://127.0.0.1/", False),
        ("http://localhost:9001/", True),
        ("http://[::1]:9000/", False),
        ("https://bücher.svc.example/", True),  # IDNA: compared as xn--bcher-kva.svc.example
    ],
)
def test_allow_list_matching(url, allowed):
    policy = EgressPolicy(PATTERNS)
    if allowed:
        assert policy.match(url).host == urlsplit(url).hostname.rstrip(".").encode("idna").decode().lower()
    else:
        with pytest.raises(EgressDenied) as caught:
            policy.match(url)
        assert caught.value.code == "egress_denied" and caught.value.status == 403
        assert "is not in the cryptlet's egress allow-list" in caught.value.detail


def test_denial_names_the_host_and_an_empty_list_allows_nothing():
    with pytest.raises(EgressDenied) as caught:
        EgressPolicy([]).match("https://api.example.com/secret?token=1")
    assert caught.value.detail == "host api.example.com is not in the cryptlet's egress allow-list"
    assert "secret" not in caught.value.detail and caught.value.problem()["code"] == "egress_denied"
    with pytest.raises(EgressDenied, match="host example.com:8080 is not"):
        EgressPolicy(["example.com"]).match("http://example.com:8080/")


@pytest.mark.parametrize(
    "url, words",
    [
        ("ftp://api.example.com/", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("https://user:pw@api.example.com/", "user information"),
        ("https:///nohost", "no host"),
        ("http://a b.example/", "not a host name"),
    ],
)
def test_malformed_urls_are_invalid_input(url, words):
    with pytest.raises(InvalidInput) as caught:
        EgressPolicy(PATTERNS).match(url)
    assert words in caught.value.detail and caught.value.field == "url"


@pytest.mark.parametrize("pattern", ["*.", "http://x.example", "X.example", "x.example:99999", "*x.example", ""])
def test_bad_patterns_are_refused(pattern):
    with pytest.raises(InvalidInput):
        EgressPolicy([pattern])


# -- SSRF -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "address, reason",
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("172.16.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-global"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fd00::1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("64:ff9b::a00:1", "private"),
        ("93.184.216.34", None),
        ("2606:2800:220:1:248:1893:25c8:1946", None),
    ],
)
def test_non_public_addresses(address, reason):
    assert non_public_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    "addresses",
    [["127.0.0.1"], ["169.254.169.254"], ["93.184.216.34", "10.0.0.7"], ["::ffff:192.168.1.1"], ["fe80::1%eth0"]],
)
def test_a_hostname_resolving_to_a_non_public_address_is_refused(addresses):
    policy = EgressPolicy(["internal.example"], resolver=resolver_for({"internal.example": addresses}))
    with pytest.raises(EgressDenied) as caught:
        policy.check("https://internal.example/")
    assert "internal.example resolves to a" in caught.value.detail
    assert addresses[-1] not in caught.value.detail  # the cryptlet does not learn internal addresses


def test_checked_addresses_are_the_ones_connected_to():
    resolve = resolver_for({"api.example.com": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]})
    target = EgressPolicy(["api.example.com"], resolver=resolve).check("https://api.example.com/x")
    assert target.addresses == ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")
    assert resolve.lookups == ["api.example.com"]
    # explicit IP literal and localhost entries may be non-public; an IP literal is not resolved at all
    assert EgressPolicy(["10.0.0.7"], resolver=resolve).check("http://10.0.0.7/").addresses == ("10.0.0.7",)
    assert resolve.lookups == ["api.example.com"]
    local = EgressPolicy(["localhost:81"], resolver=resolver_for({"localhost": ["127.0.0.1"]}))
    assert local.check("http://localhost:81/").addresses == ("127.0.0.1",)


def test_unresolvable_host_is_a_fetch_failure():
    with pytest.raises(FetchFailed) as caught:
        EgressPolicy(["nowhere.example"], resolver=resolver_for({})).check("https://nowhere.example/")
    assert caught.value.code == "fetch_failed" and caught.value.status == 502
    assert caught.value.detail.startswith("could not resolve nowhere.example")


# -- the call-out's parameter checks (before any request) --------------------------------------------
@pytest.mark.parametrize(
    "params, field",
    [
        ({}, "url"),
        ({"url": 5}, "url"),
        ({"url": "http://x.example/", "method": 1}, "method"),
        ({"url": "http://x.example/", "headers": ["a"]}, "headers"),
        ({"url": "http://x.example/", "headers": {"a": 1}}, "headers"),
        ({"url": "http://x.example/", "body_b64": "***"}, "body_b64"),
        ({"url": "http://x.example/", "timeout_s": -1}, "timeout_s"),
        ({"url": "http://x.example/", "timeout_s": True}, "timeout_s"),
        ({"url": "http://x.example/", "follow": False}, "follow"),
    ],
)
def test_fetch_call_out_validates_its_parameters(params, field):
    with pytest.raises(InvalidInput) as caught:
        HostCallOuts("probe", egress=["x.example"])("fetch", params)
    assert caught.value.field == field


def test_fabric_error_hierarchy():
    for error in (EgressDenied("x"), EgressTooLarge("x"), FetchFailed("x")):
        assert isinstance(error, FabricError)
    assert (EgressDenied.status, EgressTooLarge.code, FetchFailed.status) == (403, "egress_too_large", 502)
