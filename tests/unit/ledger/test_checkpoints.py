"""Signed checkpoint notes without storage: the Go reference note, the documented host key and
checkpoint vectors, forged and mangled notes, verifier keys. (Checkpoints, receipts and proofs on a
real ledger: tests/integration/ledger/test_ledger_checkpoints.py, which uses the keys below.)"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.errors import InvalidInput, VerificationError
from shared.ledger.checkpoints import Checkpoint, CheckpointSigner, VerifierKey, open_checkpoint, open_note, origin_of

ORIGIN = origin_of("registry")
SIGNER = CheckpointSigner.from_secret(bytes(range(32)), ORIGIN)
OTHER = CheckpointSigner.from_secret(bytes(range(1, 33)), ORIGIN)

# golang.org/x/mod/sumdb/note, note_test.go: the PeterNeumann key and its signed example note.
GO_SIGNER_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = (
    GO_TEXT
    + "\n\u2014 PeterNeumann "
    + "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)

# docs/ledger.md vectors: the host key of secret bytes 0..31 and a checkpoint of the CT 4-leaf tree.
VECTOR_KEY = "cryptlet-fabric/ledger/registry+9bd46b20+AVugXUtX5uQfKSa6iQ/ZE1dnpxF6A7FZEJCRNKQoICW7"
VECTOR_CHECKPOINT = Checkpoint(
    ORIGIN,
    4,
    bytes.fromhex("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    "2026-11-24T00:00:00.000Z",
    "9e7b203f705c1b984ce13bd25555af8bf3acd2e52df166968926ed690dc1c0d5",
)
VECTOR_NOTE = (
    "cryptlet-fabric/ledger/registry\n4\n037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc=\n"
    "time 2026-11-24T00:00:00.000Z\nhead 9e7b203f705c1b984ce13bd25555af8bf3acd2e52df166968926ed690dc1c0d5\n\n"
    "\u2014 cryptlet-fabric/ledger/registry "
    "m9RrIDZb21xEnjYN85BgiB7LigfiZ/fB2kp8bj8Gu2DPfQGFVy0TTtLMyLo3DAnANcF9yxCuoGWW2FzJ0B5hTBhCcwg=\n"
)


def test_note_signing_matches_the_go_reference_byte_for_byte():
    seed = base64.b64decode(GO_SIGNER_KEY.split("+", 4)[4])
    signer = CheckpointSigner(Ed25519PrivateKey.from_private_bytes(seed[1:]), "PeterNeumann")
    assert str(signer.verifier) == GO_VERIFIER_KEY
    assert signer.sign_note(GO_TEXT) == GO_NOTE
    assert open_note(GO_NOTE, VerifierKey.parse(GO_VERIFIER_KEY)) == GO_TEXT


def test_host_key_is_hkdf_of_the_platform_secret_and_matches_the_documented_vector():
    prk = hmac.new(b"\x00" * 32, bytes(range(32)), hashlib.sha256).digest()  # RFC 5869, written out
    seed = hmac.new(prk, b"cryptlet-fabric/checkpoint-key/v1\x01", hashlib.sha256).digest()
    independent = CheckpointSigner(Ed25519PrivateKey.from_private_bytes(seed), ORIGIN)
    assert str(independent.verifier) == str(SIGNER.verifier) == VECTOR_KEY
    assert SIGNER.sign(VECTOR_CHECKPOINT) == VECTOR_NOTE  # Ed25519 is deterministic
    assert open_checkpoint(VECTOR_NOTE, VerifierKey.parse(VECTOR_KEY)) == VECTOR_CHECKPOINT
    assert "PRIVATE" not in repr(SIGNER) and seed.hex() not in repr(SIGNER)


@pytest.mark.parametrize(
    "mangle, reason",
    [
        (lambda n: n.replace("\n4\n", "\n5\n"), "checkpoint_signature_invalid"),
        (lambda n: n.replace("037kGJdt", "137kGJdt"), "checkpoint_signature_invalid"),
        (lambda n: n.replace("time 2026-11-24", "time 2026-11-25"), "checkpoint_signature_invalid"),
        (lambda n: n.replace("m9RrIDZb", "m9RrIDZc"), "checkpoint_signature_invalid"),
        (lambda n: OTHER.sign(VECTOR_CHECKPOINT), "checkpoint_signature_invalid"),
        (lambda n: n.replace("\n\n", "\n"), "checkpoint_malformed"),
        (lambda n: n.replace("\n4\n", "\n04\n"), "checkpoint_malformed"),
        (lambda n: n.replace("head 9e7b", "head 9E7B"), "checkpoint_malformed"),
        (lambda n: n.replace("\u2014 ", "- "), "checkpoint_malformed"),
    ],
)
def test_forged_or_mangled_checkpoints_are_refused(mangle, reason):
    with pytest.raises(VerificationError) as caught:
        open_checkpoint(mangle(VECTOR_NOTE), SIGNER.verifier)
    assert caught.value.reason == reason


def test_other_signatures_on_a_note_are_ignored_but_one_by_the_pinned_key_is_needed():
    cosigned = VECTOR_NOTE + OTHER.sign_note(VECTOR_CHECKPOINT.body()).split("\n\n")[1].replace(
        ORIGIN, "witness.example"
    )
    assert open_checkpoint(cosigned, SIGNER.verifier) == VECTOR_CHECKPOINT


@pytest.mark.parametrize("text", ["", "a+b", "a+1234567+AQ==", VECTOR_KEY.replace("+9bd46b20+", "+9bd46b21+")])
def test_malformed_verifier_keys_are_input_errors(text):
    with pytest.raises(InvalidInput):
        VerifierKey.parse(text)


def test_a_verifier_key_whose_base64_holds_a_plus_parses():
    # transparency-dev/formats note tests: a type 0x01 key whose base64 contains '+'.
    key = VerifierKey.parse("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6")
    assert key.name == "TEST" and str(key) == "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"
