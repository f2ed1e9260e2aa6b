"""Azure Storage clients from the ``AzureWebJobsStorage`` connection setting.

The setting is a connection string (``UseDevelopmentStorage=true`` means Azurite on its default
ports, as Core Tools does) or, in Azure, identity-based: ``AzureWebJobsStorage__accountName``
(optionally ``__tableServiceUri``) with the app's managed identity via ``DefaultAzureCredential``.
"""
from __future__ import annotations

from collections.abc import Callable

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


def storage_setting(env) -> str:
    """The storage to use: a connection string, or a table service URL for identity-based access."""
    if env.get("AzureWebJobsStorage"):
        return env["AzureWebJobsStorage"]
    if env.get("AzureWebJobsStorage__tableServiceUri"):
        return env["AzureWebJobsStorage__tableServiceUri"]
    if env.get("AzureWebJobsStorage__accountName"):
        return f"https://{env['AzureWebJobsStorage__accountName']}.table.core.windows.net"
    raise ConfigurationError("AzureWebJobsStorage is not set: give a connection string, or "
                             "AzureWebJobsStorage__accountName for identity-based access", field="AzureWebJobsStorage")


def resolve_connection_string(value: str | None) -> str:
    """Expand ``UseDevelopmentStorage=true``; refuse an empty setting."""
    if not value:
        raise ConfigurationError("AzureWebJobsStorage is not set: it must hold a storage connection string")
    if value.strip().lower().startswith("usedevelopmentstorage=true"):
        return DEVELOPMENT_STORAGE
    return value


def table_client(connection_string: str, table: str, *, create: bool = True) -> TableClient:
    """A client for ``table``, creating the table on first use."""
    if connection_string.startswith("https://"):
        from azure.identity import DefaultAzureCredential

        service = TableServiceClient(endpoint=connection_string, credential=DefaultAzureCredential())
    else:
        service = TableServiceClient.from_connection_string(resolve_connection_string(connection_string))
    client = service.get_table_client(table)
    if create:
        _create(client.create_table, "table")
    return client


def _create(make: Callable[[], object], service: str) -> None:
    """Create a table or container that may exist already; unreachable storage is a StorageError."""
    try:
        make()
    except ResourceExistsError:
        pass
    except AzureError as exc:
        raise StorageError(f"{service} storage unreachable: {type(exc).__name__}") from None


def _service_endpoint(storage: str, service: str) -> str:
    """``https://<account>.<service>.core.windows.net`` for an identity-based setting (a service URL)."""
    account = storage.split("//", 1)[1].split(".", 1)[0]
    return f"https://{account}.{service}.core.windows.net"


def queue_client(storage: str, queue: str) -> QueueClient:
    """A client for ``queue`` (connection string, or the managed identity for a service URL)."""
    if storage.startswith("https://"):
        from azure.identity import DefaultAzureCredential

        return QueueClient(_service_endpoint(storage, "queue"), queue, credential=DefaultAzureCredential())
    return QueueClient.from_connection_string(resolve_connection_string(storage), queue)


def container_client(storage: str, container: str, *, create: bool = True) -> ContainerClient:
    """A client for blob ``container``, creating it on first use."""
    if storage.startswith("https://"):
        from azure.identity import DefaultAzureCredential

        client = ContainerClient(_service_endpoint(storage, "blob"), container, credential=DefaultAzureCredential())
    else:
        client = ContainerClient.from_connection_string(resolve_connection_string(storage), container)
    if create:
        _create(client.create_container, "blob")
    return client
