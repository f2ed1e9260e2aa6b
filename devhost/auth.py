"""HTTP authorization levels with keys taken from settings.

``anonymous`` needs no key; ``function`` needs ``DEVHOST_FUNCTION_KEY`` or
``DEVHOST_MASTER_KEY``; ``admin`` needs ``DEVHOST_MASTER_KEY``. Clients send the key in
the ``x-functions-key`` header or the ``code`` query parameter, as with Azure.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass

from devhost.errors import DevHostError

FUNCTION_KEY_SETTING = "DEVHOST_FUNCTION_KEY"
MASTER_KEY_SETTING = "DEVHOST_MASTER_KEY"
ANONYMOUS, FUNCTION, ADMIN = "anonymous", "function", "admin"
LEVELS = (ANONYMOUS, FUNCTION, ADMIN)


@dataclass(frozen=True)
class Keys:
    """The configured keys (None when the setting is unset or empty)."""

    function_key: str | None = None
    master_key: str | None = None

    @classmethod
    def from_settings(cls, environ: Mapping[str, str] | None = None) -> Keys:
        environ = os.environ if environ is None else environ
        return cls(environ.get(FUNCTION_KEY_SETTING) or None, environ.get(MASTER_KEY_SETTING) or None)

    def require(self, level: str, function_name: str) -> None:
        """Raise :class:`DevHostError` if no key could ever satisfy ``level``."""
        if level not in LEVELS:
            raise DevHostError(f"function {function_name}: unknown authLevel '{level}'")
        if level == FUNCTION and not (self.function_key or self.master_key):
            raise DevHostError(
                f"function {function_name} has authLevel 'function' but setting "
                f"{FUNCTION_KEY_SETTING} is not set (or set {MASTER_KEY_SETTING})"
            )
        if level == ADMIN and not self.master_key:
            raise DevHostError(
                f"function {function_name} has authLevel 'admin' but setting {MASTER_KEY_SETTING} is not set"
            )

    def allows(self, level: str, presented: str | None) -> bool:
        """Whether the key ``presented`` by a request is good enough for ``level``."""
        if level == ANONYMOUS:
            return True
        if not presented:
            return False
        candidates = (self.master_key,) if level == ADMIN else (self.function_key, self.master_key)
        # Compare against every candidate (no short cut) in constant time.
        ok = False
        for key in candidates:
            if key is not None and hmac.compare_digest(key.encode(), presented.encode()):
                ok = True
        return ok
