"""The typed entry kinds of the registration ledger and their payload schemas.

Every payload is validated against ``shared/schemas/ledger-entries.schema.json`` (``$defs/<kind>``,
JSON Schema 2020-12) before it is appended; an unknown kind or a payload that does not match is
an :class:`~shared.errors.InvalidInput` whose ``field`` is the JSON path of the offending value
(``$.payload.address``) or ``kind``. Format: ``docs/ledger.md``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from shared.errors import InvalidInput
from shared.schemas import validator

SCHEMA_PATH = Path(__file__).parent.parent / "schemas" / "ledger-entries.schema.json"

REGISTERED = "cryptlet.registered"
KEY_ROTATED = "cryptlet.key_rotated"
KEY_REVOKED = "cryptlet.key_revoked"
RETIRED = "cryptlet.retired"
POLICY_SET = "policy.set"
CONTRACT_BOUND = "contract.bound"
SUBSCRIPTION_CREATED = "subscription.created"

KINDS: tuple[str, ...] = (
    REGISTERED,
    KEY_ROTATED,
    KEY_REVOKED,
    RETIRED,
    POLICY_SET,
    CONTRACT_BOUND,
    SUBSCRIPTION_CREATED,
)
"""Every kind the ledger accepts."""

KEY_ESTABLISHING: frozenset[str] = frozenset({REGISTERED, KEY_ROTATED})
"""Kinds whose entry introduces a signing key: the entry an envelope's ``registration`` cites."""

REVOCATION_REASONS: tuple[str, ...] = ("compromised", "superseded", "retired", "unspecified")

LEGACY_DIGEST_ALG = "cfpkg-v1"
"""The ``digest_alg`` of a key-establishing entry written before the field was recorded."""


def digest_alg(payload: dict[str, Any]) -> str:
    """How the ``digest`` of a ``cryptlet.registered`` or ``cryptlet.key_rotated`` payload was measured."""
    return str(payload.get("digest_alg") or LEGACY_DIGEST_ALG)


@lru_cache(maxsize=1)
def _validators() -> dict[str, Any]:
    document = json.loads(SCHEMA_PATH.read_text("utf-8"))
    validator(document)  # checks the schema
    defs = document["$defs"]
    missing = [k for k in KINDS if k not in defs]
    if missing:
        raise RuntimeError(f"{SCHEMA_PATH.name} lacks definitions for {missing}")
    return {kind: validator(_inline(defs[kind], defs)) for kind in KINDS}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with every local ``$ref`` replaced by its definition (the schema has no cycles), so
    validating an entry needs no reference resolution: about half the cost per append."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return {**_inline(defs[ref[len("#/$defs/") :]], defs), **_inline(rest, defs)}
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def validate_entry(kind: Any, payload: Any) -> None:
    """Raise :class:`InvalidInput` unless ``payload`` is a valid payload of ``kind``."""
    validators = _validators()
    if kind not in validators:
        raise InvalidInput(f"unknown ledger entry kind {kind!r}; one of {', '.join(KINDS)}", field="kind")
    errors = list(validators[kind].iter_errors(payload))
    if not errors:
        return
    import jsonschema

    error = jsonschema.exceptions.best_match(errors)
    path = "$.payload" + error.json_path[1:]
    if error.validator == "required" and isinstance(error.instance, dict):
        absent = [p for p in error.validator_value if p not in error.instance]
        if absent:
            path = f"{path}.{absent[0]}"
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        if extra:
            path = f"{path}.{extra[0]}"
    raise InvalidInput(f"{kind} payload: {path}: {error.message}", field=path)
