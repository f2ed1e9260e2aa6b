"""Subscribers, signed requests, the subscription API and its CLI over real Azurite and a real dev host.

No mocks: requests are signed with real secp256k1 keys, the EIP-191 hash is checked against
``eth_account`` and rows are read back from the table the event engine reads.
"""

from __future__ import annotations

import json
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor

import coincurve
import httpx
import pytest

from shared.encoding import canonical_json, to_hex
from shared.envelope import SECP256K1_N, address_of, eip191_hash, sign_digest
from shared.errors import VerificationError
from shared.events import webhooks
from shared.events.subscribers import HEADER, sign_request
from shared.events.subscriptions import Subscription, SubscriptionStore, validate_spec
from shared.storage import table_client
from tests.unit.events.test_signed_requests import CRYPTLET, new_key, now_ms, public_hex, spec  # pure helpers


def post_signed(http, path: str, content: bytes, signature: str | None):
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers[HEADER] = signature
    return http.post(path, content=content, headers=headers)


def problem(response, status: int, field: str | None = None, reason: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    if field is not None:
        assert body.get("field") == field, body
    if reason is not None:
        assert body.get("reason") == reason, body
    return body


# -- over the dev host -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cryptlet(registered) -> str:
    assert registered["name"] == CRYPTLET  # the default sample of `registered`
    return CRYPTLET


@pytest.fixture(scope="module")
def admin(fabric_host):
    with fabric_host.client(key=fabric_host.admin_key) as http:
        yield http


@pytest.fixture(scope="module")
def http(fabric_host):
    with fabric_host.client() as client:
        yield client


_counter = iter(range(10**6))


@pytest.fixture
def subscriber(admin) -> tuple[str, coincurve.PrivateKey]:
    """A freshly registered subscriber: (name, private key)."""
    name, key = f"desk_{next(_counter)}_{os.urandom(3).hex()}", new_key()
    response = admin.post("/api/subscribers", json={"name": name, "public_key": public_hex(key)})
    assert response.status_code == 201, response.text
    return name, key


def subscribe(http, who, body: dict, **sign) -> httpx.Response:
    name, key = who
    content, signature = sign_request(key.secret, name, "subscribe", body, **sign)
    return post_signed(http, "/api/subscriptions", content, signature)


def test_register_subscriber_is_admin_only_and_unique(fabric_host, admin, http) -> None:
    key = new_key()
    body = {"name": "gold_desk_admin", "public_key": public_hex(key)}
    assert http.post("/api/subscribers", json=body).status_code == 401  # function key
    with fabric_host.client(key=None) as anonymous:
        assert anonymous.post("/api/subscribers", json=body).status_code == 401
    created = admin.post("/api/subscribers", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["address"] == address_of(key.public_key.format())
    assert created.json()["public_key"] == public_hex(key)
    problem(admin.post("/api/subscribers", json=body), 409, "$.name")
    compressed = new_key()
    again = admin.post("/api/subscribers", json={"name": "compressed_desk", "public_key": public_hex(compressed, True)})
    assert again.status_code == 201 and again.json()["public_key"] == public_hex(compressed)  # stored uncompressed
    problem(admin.post("/api/subscribers", json={"name": "Bad-Name", "public_key": public_hex(key)}), 400, "$.name")
    problem(
        admin.post("/api/subscribers", json={"name": "bad_key", "public_key": "0x04" + "00" * 64}), 400, "$.public_key"
    )
    problem(admin.post("/api/subscribers", json={"name": "bad_key", "public_key": "0xzz"}), 400, "$.public_key")
    problem(admin.post("/api/subscribers", json={"name": "bad_key", "public_key": public_hex(key), "x": 1}), 400, "$.x")
    listed = http.get("/api/subscribers")
    assert listed.status_code == 200
    names = {s["name"]: s for s in listed.json()["subscribers"]}
    assert names["gold_desk_admin"]["address"] == address_of(key.public_key.format())
    assert "private_key" not in listed.text


def test_signed_subscribe_creates_a_valid_row(fabric_host, cryptlet, http, subscriber) -> None:
    body = spec()
    started = now_ms()
    response = subscribe(http, subscriber, body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == {"subscription"}  # no webhook secret for a cron trigger
    sub = created["subscription"]
    assert sub["id"].startswith("sub_") and sub["subscriber"] == subscriber[0] and sub["status"] == "active"
    assert response.headers["location"] == f"/api/subscriptions/{sub['id']}"
    assert started <= sub["created_ms"] <= now_ms()
    assert "webhook_secret_sealed" not in sub
    # the row the event engine reads
    store = SubscriptionStore(table_client(fabric_host.storage, f"{fabric_host.table_prefix}subscriptions"))
    stored, etag = store.get(sub["id"])
    assert etag and isinstance(stored, Subscription)
    assert stored.public() == sub and stored.webhook_secret_sealed is None
    assert validate_spec(
        {k: getattr(stored, k) for k in ("cryptlet", "method", "args", "trigger", "target", "deadline_ms", "missed")},
        now_ms=stored.created_ms,
    ) == validate_spec(body, now_ms=stored.created_ms)
    shown = http.get(f"/api/subscriptions/{sub['id']}")
    assert shown.status_code == 200 and shown.json() == sub
    mine = http.get("/api/subscriptions", params={"subscriber": subscriber[0]}).json()["subscriptions"]
    assert [s["id"] for s in mine] == [sub["id"]]
    assert (
        http.get("/api/subscriptions", params={"subscriber": subscriber[0], "status": "cancelled"}).json()[
            "subscriptions"
        ]
        == []
    )
    problem(http.get("/api/subscriptions", params={"status": "sleeping"}), 400, "status")
    problem(http.get("/api/subscriptions/sub_000000000000000000000000"), 404)
    problem(http.get("/api/subscriptions/nonsense'"), 404)


def test_bad_signatures_are_refused_before_anything_is_spent(cryptlet, http, subscriber, admin) -> None:
    name, key = subscriber
    nonce = to_hex(os.urandom(16))
    content, signature = sign_request(key.secret, name, "subscribe", spec(), nonce=nonce)
    # missing or malformed header
    problem(post_signed(http, "/api/subscriptions", content, None), 401, HEADER, "signature_missing")
    problem(post_signed(http, "/api/subscriptions", content, "0x1234"), 401, HEADER, "malformed_signature")
    # tampered body: one byte of the signed document changed
    tampered = content.replace(b'"method":"rules"', b'"method":"validate"')
    assert tampered != content
    problem(post_signed(http, "/api/subscriptions", tampered, signature), 401, HEADER, "signature_mismatch")
    # wrong key
    _, wrong = sign_request(new_key().secret, name, "subscribe", spec(), nonce=nonce)
    problem(post_signed(http, "/api/subscriptions", content, wrong), 401, HEADER, "signature_mismatch")
    # high-s twin of the valid signature (same signer, malleated)
    raw = bytes.fromhex(signature[2:])
    s = SECP256K1_N - int.from_bytes(raw[32:64], "big")
    high = raw[:32] + s.to_bytes(32, "big") + bytes([55 - raw[64]])
    problem(post_signed(http, "/api/subscriptions", content, to_hex(high)), 401, HEADER, "high_s")
    # none of these spent the nonce: the genuine request still goes through, once
    assert post_signed(http, "/api/subscriptions", content, signature).status_code == 201
    problem(post_signed(http, "/api/subscriptions", content, signature), 409, "$.nonce", "replayed_nonce")


def test_a_nonce_is_spent_once_under_concurrency(fabric_host, cryptlet, subscriber) -> None:
    name, key = subscriber
    content, signature = sign_request(key.secret, name, "subscribe", spec(target={"type": "history"}))

    def send(_: int) -> int:
        with fabric_host.client() as client:
            return post_signed(client, "/api/subscriptions", content, signature).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(send, range(8)))
    assert statuses == [201] + [409] * 7
    with fabric_host.client() as client:
        mine = client.get("/api/subscriptions", params={"subscriber": name}).json()["subscriptions"]
    assert len(mine) == 1


def test_unknown_expired_and_malformed_requests(cryptlet, http, subscriber) -> None:
    name, key = subscriber
    stranger = new_key()
    content, signature = sign_request(stranger.secret, "nobody_here", "subscribe", spec())
    problem(post_signed(http, "/api/subscriptions", content, signature), 401, "$.subscriber", "unknown_subscriber")
    content, signature = sign_request(key.secret, name, "subscribe", spec(), now_ms=now_ms() - 400_000)
    problem(post_signed(http, "/api/subscriptions", content, signature), 401, "$.expires_ms", "request_expired")
    content, signature = sign_request(key.secret, name, "subscribe", spec(), ttl_s=11 * 60)
    problem(post_signed(http, "/api/subscriptions", content, signature), 401, "$.expires_ms", "expiry_too_far")
    content, signature = sign_request(key.secret, name, "cancel", spec())
    problem(post_signed(http, "/api/subscriptions", content, signature), 400, "$.action")

    def signed_raw(document) -> tuple[bytes, str]:
        message = canonical_json(document)
        return message, to_hex(sign_digest(key, eip191_hash(message)))

    good = {
        "subscriber": name,
        "nonce": to_hex(os.urandom(16)),
        "expires_ms": now_ms() + 60_000,
        "action": "subscribe",
        "body": spec(),
    }
    for member in ("nonce", "expires_ms", "body"):
        broken = {k: v for k, v in good.items() if k != member}
        problem(post_signed(http, "/api/subscriptions", *signed_raw(broken)), 400, f"$.{member}")
    problem(post_signed(http, "/api/subscriptions", *signed_raw({**good, "nonce": "0x12"})), 400, "$.nonce")
    problem(post_signed(http, "/api/subscriptions", *signed_raw({**good, "expires_ms": "soon"})), 400, "$.expires_ms")
    problem(post_signed(http, "/api/subscriptions", *signed_raw({**good, "extra": 1})), 400, "$.extra")
    problem(post_signed(http, "/api/subscriptions", b"{not json", "0x" + "11" * 65), 400, "$")
    problem(post_signed(http, "/api/subscriptions", b"[1, 2]", "0x" + "11" * 65), 400, "$")


def test_validation_errors_name_the_json_path(cryptlet, http, subscriber) -> None:
    cases = [
        (
            spec(trigger={"type": "cron", "expression": "every day", "timezone": "America/New_York"}),
            400,
            "$.trigger.expression",
        ),
        (
            spec(trigger={"type": "cron", "expression": "0 0 16 * * *", "timezone": "Mars/Olympus"}),
            400,
            "$.trigger.timezone",
        ),
        (spec(trigger={"type": "sometimes"}), 400, "$.trigger.type"),
        (spec(deadline_ms=now_ms() - 1000), 400, "$.deadline_ms"),
        (spec(deadline_ms=now_ms() + 400 * 86_400_000), 400, "$.deadline_ms"),
        (spec(method="launch_missiles"), 400, "$.method"),
        (spec(args={"nope": 1}), 400, "$.args.nope"),
        (spec(target={"type": "callback", "url": "ftp://example.com"}), 400, "$.target.url"),
        *(  # callbacks go through the egress rules: no internal destinations (FABRIC_CALLBACK_ALLOW is unset)
            (spec(target={"type": "callback", "url": url}), 400, "$.target.url")
            for url in (
                "http://127.0.0.1:10002/devstoreaccount1",
                "http://169.254.169.254/latest/meta-data/",
                "http://[::1]:8080/",
                "http://[::ffff:127.0.0.1]/",
                "http://10.0.0.1/hook",
                "http://localhost/hook",
                "http://2130706433/hook",
            )
        ),
        (spec(trigger={"type": "threshold", "level": 40}), 400, "$.observe"),
        (spec(cryptlet="no_such_cryptlet"), 404, "$.cryptlet"),
    ]
    for body, status, field in cases:
        problem(subscribe(http, subscriber, body), status, field)
    ok = subscribe(
        http,
        subscriber,
        spec(
            trigger={"type": "threshold", "level": 40, "hysteresis": 0.5},
            observe={"field": "rules_version", "every_s": 5},
            args={},
            method="rules",
        ),
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["subscription"]["observe"] == {"field": "rules_version", "every_s": 5}


def test_cancel_only_by_its_own_subscriber(cryptlet, http, admin) -> None:
    owner = (f"owner_{os.urandom(3).hex()}", new_key())
    other = (f"other_{os.urandom(3).hex()}", new_key())
    for name, key in (owner, other):
        assert admin.post("/api/subscribers", json={"name": name, "public_key": public_hex(key)}).status_code == 201
    sub_id = subscribe(http, owner, spec(target={"type": "history"})).json()["subscription"]["id"]
    path = f"/api/subscriptions/{sub_id}/cancel"

    def cancel(who, body=None, action="cancel"):
        content, signature = sign_request(who[1].secret, who[0], action, body or {"subscription": sub_id})
        return post_signed(http, path, content, signature)

    problem(cancel(other), 403, "$.subscriber")
    problem(cancel(owner, {"subscription": "sub_" + "0" * 24}), 400, "$.body.subscription")
    problem(cancel(owner, {"id": sub_id}), 400, "$.body")
    problem(cancel(owner, action="subscribe"), 400, "$.action")
    assert http.get(f"/api/subscriptions/{sub_id}").json()["status"] == "active"
    done = cancel(owner)
    assert done.status_code == 200, done.text
    assert done.json()["subscription"]["status"] == "cancelled"
    assert http.get(f"/api/subscriptions/{sub_id}").json()["status"] == "cancelled"
    listed = http.get("/api/subscriptions", params={"subscriber": owner[0], "status": "cancelled"}).json()
    assert [s["id"] for s in listed["subscriptions"]] == [sub_id]
    again = cancel(owner)  # idempotent, with a fresh nonce
    assert again.status_code == 200 and again.json()["subscription"]["status"] == "cancelled"
    content, signature = sign_request(owner[1].secret, owner[0], "cancel", {"subscription": "sub_" + "1" * 24})
    problem(post_signed(http, f"/api/subscriptions/sub_{'1' * 24}/cancel", content, signature), 404)


def test_webhook_secret_is_shown_once_and_stored_sealed(fabric_host, cryptlet, http, subscriber) -> None:
    response = subscribe(http, subscriber, spec(trigger={"type": "webhook"}, target={"type": "history"}))
    assert response.status_code == 201, response.text
    created = response.json()
    sub_id, secret = created["subscription"]["id"], created["webhook_secret"]
    assert created["webhook_url"] == f"/api/webhooks/{sub_id}"
    assert len(secret) >= 43
    shown = http.get(f"/api/subscriptions/{sub_id}")
    listed = http.get("/api/subscriptions")
    for text in (shown.text, listed.text):
        assert secret not in text and "webhook_secret" not in text
    store = SubscriptionStore(table_client(fabric_host.storage, f"{fabric_host.table_prefix}subscriptions"))
    stored, _ = store.get(sub_id)
    row = store.table.get_entity("sub", sub_id)
    assert secret not in json.dumps(dict(row))  # only the sealed blob is stored
    body = b'{"customer": "c-17", "rating": "B-"}'
    now_s = int(time.time())
    webhooks.verify(
        fabric_host.sealing_secret,
        sub_id,
        stored.webhook_secret_sealed,
        webhooks.sign(secret, body, now_s),
        body,
        now_s=now_s,
    )  # the shown secret is the sealed one
    with pytest.raises(VerificationError):
        webhooks.verify(
            fabric_host.sealing_secret,
            sub_id,
            stored.webhook_secret_sealed,
            webhooks.sign(secret, body + b" ", now_s),
            body,
            now_s=now_s,
        )
    assert secret not in fabric_host.log()


# -- the CLI ---------------------------------------------------------------------------------------
def one_line_error(result, *fragments: str) -> None:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_cli_end_to_end(fabric_host, cryptlet, tmp_path) -> None:
    key_file = tmp_path / "desk.key"
    made = fabric_host.cli("subscriber", "keygen", "-o", str(key_file))
    assert made.returncode == 0, made.stderr
    shown = json.loads(made.stdout)
    stored = json.loads(key_file.read_text())
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stored["private_key"][2:] not in made.stdout + made.stderr  # never printed
    assert shown["public_key"] == public_hex(coincurve.PrivateKey(bytes.fromhex(stored["private_key"][2:])))
    one_line_error(fabric_host.cli("subscriber", "keygen", "-o", str(key_file)), "exists")

    name = f"cli_desk_{os.urandom(3).hex()}"
    one_line_error(fabric_host.cli("subscriber", "register", name, "--public-key", shown["public_key"]), "Unauthorized")
    registered = fabric_host.cli(
        "subscriber", "register", name, "--public-key", shown["public_key"], "--admin-key", fabric_host.admin_key
    )
    assert registered.returncode == 0, registered.stderr
    assert json.loads(registered.stdout)["address"] == shown["address"]
    one_line_error(
        fabric_host.cli(
            "subscriber", "register", name, "--key-file", str(key_file), "--admin-key", fabric_host.admin_key
        ),
        "already registered",
    )

    common = ("--as", name, "--key-file", str(key_file), "--cryptlet", cryptlet)
    created = fabric_host.cli(
        "subscribe", *common, "--method", "rules", "--every", "5", "--history", "--deadline", "1h"
    )
    assert created.returncode == 0, created.stderr
    sub = json.loads(created.stdout)["subscription"]
    assert sub["trigger"]["type"] == "interval" and sub["trigger"]["seconds"] == 5
    assert 3_500_000 <= sub["deadline_ms"] - sub["created_ms"] <= 3_600_000
    cron = fabric_host.cli(
        "subscribe",
        *common,
        "--method",
        "rules",
        "--cron",
        "0 0 16 * * 1-5",
        "--tz",
        "America/New_York",
        "--calendar",
        "XNYS",
        "--callback",
        "https://example.com/cb",
        "--deadline",
        "7d",
    )
    assert cron.returncode == 0, cron.stderr
    hook = fabric_host.cli("subscribe", *common, "--method", "rules", "--webhook", "--history", "--deadline", "30m")
    assert hook.returncode == 0 and json.loads(hook.stdout)["webhook_secret"], hook.stderr

    one_line_error(
        fabric_host.cli("subscribe", *common, "--method", "nope", "--every", "5", "--history", "--deadline", "1h"),
        "$.method",
    )
    one_line_error(
        fabric_host.cli(
            "subscribe", *common, "--method", "rules", "--cron", "bad", "--tz", "UTC", "--history", "--deadline", "1h"
        ),
        "$.trigger.expression",
    )
    one_line_error(
        fabric_host.cli("subscribe", *common, "--method", "rules", "--every", "5", "--history", "--deadline", "soon"),
        "--deadline",
    )
    one_line_error(
        fabric_host.cli(
            "subscribe", *common, "--method", "rules", "--every", "5", "--webhook", "--history", "--deadline", "1h"
        ),
        "exactly one trigger",
    )

    listed = fabric_host.cli("subscriptions", "list", "--as", name, "--json")
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 3
    table = fabric_host.cli("subscriptions", "list", "--as", name)
    assert table.returncode == 0 and sub["id"] in table.stdout

    other_key = tmp_path / "other.key"
    assert fabric_host.cli("subscriber", "keygen", "-o", str(other_key)).returncode == 0
    other = f"cli_other_{os.urandom(3).hex()}"
    assert (
        fabric_host.cli(
            "subscriber", "register", other, "--key-file", str(other_key), "--admin-key", fabric_host.admin_key
        ).returncode
        == 0
    )
    one_line_error(
        fabric_host.cli("subscriptions", "cancel", sub["id"], "--as", other, "--key-file", str(other_key)),
        "another subscriber",
    )
    one_line_error(
        fabric_host.cli("subscriptions", "cancel", sub["id"], "--as", name, "--key-file", str(other_key)),
        "not by subscriber",
    )
    cancelled = fabric_host.cli("subscriptions", "cancel", sub["id"], "--as", name, "--key-file", str(key_file))
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["subscription"]["status"] == "cancelled"
    active = json.loads(fabric_host.cli("subscriptions", "list", "--as", name, "--status", "active", "--json").stdout)
    assert sub["id"] not in {s["id"] for s in active} and len(active) == 2
