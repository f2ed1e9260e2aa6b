"""Run a cryptlet package in a ``process`` region without storage, ledger or host (``cryptlet simulate``).

A simulation validates the manifest, measures the package, starts a :class:`ProcessProvider` with
an ephemeral platform secret (random, never stored), has the region generate a throw-away key,
attests it (software evidence signed by the ephemeral platform key), binds the region to
:data:`SIMULATED_REGISTRATION` and invokes one method. The result is a real, correctly signed
envelope — but its registration reference is marked as simulated: stream ``"simulation"``,
sequence ``0`` and a zero entry hash, which no ledger entry has, so it never verifies against a
registration (``cryptlet verify`` refuses it). Use it to test a package before registering it.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from shared.digest import package_digest
from shared.encoding import to_hex
from shared.envelope import ZERO_ADDRESS, Domain
from shared.errors import InvalidInput
from shared.isolation.callout import HostCallOuts
from shared.isolation.process import ProcessProvider
from shared.manifest import load_manifest
from shared.registry import attest_key, evidence_reference

#: The registration reference a simulated envelope cites: no ledger holds it.
SIMULATED_REGISTRATION: dict[str, Any] = {"stream": "simulation", "sequence": 0,
                                          "entry_hash": "0x" + "00" * 32, "simulated": True}


def simulate(package_dir: Path, method: str, args: Any = None, *, timeout: float = 10.0, chain_id: int = 0,
             verifying_contract: str = ZERO_ADDRESS, logger: logging.Logger | None = None) -> dict[str, Any]:
    """Invoke ``method`` of the package at ``package_dir`` with named ``args`` in a fresh region.

    Returns the signed envelope document. Errors: :class:`~shared.errors.ManifestError` (naming
    the JSON path), :class:`InvalidInput` (unknown method, args not an object),
    :class:`~shared.errors.RegionError` (the cryptlet failed or refused its arguments).
    """
    package_dir = Path(package_dir)
    if not package_dir.is_dir():
        raise InvalidInput(f"{package_dir} is not a package folder", field="path")
    manifest = load_manifest(package_dir)
    if method not in manifest.methods:
        known = ", ".join(sorted(manifest.methods))
        raise InvalidInput(f"{manifest.name} has no method {method!r} (methods: {known})", field="method")
    args = {} if args is None else args
    if not isinstance(args, dict):
        raise InvalidInput("args must be a JSON object of named arguments", field="args")
    digest = package_digest(package_dir)
    provider = ProcessProvider(os.urandom(32), timeout=timeout)  # ephemeral platform secret
    try:
        region = provider.create_region(package_dir, digest, domain=Domain(chain_id, verifying_contract),
                                        call_out=HostCallOuts(manifest.name, logger))
        try:
            key = region.call("generate_key")
            evidence = evidence_reference(attest_key(region, key["public_key"]))
            region.call("bind", registration=dict(SIMULATED_REGISTRATION), evidence=evidence)
            reply = region.call("invoke", method=method, args=args, sequence=1, request_id=to_hex(os.urandom(32)))
        finally:
            region.close()
    finally:
        provider.close()
    return reply["envelope"]
