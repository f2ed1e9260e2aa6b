"""Operations: health (storage reachability, versions) and what this host's evidence is."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import shared
from shared.encoding import to_hex
from shared.events.delivery import DeliveryKey
from shared.isolation.provider import IsolationProvider
from shared.ledger.chain import Ledger


class Operations:
    """``GET /api/health`` and ``GET /api/attestation``."""

    def __init__(self, ledger: Ledger, provider: IsolationProvider, delivery_key: DeliveryKey) -> None:
        self.ledger = ledger
        self.provider = provider
        self.delivery_key = delivery_key

    def health(self) -> dict[str, Any]:
        """Storage reachability and versions."""
        storage: dict[str, Any]
        try:
            head = self.ledger.head()
            storage = {"reachable": True, "ledger_size": head.size}
        except Exception as exc:  # reported, not raised: health must answer
            storage = {"reachable": False, "error": type(exc).__name__}
        return {
            "status": "ok" if storage["reachable"] else "degraded",
            "storage": storage,
            "versions": versions(),
            "provider": self.provider.name,
        }

    def attestation(self) -> dict[str, Any]:
        """What this host's evidence is and which platform key signs it."""
        software = self.provider.evidence_kind == "process"
        return {
            "provider": self.provider.name,
            "evidence_kind": self.provider.evidence_kind,
            "software": software,
            "debug": software,
            "platform_key": to_hex(self.provider.platform_public_key),
            "delivery_address": self.delivery_key.address,
        }  # signs deliveries and expiry results


def versions() -> dict[str, str]:
    found = {"fabric": shared.__version__, "python": platform.python_version()}
    for package in ("azure-functions", "azure-data-tables", "coincurve", "cryptography"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found
