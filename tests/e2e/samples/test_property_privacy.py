"""The `property_privacy` sample: ECIES over secp256k1 + AES-256-GCM, run in real regions.

The cryptlet encrypts inside its region (its own code, measured by the package digest); the
counterparties decrypt with `shared/ecies.py`. Both produce the same bytes (the test vector of
docs/ecies.md), every recipient decrypts, nobody else does, and tampering or a wrong AAD fails.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import coincurve
import pytest

from cryptlet_cli.simulate import SIMULATED_REGISTRATION, simulate
from shared import ecies
from shared.envelope import Envelope, verify_envelope
from shared.errors import RegionError
from tests.unit.test_ecies import counterparties, pub  # noqa: F401  (counterparties: a fixture)

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "cryptlet_packages" / "property_privacy"
REGISTERED_PACKAGE = "property_privacy"  # the sample `registered` (tests/e2e/conftest.py) registers


@pytest.fixture(scope="module")
def simulated(counterparties) -> dict:
    """encrypt_field run in a fresh `process` region (no storage, no host)."""
    recipients = [pub(counterparties[0]), pub(counterparties[1], compressed=False), pub(counterparties[2])[2:]]
    return simulate(
        PACKAGE,
        "encrypt_field",
        {"field": "salary", "value": "EUR 85 000 — confidential", "recipients": recipients, "context": "deal-42"},
    )


# -- in a real region ----------------------------------------------------------------------------
def test_region_envelope_is_signed_and_carries_the_ciphertext(simulated):
    envelope = Envelope.from_dict(simulated)
    assert verify_envelope(envelope) == simulated["cryptlet"]
    assert simulated["topic"] == "property_privacy.encrypt_field"
    assert simulated["registration"] == SIMULATED_REGISTRATION
    payload = simulated["payload"]["encrypted"]
    assert payload["version"] == ecies.VERSION and payload["field"] == "salary" and payload["context"] == "deal-42"
    assert len(payload["recipients"]) == 3
    assert "85 000" not in json.dumps(simulated)  # the value never appears in clear


def test_each_counterparty_decrypts(simulated, counterparties):
    for key in counterparties:
        assert (
            ecies.decrypt_field(simulated["payload"]["encrypted"], key.secret, field="salary", context="deal-42")
            == "EUR 85 000 — confidential"
        )
        assert (
            ecies.decrypt_field(simulated["payload"]["encrypted"], "0x" + key.secret.hex())
            == "EUR 85 000 — confidential"
        )


def test_key_ids_and_digest(simulated, counterparties):
    payload = simulated["payload"]["encrypted"]
    ids = [bytes.fromhex(r["key_id"][2:]) for r in payload["recipients"]]
    assert ids == [ecies.key_id(k.public_key) for k in counterparties]
    assert payload["recipients_digest"] == "0x" + ecies.recipients_digest(ids).hex()
    shuffled = [pub(counterparties[2]), pub(counterparties[0]), pub(counterparties[1])]
    listed = simulate(PACKAGE, "recipient_set", {"recipients": shuffled})["payload"]
    assert listed["recipients_digest"] == payload["recipients_digest"]  # order-independent
    assert listed["key_ids"] == [
        "0x" + ecies.key_id(k.public_key).hex() for k in (counterparties[2], counterparties[0], counterparties[1])
    ]


def test_a_non_recipient_cannot_decrypt(simulated):
    outsider = coincurve.PrivateKey()
    with pytest.raises(ecies.NotARecipient, match="not a recipient"):
        ecies.decrypt_field(simulated["payload"]["encrypted"], outsider.secret)
    # Claiming a recipient's key id with the outsider's key does not help: the KEK differs.
    forged = copy.deepcopy(simulated["payload"]["encrypted"])
    forged["recipients"][0]["key_id"] = "0x" + ecies.key_id(outsider.public_key).hex()
    with pytest.raises(ecies.EciesError, match="authentication failed"):
        ecies.decrypt_field(forged, outsider.secret)


@pytest.mark.parametrize("part", ["ciphertext", "nonce", "wrapped_key", "ephemeral_public_key"])
def test_tampering_fails(simulated, counterparties, part):
    tampered = copy.deepcopy(simulated["payload"]["encrypted"])
    target = tampered["recipients"][0] if part == "wrapped_key" else tampered
    raw = bytearray(bytes.fromhex(target[part][2:]))
    raw[-1] ^= 0x01
    target[part] = "0x" + raw.hex()
    with pytest.raises(ecies.EciesError):
        ecies.decrypt_field(tampered, counterparties[0].secret)


@pytest.mark.parametrize("expected", [{"field": "bonus"}, {"context": "deal-43"}, {"field": "salary", "context": ""}])
def test_wrong_aad_fails(simulated, counterparties, expected):
    with pytest.raises(ecies.EciesError, match="authentication failed"):
        ecies.decrypt_field(simulated["payload"]["encrypted"], counterparties[1].secret, **expected)
    relabelled = dict(simulated["payload"]["encrypted"], **expected)  # the object's own labels are bound too
    with pytest.raises(ecies.EciesError, match="authentication failed"):
        ecies.decrypt_field(relabelled, counterparties[1].secret)


def test_unsupported_version_is_refused(simulated, counterparties):
    with pytest.raises(ecies.EciesError, match="unsupported version"):
        ecies.decrypt_field(dict(simulated["payload"]["encrypted"], version="v0"), counterparties[0].secret)


@pytest.mark.parametrize(
    "recipients, message",
    [
        (["0x02" + "00" * 32], "recipients[0] is not a point on secp256k1"),
        (["zz"], "recipients[0] is not valid hex"),
        (["0x04" + "11" * 10], "recipients[0] must be a 33- or 65-byte"),
        ([7], "recipients[0] must be a hex string"),
        ([], "non-empty list"),
        ("0x02", "non-empty list"),
    ],
)
def test_bad_recipient_keys_are_bad_arguments(recipients, message):
    with pytest.raises(RegionError) as caught:
        simulate(PACKAGE, "encrypt_field", {"field": "salary", "value": "1", "recipients": recipients})
    assert caught.value.extra["region_code"] == "bad_arguments"
    assert message in str(caught.value)


def test_duplicate_recipients_and_empty_field_are_bad_arguments(counterparties):
    key = counterparties[0]
    for args, message in (
        (["salary", "1", [pub(key), pub(key, compressed=False)]], "same public key twice"),
        (["", "1", [pub(key)]], "field must be a non-empty string"),
    ):
        with pytest.raises(RegionError) as caught:
            simulate(PACKAGE, "encrypt_field", dict(zip(("field", "value", "recipients"), args, strict=False)))
        assert caught.value.extra["region_code"] == "bad_arguments" and message in str(caught.value)


# -- through the dev host -------------------------------------------------------------------------
def test_register_invoke_verify_through_the_host(fabric_host, registered, counterparties, tmp_path):
    with fabric_host.client() as http:
        response = http.post(
            "/api/cryptlets/property_privacy/invoke",
            json={
                "method": "encrypt_field",
                "args": {
                    "field": "salary",
                    "value": "EUR 91 000",
                    "recipients": [pub(k) for k in counterparties],
                    "context": "deal-7",
                },
            },
        )
    assert response.status_code == 200, response.text
    envelope = response.json()
    assert envelope["cryptlet"] == registered["address"] and envelope["digest"] == registered["digest"]
    assert envelope["registration"]["entry_hash"] == registered["ledger"]["entry_hash"]
    assert verify_envelope(Envelope.from_dict(envelope)) == registered["address"]
    assert [
        ecies.decrypt_field(envelope["payload"]["encrypted"], k.secret, field="salary", context="deal-7")
        for k in counterparties
    ] == ["EUR 91 000"] * 3
    with pytest.raises(ecies.NotARecipient):
        ecies.decrypt_field(envelope["payload"]["encrypted"], coincurve.PrivateKey().secret)
    out = tmp_path / "envelope.json"
    out.write_text(json.dumps(envelope))
    verified = fabric_host.cli("verify", "--allow-software-evidence", str(out))
    assert verified.returncode == 0, verified.stderr


def test_bad_recipient_is_400_naming_args_through_the_host(fabric_host, registered):
    with fabric_host.client() as http:
        response = http.post(
            "/api/cryptlets/property_privacy/invoke",
            json={
                "method": "encrypt_field",
                "args": {"field": "salary", "value": "1", "recipients": ["0x02" + "00" * 32]},
            },
        )
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["field"] == "args"
    assert "recipients[0] is not a point on secp256k1" in problem["detail"]
