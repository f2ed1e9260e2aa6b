"""Fabric settings, read from the environment (app settings in Azure, ``local.settings.json`` locally).

Every setting is listed in :data:`SETTINGS` with its default and meaning; docs/settings.md and
the Bicep template are checked against this list by the tests.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import ConfigurationError
from shared.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_PACKAGE_BYTES, MAX_INSTANCES, MAX_TIMEOUT_S
from shared.storage import storage_setting

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: name -> (default or None when required, description)
SETTINGS: dict[str, tuple[str | None, str]] = {
    "AzureWebJobsStorage": (
        None,
        "Storage connection string (tables, queues); `UseDevelopmentStorage=true` for "
        "Azurite. In Azure: `AzureWebJobsStorage__accountName` with the managed identity.",
    ),
    "FABRIC_SEALING_SECRET": (
        None,
        "Base64 of >= 32 random bytes: the process provider's platform sealing secret. "
        "Keys sealed under one secret cannot be opened under another.",
    ),
    "FABRIC_PACKAGES_DIR": (
        "cryptlet_packages",
        "Folder holding cryptlet packages that may be registered (relative to the app root).",
    ),
    "FABRIC_UPLOADS_DIR": (
        "",
        "Writable folder where uploaded packages are extracted (`<digest>/` each); empty: "
        "FABRIC_PACKAGES_DIR/.uploads. Every upload is also kept in blob storage.",
    ),
    "FABRIC_MAX_PACKAGE_BYTES": (
        str(DEFAULT_MAX_PACKAGE_BYTES),
        "Largest uploaded package zip in bytes (compressed); it may unpack to "
        "at most four times this and hold at most 256 entries.",
    ),
    "FABRIC_MAX_BODY_BYTES": (
        str(DEFAULT_MAX_BODY_BYTES),
        "Largest JSON request body in bytes (invoke, requests, policy, subscriptions, keys); "
        "larger ones get 413. The dev host stops reading there; package uploads have FABRIC_MAX_PACKAGE_BYTES.",
    ),
    "FABRIC_TABLE_PREFIX": ("fabric", "Prefix of every table the fabric creates (letters and digits)."),
    "FABRIC_CHAIN_ID": ("0", "EIP-712 domain chainId that envelopes are signed for."),
    "FABRIC_VERIFYING_CONTRACT": (
        "0x0000000000000000000000000000000000000000",
        "EIP-712 domain verifyingContract that envelopes are signed for.",
    ),
    "FABRIC_REGION_TIMEOUT_S": ("10", "Seconds a region may take to answer one call before it is killed."),
    "FABRIC_REGIONS_PER_CRYPTLET": ("2", "Most warm regions kept per cryptlet (calls beyond wait for one)."),
    "FABRIC_AUDIT_SCHEDULE": (
        "0 0 * * * *",
        "NCRONTAB schedule of the ledger audit timer (six fields, seconds first).",
    ),
    "FABRIC_CHECKPOINT_SCHEDULE": (
        "0 */5 * * * *",
        "NCRONTAB schedule of the signed ledger checkpoint timer (a checkpoint is written only when the ledger grew).",
    ),
    "FABRIC_WARM_SCHEDULE": (
        "0 */1 * * * *",
        "NCRONTAB schedule of the timer that keeps each cryptlet's "
        "min_instances regions warm (also run at host start).",
    ),
    "FABRIC_INVOKE_QUEUE": ("cryptlet-invocations", "Queue of asynchronous invocation requests."),
    "FABRIC_REQUEST_LEASE_S": (
        "30",
        "Seconds a worker's lease on a running asynchronous request lasts (renewed every third of it "
        "while the call runs); a request whose host died is re-enqueued by the sweep once it runs out.",
    ),
    "FABRIC_REQUEST_SWEEP_SCHEDULE": (
        "*/10 * * * * *",
        "NCRONTAB schedule of the asynchronous-request recovery sweep (re-enqueues requests whose "
        "lease ran out or whose message was lost; expires pending ones past their deadline).",
    ),
    "FABRIC_CALLBACK_ALLOW": (
        "",
        "Comma-separated hosts, IP addresses and CIDRs that subscription callbacks may reach although "
        "they are not public (loopback, private, link-local, ...); empty: public addresses only.",
    ),
    "FABRIC_FIRE_QUEUE": (
        "cryptlet-fires",
        "Queue of subscription fires (event engine; poison: `<queue>-poison`, listed by GET /api/deadletters).",
    ),
    "FABRIC_SCHEDULER_SCHEDULE": (
        "* * * * * *",
        "NCRONTAB schedule of the event scheduler tick (every second: it enqueues the fires due within the next 2 s).",
    ),
    "FABRIC_DELIVERY_BACKOFF_MAX_S": (
        "60",
        "Longest wait in seconds between two delivery attempts of a fire "
        "(exponential from host.json visibilityTimeout; after maxDequeueCount "
        "attempts the fire goes to the poison queue).",
    ),
    "FABRIC_KEY_STORE": (
        "table",
        "Where sealed cryptlet keys are stored: `table` (the `<prefix>keys` table; "
        "Azurite locally) or `keyvault` (Key Vault secrets at FABRIC_KEY_VAULT_URL).",
    ),
    "FABRIC_KEY_VAULT_URL": (
        "",
        "Key Vault URL (https://<name>.vault.azure.net) for FABRIC_KEY_STORE=keyvault; "
        "reached with DefaultAzureCredential (the app's managed identity in Azure).",
    ),
}

_TABLE_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,40}\Z")


@dataclass(frozen=True)
class Settings:
    """Validated fabric settings."""

    storage: str
    sealing_secret: bytes = field(repr=False)  # never in a repr, a log line or an exception
    packages_dir: Path
    table_prefix: str
    chain_id: int
    verifying_contract: str
    region_timeout: float
    regions_per_cryptlet: int
    invoke_queue: str
    key_store: str = "table"
    key_vault_url: str = ""
    max_package_bytes: int = DEFAULT_MAX_PACKAGE_BYTES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    uploads_dir: Path | None = None  # None: packages_dir/.uploads
    request_lease_s: float = 30.0
    callback_allow: str = ""

    @property
    def uploads_folder(self) -> Path:
        """Where uploaded packages are extracted (``.uploads/<digest>`` package references resolve here)."""
        return self.uploads_dir or self.packages_dir / ".uploads"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str:
            value = env.get(name) or SETTINGS[name][0]
            if value is None:
                raise ConfigurationError(f"setting {name} is required: {SETTINGS[name][1]}", field=name)
            return value

        try:
            secret = base64.b64decode(get("FABRIC_SEALING_SECRET"), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError("FABRIC_SEALING_SECRET must be base64", field="FABRIC_SEALING_SECRET") from None
        if len(secret) < 32:
            raise ConfigurationError(
                "FABRIC_SEALING_SECRET must decode to at least 32 bytes", field="FABRIC_SEALING_SECRET"
            )
        prefix = get("FABRIC_TABLE_PREFIX")
        if not _TABLE_PREFIX.match(prefix):
            raise ConfigurationError(
                "FABRIC_TABLE_PREFIX must be letters and digits, starting with a letter", field="FABRIC_TABLE_PREFIX"
            )
        packages = Path(get("FABRIC_PACKAGES_DIR"))
        packages = packages if packages.is_absolute() else PROJECT_ROOT / packages
        uploads = Path(get("FABRIC_UPLOADS_DIR") or packages / ".uploads")
        return cls(
            storage=storage_setting(env),
            sealing_secret=secret,
            packages_dir=packages,
            uploads_dir=uploads if uploads.is_absolute() else PROJECT_ROOT / uploads,
            table_prefix=prefix,
            chain_id=_int(get, "FABRIC_CHAIN_ID", 0),
            verifying_contract=get("FABRIC_VERIFYING_CONTRACT"),
            region_timeout=float(_int(get, "FABRIC_REGION_TIMEOUT_S", 1, MAX_TIMEOUT_S)),
            regions_per_cryptlet=_int(get, "FABRIC_REGIONS_PER_CRYPTLET", 1, MAX_INSTANCES),
            invoke_queue=get("FABRIC_INVOKE_QUEUE"),
            max_package_bytes=_int(get, "FABRIC_MAX_PACKAGE_BYTES", 1024, MAX_BYTES_SETTING),
            max_body_bytes=_int(get, "FABRIC_MAX_BODY_BYTES", 1024, MAX_BYTES_SETTING),
            request_lease_s=float(_int(get, "FABRIC_REQUEST_LEASE_S", 3)),
            callback_allow=get("FABRIC_CALLBACK_ALLOW"),
            **_key_store(get),
        )

    def table(self, name: str) -> str:
        """Full table name for one of the fabric's tables."""
        return f"{self.table_prefix}{name}"


def _key_store(get: Callable[[str], str]) -> dict[str, str]:
    store, url = get("FABRIC_KEY_STORE"), get("FABRIC_KEY_VAULT_URL").strip()
    if store not in ("table", "keyvault"):
        raise ConfigurationError("FABRIC_KEY_STORE must be table or keyvault", field="FABRIC_KEY_STORE")
    if store == "keyvault" and not url.startswith("https://"):
        raise ConfigurationError(
            "FABRIC_KEY_VAULT_URL must be the vault's https:// URL when FABRIC_KEY_STORE=keyvault",
            field="FABRIC_KEY_VAULT_URL",
        )
    return {"key_store": store, "key_vault_url": url}


#: The most a byte-size setting may say: the Functions host's own request body limit (docs/deploy.md).
MAX_BYTES_SETTING = 100 * 1024 * 1024


def declared_int(name: str, env: Mapping[str, str] | None = None) -> int:
    """The integer setting ``name`` as far as it can be read without the other settings (its default
    when unset or not an integer; :meth:`Settings.from_env` reports a bad value): for values needed
    while the function app is imported, such as the body limits its routes declare."""
    env = os.environ if env is None else env
    try:
        return int(env.get(name) or SETTINGS[name][0] or "")
    except ValueError:
        return int(SETTINGS[name][0] or 0)


def _int(get: Callable[[str], str], name: str, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(get(name))
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer", field=name) from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}", field=name)
    if maximum is not None and value > maximum:
        raise ConfigurationError(f"{name} must be at most {maximum}", field=name)
    return value
