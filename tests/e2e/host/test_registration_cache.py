"""Invocations reuse a recent catalog read of the registration; every key or status change made on
the host drops it at once, so no envelope is signed with a rotated, revoked or retired key."""

from __future__ import annotations

from shared.envelope import Envelope, verify_envelope

CUSTOMER = {
    "name": "Ada Example",
    "email": "ada@example.com",
    "country": "GB",
    "birth_date": "1990-12-10",
    "credit_score": 742,
}


def invoke(http):
    return http.post(
        "/api/cryptlets/customer_validator/invoke",
        json={"method": "validate", "args": {"customer": CUSTOMER, "salt": "0x" + "cd" * 32}},
    )


def signer(response) -> str:
    assert response.status_code == 200, response.text
    return verify_envelope(Envelope.from_dict(response.json())).lower()


def test_key_changes_and_retirement_take_effect_on_the_next_call(fabric_host) -> None:
    with fabric_host.client() as http:
        first = http.post("/api/cryptlets", json={"package": "customer_validator"})
        assert first.status_code == 201, first.text
        assert signer(invoke(http)) == signer(invoke(http)) == first.json()["address"].lower()  # cached read

        rotated = http.post("/api/cryptlets/customer_validator/keys/rotate")
        assert rotated.status_code == 200, rotated.text
        assert signer(invoke(http)) == rotated.json()["registration"]["address"].lower()

        revoked = http.post("/api/cryptlets/customer_validator/keys/revoke", json={"reason": "compromised"})
        assert revoked.status_code == 200, revoked.text
        current = revoked.json()["registration"]["address"].lower()
        assert current != rotated.json()["registration"]["address"].lower()
        assert signer(invoke(http)) == current

        assert http.post("/api/cryptlets/customer_validator/retire").status_code == 200
        gone = invoke(http)  # well within the cache's lifetime: still refused at once
        assert gone.status_code == 404 and gone.json()["field"] == "name", gone.text

        again = http.post("/api/cryptlets", json={"package": "customer_validator"})
        assert again.status_code == 201, again.text
        assert signer(invoke(http)) == again.json()["address"].lower()
