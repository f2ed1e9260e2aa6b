"""Key stores: where sealed cryptlet keys live, behind one interface.

Only sealed blobs (see :mod:`shared.keys.sealing`) are ever stored; a store never sees a plain
private key. :class:`TableKeyStore` keeps them in Azure Table storage (Azurite locally, the
fallback); :class:`~shared.keys.keyvault.KeyVaultKeyStore` keeps them as Azure Key Vault secrets.
:func:`shared.host.composition.open_key_store` picks one from the ``FABRIC_KEY_STORE`` setting.
"""

from __future__ import annotations

import abc
import base64
import datetime as dt
from dataclasses import dataclass

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.errors import NotFound
from shared.storage import storage_errors


@dataclass(frozen=True)
class SealedKey:
    """A cryptlet key sealed to a package digest by an isolation provider."""

    address: str
    digest: str
    provider: str
    blob: bytes
    version: int = 1


class KeyStore(abc.ABC):
    """Stores sealed keys by cryptlet address."""

    @abc.abstractmethod
    def put(self, key: SealedKey) -> None: ...

    @abc.abstractmethod
    def get(self, address: str) -> SealedKey:
        """The newest sealed key for ``address``; :class:`NotFound` if there is none."""

    @abc.abstractmethod
    def delete(self, address: str) -> None:
        """Delete every sealed key stored for ``address`` (nothing if there is none). Only for a key no
        ledger entry holds: its registration or rotation failed."""


class TableKeyStore(KeyStore):
    """Sealed keys in a table: PartitionKey = address (lower case), RowKey = zero-padded version."""

    def __init__(self, table: TableClient) -> None:
        self.table = table

    def put(self, key: SealedKey) -> None:
        entity = {
            "PartitionKey": key.address.lower(),
            "RowKey": f"{key.version:06d}",
            "address": key.address,
            "digest": key.digest,
            "provider": key.provider,
            "sealed": base64.b64encode(key.blob).decode(),
            "stored_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        with storage_errors("key store"):
            self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    def get(self, address: str) -> SealedKey:
        with storage_errors("key store"):
            try:
                rows = list(self.table.query_entities("PartitionKey eq @pk", parameters={"pk": address.lower()}))
            except ResourceNotFoundError:
                rows = []
        if not rows:
            raise NotFound(f"no sealed key stored for {address}")
        row = max(rows, key=lambda r: r["RowKey"])
        return SealedKey(
            address=row["address"],
            digest=row["digest"],
            provider=row["provider"],
            blob=base64.b64decode(row["sealed"]),
            version=int(row["RowKey"]),
        )

    def delete(self, address: str) -> None:
        with storage_errors("key store"):
            try:
                rows = list(
                    self.table.query_entities(
                        "PartitionKey eq @pk", parameters={"pk": address.lower()}, select=["PartitionKey", "RowKey"]
                    )
                )
            except ResourceNotFoundError:
                return
            for row in rows:
                try:
                    self.table.delete_entity(row["PartitionKey"], row["RowKey"])
                except ResourceNotFoundError:
                    pass
