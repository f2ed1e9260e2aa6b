"""Azure Storage queue access shared by queue triggers and queue output bindings.

A binding's ``connection`` names an app setting (default ``AzureWebJobsStorage``; the
host also tries ``AzureWebJobs<name>``) holding a connection string, or
``UseDevelopmentStorage=true`` for Azurite on its default ports. Queues are created on
first use. Message bodies are encoded per host.json ``messageEncoding``.
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
from collections.abc import Mapping

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import LinearRetry, QueueClient

from devhost.azurite import connection_string
from devhost.errors import DevHostError

DEFAULT_CONNECTION = "AzureWebJobsStorage"
DEVELOPMENT_STORAGE = connection_string(10000, 10001, 10002)


def resolve_connection(setting: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The connection string a binding's ``connection`` setting name stands for."""
    environ = os.environ if environ is None else environ
    name = setting or DEFAULT_CONNECTION
    value = environ.get(name) or environ.get(f"AzureWebJobs{name}")
    if not value:
        raise DevHostError(f"storage connection setting {name} is not set")
    if value.strip().lower().startswith("usedevelopmentstorage=true"):
        return DEVELOPMENT_STORAGE
    return value


class MessageCodec:
    """Queue message text <-> bytes for ``messageEncoding`` ``base64`` or ``none``."""

    def __init__(self, encoding: str = "base64") -> None:
        self.base64 = encoding == "base64"

    def encode(self, body: bytes) -> str:
        return base64.b64encode(body).decode("ascii") if self.base64 else body.decode("utf-8")

    def decode(self, text: str) -> bytes:
        """Raises ``ValueError`` when a base64 queue holds a message that is not base64."""
        if not self.base64:
            return text.encode("utf-8")
        try:
            return base64.b64decode("".join(text.split()).encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise ValueError(f"message is not valid base64: {exc}") from None


class QueueClients:
    """Thread-safe cache of ``QueueClient`` objects; each queue is created once if missing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], QueueClient] = {}

    def get(self, connection: str, queue: str) -> QueueClient:
        key = (connection, queue)
        client = self._clients.get(key)
        if client is not None:
            return client
        # The SDK's default retry waits 15 s and more between attempts; a dev host should
        # notice an outage quickly (pollers retry on their own) and stop promptly.
        retry = LinearRetry(backoff=1, retry_total=2, random_jitter_range=0)
        client = QueueClient.from_connection_string(connection, queue, retry_policy=retry)
        try:
            client.create_queue()
        except ResourceExistsError:
            pass
        with self._lock:
            return self._clients.setdefault(key, client)

    def forget(self, connection: str, queue: str) -> None:
        """Drop a cached client (after a storage error, so the queue is re-created if needed)."""
        with self._lock:
            client = self._clients.pop((connection, queue), None)
        if client is not None:
            client.close()

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
