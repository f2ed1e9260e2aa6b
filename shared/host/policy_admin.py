"""Reading and setting a cryptlet's policy (admin): a ``policy.set`` ledger entry, then the catalog row,
then the cryptlet's regions are replaced so they take the new settings at once."""

from __future__ import annotations

from typing import Any

from shared.host.policy import Policies, PolicyStore, effective_settings
from shared.host.pools import Pools
from shared.host.registry import Registry
from shared.ledger.chain import Ledger
from shared.ledger.kinds import POLICY_SET


class PolicyAdmin:
    """``GET``/``PUT /api/cryptlets/{name}/policy``."""

    def __init__(
        self, policies: Policies, store: PolicyStore, registry: Registry, ledger: Ledger, pools: Pools
    ) -> None:
        self.policies = policies
        self.store = store
        self.registry = registry
        self.ledger = ledger
        self.pools = pools

    def get(self, name: str) -> dict[str, Any]:
        """Manifest settings, policy (with its ledger entry) and effective settings of ``name``."""
        registration = self.registry.get(name)
        policy, entry = self.store.get(name)
        manifest = self.policies.manifest_settings(registration)
        return {
            "name": name,
            "provider": self.policies.provider_name,
            "manifest": manifest,
            "policy": policy,
            "ledger": entry,
            "effective": effective_settings(self.policies.defaults(), manifest, policy),
            "running_regions": self.pools.running(name),
        }

    def set(self, name: str, policy: dict[str, Any]) -> dict[str, Any]:
        """Replace the policy of ``name`` (already validated: :func:`shared.host.policy.validate_policy`);
        the region pool takes the new maximum at once and starts ``min_instances`` warm regions."""
        registration = self.registry.get(name)
        settings = effective_settings(self.policies.defaults(), self.policies.manifest_settings(registration), policy)
        self.policies.check_isolation(name, settings)
        payload: dict[str, Any] = {
            "scope": f"cryptlet:{name}",
            "policy": {k: v for k, v in policy.items() if k != "note"},
        }
        if policy.get("note"):
            payload["note"] = policy["note"]
        entry = self.ledger.append(POLICY_SET, payload)
        self.store.put(name, policy, entry.reference())
        self.pools.drop(name)  # running regions hold the old egress list and timeout: replace them
        self.pools.get(registration).warm(settings["min_instances"])
        return {**self.get(name), "entry": entry.to_dict()}
