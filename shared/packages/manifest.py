"""Cryptlet manifests (``cryptlet.json``): loading and schema validation.

Validation errors are :class:`~shared.errors.ManifestError` whose ``field`` is the JSON path of
the offending value (e.g. ``$.interface.methods``), or of the missing property.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from shared.encoding import JsonInputError, parse_json_input
from shared.errors import ManifestError
from shared.schemas import SCHEMAS, validator

MANIFEST_FILE = "cryptlet.json"
SCHEMA_PATH = SCHEMAS / "cryptlet.schema.json"


@lru_cache(maxsize=1)
def _validator() -> Any:
    return validator(json.loads(SCHEMA_PATH.read_text("utf-8")))  # jsonschema is imported here, lazily


@dataclass(frozen=True)
class Manifest:
    """A validated cryptlet manifest."""

    name: str
    version: str
    kind: str
    runtime: str
    entry: str
    methods: dict[str, dict[str, Any]]
    document: dict[str, Any]
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    interpreter: str | None = None

    @property
    def description(self) -> str:
        return cast(str, self.document.get("config", {}).get("description", ""))

    @property
    def timeout_s(self) -> float | None:
        """The per-call time limit the package asks for (``config.timeoutSeconds``), if any."""
        return cast("float | None", self.document.get("config", {}).get("timeoutSeconds"))


def _error_field(error: Any) -> str:
    path: str = error.json_path
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [p for p in error.validator_value if p not in error.instance]
        if missing:
            return f"{path}.{missing[0]}" if path != "$" else f"$.{missing[0]}"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        if extra:
            return f"{path}.{extra[0]}" if path != "$" else f"$.{extra[0]}"
    return path


def validate_manifest(document: Any, *, check_schema: bool = True) -> Manifest:
    """Validate a parsed manifest document; raise :class:`ManifestError` naming the field.

    ``check_schema=False`` skips the JSON Schema pass: regions use it for a manifest whose
    package they have measured against the digest registered after full validation.
    """
    if not check_schema:
        return _to_manifest(document)
    errors = sorted(_validator().iter_errors(document), key=lambda e: (list(e.absolute_path), e.validator))
    if errors:
        import jsonschema

        error = jsonschema.exceptions.best_match(errors)
        path = _error_field(error)
        message = error.message
        if error.validator == "pattern" and str(error.schema.get("description", "")).startswith("ABI type"):
            message = f"{error.instance!r} is not an ABI type (or json)"
        elif error.validator == "not":  # the kind/runtime rules of the schema's allOf
            message = (
                f"not allowed with kind {document.get('kind')!r} and runtime {document.get('runtime')!r} "
                "(instance counts are for kind contract, interpreter for runtime exec)"
            )
        raise ManifestError(f"{MANIFEST_FILE}: {path}: {message}", field=path)
    if document.get("publicKey"):
        raise ManifestError(
            f"{MANIFEST_FILE}: $.publicKey is filled by the fabric at registration; leave it empty", field="$.publicKey"
        )
    low, high = document.get("minimumInstances"), document.get("maximumInstances")
    if low is not None and high is not None and low > high:
        raise ManifestError(
            f"{MANIFEST_FILE}: $.minimumInstances must not exceed $.maximumInstances", field="$.minimumInstances"
        )
    return _to_manifest(document)


def _to_manifest(document: dict[str, Any]) -> Manifest:
    return Manifest(
        name=document["name"],
        version=document["version"],
        kind=document["kind"],
        runtime=document["runtime"],
        entry=document["entry"],
        methods=dict(document["interface"]["methods"]),
        document=document,
        events=dict(document["interface"].get("events") or {}),
        interpreter=document.get("interpreter"),
    )


def load_manifest(package_dir: Path, *, check_schema: bool = True) -> Manifest:
    """Read and validate ``cryptlet.json`` from a package folder."""
    path = Path(package_dir) / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(f"package has no {MANIFEST_FILE}", field="$")
    try:  # an uploaded package's manifest is caller input: the limits of request bodies
        document = parse_json_input(path.read_bytes(), what=MANIFEST_FILE)
    except JsonInputError as exc:
        raise ManifestError(exc.detail, field=exc.field) from None
    return validate_manifest(document, check_schema=check_schema)
