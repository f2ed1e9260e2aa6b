"""Run a cryptlet package in a ``process`` region without storage, ledger or host (``cryptlet simulate``).

A simulation validates the manifest, measures the package (``cfpkg-v2``, the algorithm a
registration records, so the envelope's digest is the one registering the folder would give),
starts a :class:`ProcessProvider` with an ephemeral platform secret (random, never stored), has
the region generate a throw-away key, attests it (software evidence signed by the ephemeral
platform key), binds the region to :data:`SIMULATED_REGISTRATION` and invokes one method. The
result is a real, correctly signed envelope — but its registration reference is marked as
simulated: stream ``"simulation"``, sequence ``0`` and a zero entry hash, which no ledger entry
has, so it never verifies against a registration (``cryptlet verify`` refuses it). Use it to
test a package before registering it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptlet_sdk import MAX_EVENTS
from shared.encoding import to_hex
from shared.envelope import ZERO_ADDRESS, Domain
from shared.errors import InvalidInput
from shared.host.registry import attest_key, evidence_reference
from shared.isolation.callout import HostCallOuts
from shared.isolation.process import ProcessProvider
from shared.packages.digest import package_digest
from shared.packages.manifest import load_manifest

#: The registration reference a simulated envelope cites: no ledger holds it.
SIMULATED_REGISTRATION: dict[str, Any] = {
    "stream": "simulation",
    "sequence": 0,
    "entry_hash": "0x" + "00" * 32,
    "simulated": True,
}


def simulate(
    package_dir: Path,
    method: str,
    args: Any = None,
    *,
    timeout: float | None = None,
    chain_id: int = 0,
    verifying_contract: str = ZERO_ADDRESS,
    logger: logging.Logger | None = None,
    egress: Sequence[str] | None = None,
    state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Invoke ``method`` of the package at ``package_dir`` with named ``args`` in a fresh region.

    Returns what the fabric's invoke returns: the signed envelope document, with ``events`` when
    the call emitted any; for a contract cryptlet (run over ``state``, default ``{}``) also the new
    ``state`` when the call changed it. ``egress`` overrides the manifest's allow-list for
    ``fetch``; ``timeout`` its per-call limit. Errors: :class:`~shared.errors.ManifestError`
    (naming the JSON path), :class:`InvalidInput` (unknown method, args not an object),
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
    if state is not None and not isinstance(state, dict):
        raise InvalidInput("state must be a JSON object", field="state")
    digest = package_digest(package_dir)
    allowed = manifest.document.get("egress", ()) if egress is None else egress
    provider = ProcessProvider(  # an ephemeral secret; what the cryptlet prints goes to ``logger`` too
        os.urandom(32), timeout=timeout or manifest.timeout_s or 10.0, output_logger=logger
    )
    try:
        region = provider.create_region(
            package_dir,
            digest,
            domain=Domain(chain_id, verifying_contract),
            call_out=HostCallOuts(manifest.name, logger, egress=allowed),
        )
        try:
            key = region.call("generate_key")
            evidence = evidence_reference(attest_key(region, key["public_key"]))
            region.call("bind", registration=dict(SIMULATED_REGISTRATION), evidence=evidence)
            params: dict[str, Any] = {}
            if manifest.kind == "contract":
                params = {"state": state or {}, "state_version": 0}
            reply = region.call(
                "invoke",
                method=method,
                args=args,
                sequence=1,
                sequences=1 + MAX_EVENTS,
                request_id=to_hex(os.urandom(32)),
                **params,
            )
        finally:
            region.close()
    finally:
        provider.close()
    document = dict(reply["envelope"])
    if reply.get("events"):
        document["events"] = reply["events"]
    if "state" in reply:
        document["state"] = reply["state"]
    return document


def positional_args(manifest_inputs: list[dict[str, Any]], values: Sequence[str]) -> dict[str, Any]:
    """Named arguments from command-line ``values``: ``name=value`` or, in declared order, ``value``.

    Each value is read as JSON when it parses (``5``, ``true``, ``{"a": 1}``) and as a string
    otherwise (``alice``).
    """
    names = [p["name"] for p in manifest_inputs]
    args: dict[str, Any] = {}
    for position, raw in enumerate(values):
        name, sep, text = raw.partition("=")
        if sep and name in names:
            key = name
        else:
            if position >= len(names):
                raise InvalidInput(
                    f"too many arguments: the method takes {len(names)} ({', '.join(names)})", field="ARGS"
                )
            key, text = names[position], raw
        if key in args:
            raise InvalidInput(f"argument {key!r} is given twice", field="ARGS")
        try:
            args[key] = json.loads(text)
        except json.JSONDecodeError:
            args[key] = text
    return args
