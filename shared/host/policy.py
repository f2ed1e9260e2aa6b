"""Per-cryptlet policy: an admin's settings that override the manifest (policy always overrides code).

A policy is validated against ``shared/schemas/policy.schema.json`` (errors name the JSON path),
recorded as a ``policy.set`` ledger entry (the source of truth) and then kept as the current
policy in the catalog table (row ``PartitionKey="policy"``, ``RowKey=<name>``), so it survives
restarts. :func:`effective_settings` merges defaults, manifest and policy, in that order.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.errors import Conflict, FabricError, InvalidInput
from shared.host.registry import Registration
from shared.ledger.chain import Ledger
from shared.ledger.kinds import REGISTERED
from shared.packages.folders import PackageFolders
from shared.packages.manifest import load_manifest
from shared.schemas import validator
from shared.storage import storage_errors

SCHEMA_PATH = Path(__file__).parent.parent / "schemas" / "policy.schema.json"
POLICY_PARTITION = "policy"
SETTING_KEYS = ("isolation", "egress", "min_instances", "max_instances", "timeout_s")


@lru_cache(maxsize=1)
def _validator() -> Any:
    return validator(json.loads(SCHEMA_PATH.read_text("utf-8")))


def validate_policy(document: Any) -> dict[str, Any]:
    """Return ``document`` if it is a valid policy; else :class:`InvalidInput` naming the JSON path."""
    if not isinstance(document, dict):
        raise InvalidInput("policy must be a JSON object", field="$")
    errors = list(_validator().iter_errors(document))
    if errors:
        import jsonschema

        error = jsonschema.exceptions.best_match(errors)
        path = error.json_path
        if error.validator == "additionalProperties":
            allowed = set(error.schema.get("properties", {}))
            extra = sorted(k for k in error.instance if k not in allowed)
            path = f"$.{extra[0]}" if extra else path
        raise InvalidInput(f"policy: {path}: {error.message}", field=path)
    low, high = document.get("min_instances"), document.get("max_instances")
    if low is not None and high is not None and low > high:
        raise InvalidInput("policy: $.min_instances must not exceed $.max_instances", field="$.min_instances")
    return document


def manifest_settings(manifest: dict[str, Any]) -> dict[str, Any]:
    """The settings a ``cryptlet.json`` asks for (absent ones are omitted)."""
    found: dict[str, Any] = {}
    config = manifest.get("config", {})
    if config.get("isolation") is not None:
        found["isolation"] = config["isolation"]
    if config.get("timeoutSeconds") is not None:
        found["timeout_s"] = config["timeoutSeconds"]
    for key, name in (
        ("egress", "egress"),
        ("minimumInstances", "min_instances"),
        ("maximumInstances", "max_instances"),
    ):
        if manifest.get(key) is not None:
            found[name] = manifest[key]
    return found


def effective_settings(defaults: dict[str, Any], manifest: dict[str, Any], policy: dict[str, Any]) -> dict[str, Any]:
    """Defaults, overridden by the manifest, overridden by the policy; min never above max."""
    merged = {
        **defaults,
        **{k: v for k, v in manifest.items() if k in SETTING_KEYS},
        **{k: v for k, v in policy.items() if k in SETTING_KEYS},
    }
    merged["min_instances"] = min(merged["min_instances"], merged["max_instances"])
    merged["egress_enforced"] = True  # the fetch call-out reaches only hosts in egress (shared/isolation/egress.py)
    return merged


class PolicyStore:
    """The current policy of each cryptlet, one row per name in the catalog table."""

    def __init__(self, catalog: TableClient) -> None:
        self.catalog = catalog

    def get(self, name: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """(policy, ledger reference of its ``policy.set`` entry); ``({}, None)`` if none was set."""
        with storage_errors("catalog"):
            try:
                row = self.catalog.get_entity(POLICY_PARTITION, name)
            except ResourceNotFoundError:
                return {}, None
        return json.loads(row["policy"]), json.loads(row["ledger"])

    def put(self, name: str, policy: dict[str, Any], ledger: dict[str, Any]) -> None:
        row = {
            "PartitionKey": POLICY_PARTITION,
            "RowKey": name,
            "policy": json.dumps(policy, separators=(",", ":")),
            "ledger": json.dumps(ledger, separators=(",", ":")),
        }
        with storage_errors("catalog"):
            self.catalog.upsert_entity(row, mode=UpdateMode.REPLACE)

    def delete(self, name: str) -> None:
        try:
            self.catalog.delete_entity(POLICY_PARTITION, name)
        except AzureError:
            pass


class Policies:
    """Effective settings of registered cryptlets: host defaults < manifest < policy."""

    def __init__(
        self,
        store: PolicyStore,
        ledger: Ledger,
        folders: PackageFolders,
        *,
        max_instances: int,
        timeout_s: float,
        provider_name: str,
        provider_isolates: bool,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.folders = folders
        self.max_instances = max_instances
        self.timeout_s = timeout_s
        self.provider_name = provider_name
        self.provider_isolates = provider_isolates

    def defaults(self) -> dict[str, Any]:
        return {
            "isolation": False,
            "egress": [],
            "min_instances": 0,
            "max_instances": self.max_instances,
            "timeout_s": self.timeout_s,
        }

    def manifest_settings(self, registration: Registration) -> dict[str, Any]:
        """What the registered manifest asks for: from its ``cryptlet.registered`` entry, else the package."""
        try:
            entry = self.ledger.get(registration.ledger["sequence"])
            if entry.kind == REGISTERED and isinstance(entry.payload.get("manifest"), dict):
                return manifest_settings(entry.payload["manifest"])
            return manifest_settings(load_manifest(self.folders.resolve(registration.package)).document)
        except FabricError:
            return {}

    def effective(self, registration: Registration) -> dict[str, Any]:
        """Effective settings of a cryptlet: host defaults < manifest < policy."""
        policy, _ = self.store.get(registration.name)
        return effective_settings(self.defaults(), self.manifest_settings(registration), policy)

    def effective_for_manifest(self, name: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """Effective settings of ``name`` for a manifest document not registered yet (registration, rotation)."""
        policy, _ = self.store.get(name)
        return effective_settings(self.defaults(), manifest_settings(manifest), policy)

    def check_isolation(self, name: str, settings: dict[str, Any]) -> None:
        """Refuse a cryptlet that must be isolated on a provider that cannot isolate it."""
        if settings["isolation"] and not self.provider_isolates:
            raise Conflict(
                f"{name} requires isolation and provider {self.provider_name!r} cannot isolate", field="$.isolation"
            )
