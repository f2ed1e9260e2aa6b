"""Sealed cryptlet keys as Azure Key Vault secrets (``FABRIC_KEY_STORE=keyvault``).

One secret per cryptlet: name ``cryptlet-<address hex, lower case>``, value the base64 of the
sealed blob (never a plain key: the vault holds only what a region of the right digest on the
right platform can open), content type :data:`CONTENT_TYPE`, tags ``address``, ``digest``,
``provider`` and ``version`` (the fabric's key version). Key Vault keeps every value it was set
to as a secret version; :meth:`KeyVaultKeyStore.get` reads the current one.

:meth:`KeyVaultKeyStore.delete` (a registration or rotation failed after its key was stored) deletes
the secret. With soft delete (always on; the Bicep template also enables purge protection) the
deleted secret stays recoverable, and cannot be purged, for the vault's retention period (90 days
by default): the sealed blob, which only a region of that package digest can open, for a key no
ledger entry names. Its name is never used again (each key has a fresh address).

Production authenticates with :class:`azure.identity.DefaultAzureCredential` (the function app's
managed identity, which the Bicep template grants *Key Vault Secrets Officer*); the SDK's
pipeline answers the vault's bearer-token challenge itself.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError
from azure.keyvault.secrets import SecretClient

from shared.errors import NotFound, StorageError
from shared.keys.store import KeyStore, SealedKey
from shared.storage import storage_errors

CONTENT_TYPE = "application/vnd.cryptlet-fabric.sealed-key+base64;v=1"
SECRET_PREFIX = "cryptlet-"


def secret_name(address: str) -> str:
    """The secret that holds ``address``'s sealed key: ``cryptlet-<40 hex digits>``."""
    body = address.lower().removeprefix("0x")
    if len(body) != 40 or any(c not in "0123456789abcdef" for c in body):
        raise ValueError(f"not a cryptlet address: {address!r}")
    return SECRET_PREFIX + body


class KeyVaultKeyStore(KeyStore):
    """Sealed keys in Key Vault secrets, through the Azure SDK's :class:`SecretClient`."""

    def __init__(self, client: SecretClient) -> None:
        self.client = client

    @classmethod
    def from_url(
        cls, vault_url: str, credential: TokenCredential | None = None, **client_options: Any
    ) -> KeyVaultKeyStore:
        """A store for the vault at ``vault_url``; ``credential`` defaults to ``DefaultAzureCredential``."""
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        return cls(SecretClient(vault_url, credential, **client_options))

    def put(self, key: SealedKey) -> None:
        tags = {
            "address": key.address.lower(),
            "digest": key.digest,
            "provider": key.provider,
            "version": str(key.version),
        }
        with storage_errors("key vault"):
            try:
                self.client.set_secret(
                    secret_name(key.address), base64.b64encode(key.blob).decode(), content_type=CONTENT_TYPE, tags=tags
                )
            except ClientAuthenticationError as exc:
                raise StorageError(f"key vault refused the credential ({type(exc).__name__})") from None

    def get(self, address: str) -> SealedKey:
        with storage_errors("key vault"):
            try:
                secret = self.client.get_secret(secret_name(address))
            except ResourceNotFoundError:
                raise NotFound(f"no sealed key stored for {address}") from None
            except ClientAuthenticationError as exc:
                raise StorageError(f"key vault refused the credential ({type(exc).__name__})") from None
        tags = secret.properties.tags or {}
        if secret.properties.content_type != CONTENT_TYPE or tags.get("address") != address.lower():
            raise StorageError(f"key vault secret {secret.name} is not a sealed key for {address}")
        try:
            blob = base64.b64decode(secret.value or "", validate=True)
            version = int(tags.get("version", "1"))
        except (binascii.Error, ValueError):
            raise StorageError(f"key vault secret {secret.name} is malformed") from None
        return SealedKey(
            address=address,
            digest=tags.get("digest", ""),
            provider=tags.get("provider", ""),
            blob=blob,
            version=version,
        )

    def delete(self, address: str) -> None:
        with storage_errors("key vault"):
            try:
                self.client.begin_delete_secret(secret_name(address))  # not waited for: the DELETE is sent
            except ResourceNotFoundError:
                pass
            except ClientAuthenticationError as exc:
                raise StorageError(f"key vault refused the credential ({type(exc).__name__})") from None

    def close(self) -> None:
        self.client.close()
