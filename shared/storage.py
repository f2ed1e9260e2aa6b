"""Azure Storage: clients, credentials and the translation of Azure errors, in one wrapper.

:class:`Storage` owns the clients of one storage setting (and, for identity-based access, one
``DefaultAzureCredential`` shared by its clients); :func:`storage_errors` turns any Azure error
raised inside it into the fabric's :class:`~shared.errors.StorageError` naming what was unreachable.

The setting is a connection string (``UseDevelopmentStorage=true`` means Azurite on its default
ports, as Core Tools does) or, in Azure, identity-based: ``AzureWebJobsStorage__accountName``
(optionally ``__tableServiceUri``) with the app's managed identity via ``DefaultAzureCredential``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient

from shared.errors import ConfigurationError, StorageError

DEVELOPMENT_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


def storage_setting(env: Mapping[str, str]) -> str:
    """The storage to use: a connection string, or a table service URL for identity-based access."""
    if env.get("AzureWebJobsStorage"):
        return env["AzureWebJobsStorage"]
    if env.get("AzureWebJobsStorage__tableServiceUri"):
        return env["AzureWebJobsStorage__tableServiceUri"]
    if env.get("AzureWebJobsStorage__accountName"):
        return f"https://{env['AzureWebJobsStorage__accountName']}.table.core.windows.net"
    raise ConfigurationError(
        "AzureWebJobsStorage is not set: give a connection string, or "
        "AzureWebJobsStorage__accountName for identity-based access",
        field="AzureWebJobsStorage",
    )


def resolve_connection_string(value: str | None) -> str:
    """Expand ``UseDevelopmentStorage=true``; refuse an empty setting."""
    if not value:
        raise ConfigurationError("AzureWebJobsStorage is not set: it must hold a storage connection string")
    if value.strip().lower().startswith("usedevelopmentstorage=true"):
        return DEVELOPMENT_STORAGE
    return value


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Translate Azure errors raised inside into ``StorageError("<what> unreachable: <error type>")``.

    Only the error's type is kept: Azure messages may carry URLs with SAS tokens or account names.
    """
    try:
        yield
    except AzureError as exc:
        raise StorageError(f"{what} unreachable: {type(exc).__name__}") from None


class Storage:
    """The clients of one storage setting: a connection string, or a service URL (managed identity)."""

    def __init__(self, setting: str) -> None:
        self.setting = setting
        self._credential: Any = None

    @property
    def identity_based(self) -> bool:
        return self.setting.startswith("https://")

    def credential(self) -> Any:
        """One ``DefaultAzureCredential`` for every client of this storage (imported only when used)."""
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return self._credential

    def table(self, table: str, *, create: bool = True) -> TableClient:
        """A client for ``table``, creating the table on first use."""
        if self.identity_based:
            service = TableServiceClient(endpoint=self.setting, credential=self.credential())
        else:
            service = TableServiceClient.from_connection_string(resolve_connection_string(self.setting))
        client = service.get_table_client(table)
        if create:
            _create(client.create_table, "table")
        return client

    def queue(self, queue: str) -> QueueClient:
        """A client for ``queue``."""
        if self.identity_based:
            return QueueClient(_service_endpoint(self.setting, "queue"), queue, credential=self.credential())
        return QueueClient.from_connection_string(resolve_connection_string(self.setting), queue)

    def container(self, container: str, *, create: bool = True) -> ContainerClient:
        """A client for blob ``container``, creating it on first use."""
        if self.identity_based:
            client = ContainerClient(_service_endpoint(self.setting, "blob"), container, credential=self.credential())
        else:
            client = ContainerClient.from_connection_string(resolve_connection_string(self.setting), container)
        if create:
            _create(client.create_container, "blob")
        return client


def table_client(connection_string: str, table: str, *, create: bool = True) -> TableClient:
    """A client for ``table`` of storage ``connection_string`` (see :meth:`Storage.table`)."""
    return Storage(connection_string).table(table, create=create)


def queue_client(storage: str, queue: str) -> QueueClient:
    """A client for ``queue`` of ``storage`` (see :meth:`Storage.queue`)."""
    return Storage(storage).queue(queue)


def container_client(storage: str, container: str, *, create: bool = True) -> ContainerClient:
    """A client for blob ``container`` of ``storage`` (see :meth:`Storage.container`)."""
    return Storage(storage).container(container, create=create)


def _create(make: Callable[[], object], service: str) -> None:
    """Create a table or container that may exist already; unreachable storage is a StorageError."""
    with storage_errors(f"{service} storage"):
        try:
            make()
        except ResourceExistsError:
            pass


def _service_endpoint(storage: str, service: str) -> str:
    """``https://<account>.<service>.core.windows.net`` for an identity-based setting (a service URL)."""
    account = storage.split("//", 1)[1].split(".", 1)[0]
    return f"https://{account}.{service}.core.windows.net"
