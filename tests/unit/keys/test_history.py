"""Key history semantics, without a host: which key was valid at each ledger point, superseded and
revoked keys. (The key lifecycle through the host: tests/e2e/ledger/test_ledger_api.py.)"""

from __future__ import annotations

import pytest

from shared.errors import NotFound, VerificationError
from shared.keys.history import KeyHistory, time_ms
from shared.ledger.chain import GENESIS_HASH, LedgerEntry


def _entry(sequence: int, kind: str, time: str, payload: dict) -> LedgerEntry:
    return LedgerEntry("registry", sequence, kind, time, payload, GENESIS_HASH, "00" * 32)


A, B = "0x" + "aa" * 20, "0x" + "bb" * 20


def _history() -> KeyHistory:
    history = KeyHistory()
    key = {"public_key": "0x04" + "11" * 64, "digest": "0x" + "22" * 32}
    history.apply(_entry(1, "cryptlet.registered", "2026-01-01T00:00:00.000Z", {"name": "c", "address": A, **key}))
    history.apply(_entry(2, "policy.set", "2026-01-02T00:00:00.000Z", {"scope": "fabric", "policy": {}}))
    history.apply(
        _entry(
            3,
            "cryptlet.key_rotated",
            "2026-01-03T00:00:00.000Z",
            {"name": "c", "address": B, "previous_address": A, **key},
        )
    )
    return history


def test_key_history_answers_which_key_was_valid_at_each_ledger_point():
    history = _history()
    assert [history.key_at("c", n).address for n in (1, 2, 3, 9)] == [A, A, B, B]
    with pytest.raises(NotFound):
        history.key_at("c", 0)
    history.apply(_entry(4, "cryptlet.retired", "2026-01-04T00:00:00.000Z", {"name": "c", "address": B}))
    with pytest.raises(NotFound):
        history.key_at("c", 4)
    assert history.current("c") is None and history.get(B).status == "retired"


@pytest.mark.parametrize(
    "signed_at, reason",
    [
        ("2026-01-02T23:59:59.999Z", None),
        ("2026-01-03T00:00:00.000Z", "key_superseded"),
    ],
)
def test_a_superseded_key_is_trusted_only_for_what_it_signed_before_the_rotation(signed_at, reason):
    record = _history().get(A)
    if reason is None:
        record.check_signed_at(time_ms(signed_at))
    else:
        with pytest.raises(VerificationError) as caught:
            record.check_signed_at(time_ms(signed_at))
        assert caught.value.reason == reason


def test_a_revocation_applies_from_invalid_after_even_to_a_rotated_out_key():
    history = _history()
    history.apply(
        _entry(
            5,
            "cryptlet.key_revoked",
            "2026-02-01T00:00:00.000Z",
            {"name": "c", "address": A, "reason": "compromised", "invalid_after": "2026-01-01T12:00:00.000Z"},
        )
    )
    record = history.get(A)
    record.check_signed_at(time_ms("2026-01-01T11:59:59.999Z"))
    with pytest.raises(VerificationError) as caught:
        record.check_signed_at(time_ms("2026-01-01T12:00:00.000Z"))
    assert caught.value.reason == "key_revoked" and record.status == "revoked"
