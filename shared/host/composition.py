"""The composition root: the host's services, built once from :class:`~shared.settings.Settings`.

Each service takes its collaborators in its constructor; nothing below reaches for a process-wide
object. ``functions/host.py`` keeps the one :class:`Host` of a Functions worker process; tests and
tools build their own with :func:`build_host`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from shared.encoding import from_hex
from shared.envelope import Domain
from shared.events.delivery import CallbackPolicy, DeliveryKey
from shared.events.engine import Events
from shared.events.history import HistoryStore
from shared.events.subscribers import SubscriberRegistry
from shared.events.subscriptions import SubscriptionService, SubscriptionStore
from shared.host.contract_state import StateStore
from shared.host.invocations import Invocations
from shared.host.key_operations import KeyOperations
from shared.host.models import Call
from shared.host.operations import Operations
from shared.host.policy import Policies, PolicyStore
from shared.host.policy_admin import PolicyAdmin
from shared.host.pools import Pools, RegionOptions, RegionStarter
from shared.host.progress import JobStore
from shared.host.queued_calls import QueuedCalls, RequestStore
from shared.host.registrations import Registrations
from shared.host.registry import RegistrationCache, Registry
from shared.isolation.process import ProcessProvider
from shared.isolation.sequences import SequenceLeases
from shared.keys.keyvault import KeyVaultKeyStore
from shared.keys.lifecycle import KeyLifecycle
from shared.keys.store import KeyStore, TableKeyStore
from shared.ledger.chain import Ledger
from shared.ledger.checkpoint_store import CheckpointStore
from shared.ledger.checkpoints import CheckpointSigner, origin_of
from shared.ledger.index import LedgerIndex
from shared.packages.folders import PackageFolders
from shared.packages.store import PackageStore
from shared.settings import Settings
from shared.storage import Storage

#: The registration ledger's stream (its table partition).
LEDGER_STREAM = "registry"


def open_key_store(settings: Settings, storage: Storage | None = None) -> KeyStore:
    """The key store the settings choose: ``table`` (default) or ``keyvault``."""
    if settings.key_store == "keyvault":
        return KeyVaultKeyStore.from_url(settings.key_vault_url)
    return TableKeyStore((storage or Storage(settings.storage)).table(settings.table("keys")))


@dataclass(eq=False)
class Host:
    """The fabric's services for one host process (what ``functions/`` calls)."""

    settings: Settings
    storage: Storage
    provider: ProcessProvider
    ledger: Ledger
    ledger_index: LedgerIndex
    delivery_key: DeliveryKey
    registry: Registry
    registrations: Registrations
    invocations: Invocations
    queued: QueuedCalls
    keys: KeyOperations
    policies: PolicyAdmin
    pools: Pools
    operations: Operations
    callbacks: CallbackPolicy  # where subscription callbacks may point (FABRIC_CALLBACK_ALLOW)

    @cached_property
    def _subscription_store(self) -> SubscriptionStore:
        """The subscriptions table, one client for the event engine and the subscription API."""
        return SubscriptionStore(self.storage.table(self.settings.table("subscriptions")))

    @cached_property
    def events(self) -> Events:
        """The event engine (fire queue, worker, webhooks, dead letters, history), made on first use."""
        settings = self.settings
        return Events(
            invoke=self._invoke_for_events,
            subscriptions=self._subscription_store,
            history=HistoryStore(self.storage.table(settings.table("history"))),
            delivery_key=self.delivery_key,
            storage=self.storage,
            sealing_secret=settings.sealing_secret,
            region_timeout=settings.region_timeout,
            callbacks=self.callbacks,
        )

    @cached_property
    def subscriptions(self) -> SubscriptionService:
        """Subscribers and subscriptions (signed requests), made on first use."""
        settings = self.settings
        return SubscriptionService(
            self._subscription_store,
            SubscriberRegistry(self.storage.table(settings.table("subscribers"))),
            self.registrations.get,
            settings.sealing_secret,
            self.callbacks,
        )

    def _invoke_for_events(self, name: str, method: str, args: dict[str, Any], request_id: str) -> dict[str, Any]:
        return self.invocations.invoke(name, Call(method, args, from_hex(request_id, length=32, field="request_id")))

    def close(self) -> None:
        self.pools.close()
        self.provider.close()


def build_host(settings: Settings) -> Host:
    """Every service of a host, wired from ``settings``."""
    storage = Storage(settings.storage)
    domain = Domain(settings.chain_id, settings.verifying_contract)
    provider = ProcessProvider(settings.sealing_secret, timeout=settings.region_timeout)
    ledger = Ledger(storage.table(settings.table("ledger")), LEDGER_STREAM)
    index = LedgerIndex(
        ledger,
        CheckpointStore(ledger.table, LEDGER_STREAM),
        CheckpointSigner.from_secret(settings.sealing_secret, origin_of(LEDGER_STREAM)),
    )
    keystore = open_key_store(settings, storage)
    catalog = storage.table(settings.table("cryptlets"))
    folders = PackageFolders(
        settings.packages_dir,
        settings.uploads_folder,
        store=PackageStore(storage.container(settings.table("packages").lower())),
        max_bytes=settings.max_package_bytes,
        measure=provider.digest,
    )
    policy_store = PolicyStore(catalog)
    policies = Policies(
        policy_store,
        ledger,
        folders,
        max_instances=settings.regions_per_cryptlet,
        timeout_s=settings.region_timeout,
        provider_name=provider.name,
        provider_isolates=provider.isolates,
    )
    progress = JobStore(storage.table(settings.table("jobs")))  # progress of long calls
    region_options = RegionOptions(policies, progress.report)
    registry = Registry(
        folders=folders,
        catalog=catalog,
        ledger=ledger,
        index=index,
        keystore=keystore,
        provider=provider,
        domain=domain,
        region_options=region_options,
    )
    cache = RegistrationCache(registry)
    pools = Pools(
        RegionStarter(provider, keystore, folders, domain, region_options),
        policies,
        wait_timeout=settings.region_timeout,
    )
    states = StateStore(catalog)
    invocations = Invocations(cache, pools, states, SequenceLeases(catalog))  # sequence ranges per signing key
    delivery_key = DeliveryKey(settings.sealing_secret)  # signs deliveries and expiry results
    return Host(
        settings=settings,
        storage=storage,
        provider=provider,
        ledger=ledger,
        ledger_index=index,
        delivery_key=delivery_key,
        registry=registry,
        registrations=Registrations(registry, folders, cache, pools, index, policies),
        invocations=invocations,
        queued=QueuedCalls(
            RequestStore(storage.table(settings.table("requests"))),
            invocations,
            delivery_key,
            progress,
            lease_s=settings.request_lease_s,
        ),
        keys=KeyOperations(
            KeyLifecycle(registry, index),
            registry,
            cache,
            pools,
            index,
            policy_store,
            states,
            drain_timeout=settings.region_timeout + 5,
        ),
        policies=PolicyAdmin(policies, policy_store, registry, ledger, pools),
        pools=pools,
        operations=Operations(ledger, provider, delivery_key),
        callbacks=CallbackPolicy(settings.callback_allow),
    )
