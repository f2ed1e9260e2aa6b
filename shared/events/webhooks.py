"""Webhook authentication: an external application (a CRM reporting a credit-rating drop, say)
fires a ``webhook`` subscription by POSTing JSON signed with the subscription's shared secret.

The secret is made at subscription time, shown to the subscriber once, and stored only sealed
(AES-256-GCM under HKDF(sealing secret, ``cryptlet-fabric/webhook/v1``), the subscription id as
associated data). A call carries ``X-Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>." + raw body>`` (the Stripe scheme): the timestamp is covered by the MAC and must be within
:data:`TOLERANCE_S` of the host clock, so a captured call cannot be replayed later; comparisons are
constant-time. Every failure is :class:`~shared.errors.VerificationError` with a reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.errors import VerificationError
from shared.keys import derive

HEADER = "X-Webhook-Signature"
TOLERANCE_S = 300
SECRET_BYTES = 32
_HEADER = re.compile(r"^t=(?P<t>[0-9]{1,12}),v1=(?P<mac>[0-9a-f]{64})\Z")


def _key(sealing_secret: bytes) -> bytes:
    return derive.derive(sealing_secret, derive.WEBHOOK)


def issue_secret(sealing_secret: bytes, subscription_id: str) -> tuple[str, str]:
    """A new webhook secret: ``(secret as base64url, sealed blob as base64)``; store only the second."""
    secret = os.urandom(SECRET_BYTES)
    nonce = os.urandom(12)
    sealed = nonce + AESGCM(_key(sealing_secret)).encrypt(nonce, secret, subscription_id.encode())
    return base64.urlsafe_b64encode(secret).decode().rstrip("="), base64.b64encode(sealed).decode()


def _unseal(sealing_secret: bytes, subscription_id: str, sealed: str) -> bytes:
    blob = base64.b64decode(sealed)
    try:
        return AESGCM(_key(sealing_secret)).decrypt(blob[:12], blob[12:], subscription_id.encode())
    except Exception:
        raise VerificationError(
            "webhook_secret_unavailable",
            "the subscription's webhook secret cannot be opened on this host (another sealing secret?)",
        ) from None


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value a sender computes (for clients and tests): ``t=<timestamp>,v1=<hex>``."""
    raw = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
    mac = hmac.new(raw, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(
    sealing_secret: bytes, subscription_id: str, sealed: str | None, header: str | None, body: bytes, *, now_s: float
) -> None:
    """Check a webhook call; raise :class:`VerificationError` (reason ``webhook_*``) if it is not authentic."""
    if not sealed:
        raise VerificationError("webhook_not_enabled", "this subscription does not take webhooks")
    match = _HEADER.match((header or "").strip())
    if match is None:
        raise VerificationError("webhook_signature_missing", f"{HEADER} must be t=<unix seconds>,v1=<hex HMAC-SHA256>")
    timestamp = int(match["t"])
    if abs(now_s - timestamp) > TOLERANCE_S:
        raise VerificationError("webhook_stale", f"the signature's timestamp is more than {TOLERANCE_S} s from now")
    secret = _unseal(sealing_secret, subscription_id, sealed)
    expected = hmac.new(secret, match["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match["mac"]):
        raise VerificationError("webhook_signature_invalid", "the webhook's HMAC does not match its body")
