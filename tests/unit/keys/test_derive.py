"""Every key derived from the sealing secret comes from one list of distinct labels (shared/keys/derive.py)."""

from __future__ import annotations

import ast
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.events.delivery import DeliveryKey
from shared.keys import derive, sealing
from shared.ledger.checkpoints import CheckpointSigner

SECRET = bytes(range(32))
SHARED = Path(__file__).resolve().parents[3] / "shared"


def test_labels_are_distinct():
    pairs = [(label.salt, label.info) for label in derive.LABELS.values()]
    assert len(set(pairs)) == len(pairs)
    outputs = {derive.derive(SECRET, label) for label in derive.LABELS.values()}
    assert len(outputs) == len(derive.LABELS)


def test_derivations_are_the_published_hkdf_values():
    """The labels are frozen: changing one would orphan every sealed key, checkpoint and webhook secret."""

    def hkdf(salt, info):
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(SECRET)

    digest = b"\x11" * 32
    assert sealing.seal_key(SECRET, digest) == hkdf(b"cryptlet-fabric/seal/v1", digest)
    assert derive.derive(SECRET, derive.PLATFORM_KEY) == hkdf(
        b"cryptlet-fabric/platform-key/v1", b"process provider software evidence signing key (Ed25519)"
    )
    assert derive.derive(SECRET, derive.CHECKPOINT_KEY) == hkdf(None, b"cryptlet-fabric/checkpoint-key/v1")
    assert derive.derive(SECRET, derive.WEBHOOK) == hkdf(None, b"cryptlet-fabric/webhook/v1")
    assert derive.delivery_seed(SECRET) == hkdf(None, b"cryptlet-fabric/delivery/v1")
    assert derive.delivery_seed(SECRET, 2) == hkdf(None, b"cryptlet-fabric/delivery/v1/2")
    assert DeliveryKey(SECRET).address == DeliveryKey(SECRET).address
    assert (
        CheckpointSigner.from_secret(SECRET, "o").verifier.public_key
        == CheckpointSigner.from_secret(SECRET, "o").verifier.public_key
    )


def test_no_other_module_runs_hkdf():
    """HKDF over the sealing secret happens only in derive.py (ECIES's HKDF is over an ECDH secret)."""
    users = set()
    for path in SHARED.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == "HKDF":
                users.add(path.relative_to(SHARED).as_posix())
    assert users == {"keys/derive.py", "ecies.py"}
