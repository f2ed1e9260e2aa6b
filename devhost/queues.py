"""Queue triggers (polling Azure Storage queues) and queue output bindings.

Polling follows the Storage queues extension: up to ``batchSize`` messages are fetched
and processed in parallel; when a poll finds messages the next poll is immediate,
otherwise the wait doubles from 100 ms up to ``maxPollingInterval`` (the extension
uses a randomized version of the same back-off). Messages written by this host's queue
output bindings wake the pollers of that queue at once, like the host's shared queue
watcher. A message is deleted when the function succeeds; on failure it becomes visible
again after ``visibilityTimeout``, or goes to ``<queue>-poison`` once its dequeue count
reaches ``maxDequeueCount``. Messages that are not valid base64 (with the default
``messageEncoding``) go to the poison queue at once.

As in the extension (``QueueListener``), a fetched message is invisible for 10 minutes and
that lease is renewed every 5 minutes while the function runs, so a long function is not
handed to a second poller; a host that dies leaves its message invisible for up to 10
minutes. Work that must resume sooner after a crash needs its own lease and recovery (the
fabric's asynchronous requests: docs/requests.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from concurrent.futures import wait
from typing import Any, cast

from azure.functions import _abc as abc_types
from azure.functions.queue import QueueMessage as FunctionsQueueMessage
from azure.storage.queue import QueueMessage

from devhost.catalog import Binding, FunctionInfo
from devhost.hostconfig import QueueOptions
from devhost.invocation import Invoker
from devhost.storage import MessageCodec, QueueClients, resolve_connection

log = logging.getLogger("devhost")

MIN_POLLING_INTERVAL = 0.1  # seconds
LEASE_SECONDS = 600  # how long a fetched message stays invisible while it is processed (renewed at half)


class WakeRegistry:
    """Lets output bindings wake the pollers of a queue they have just written to."""

    def __init__(self) -> None:
        self._pollers: dict[tuple[str, str], list[QueuePoller]] = {}

    def register(self, poller: QueuePoller) -> None:
        self._pollers.setdefault((poller.connection, poller.queue_name), []).append(poller)

    def notify(self, connection: str, queue: str) -> None:
        for poller in self._pollers.get((connection, queue), ()):
            poller.wake()


class QueueOutput:
    """The sink for ``queue`` output bindings: str, bytes, func.QueueMessage or a list of them."""

    def __init__(self, clients: QueueClients, options: QueueOptions, wake: WakeRegistry) -> None:
        self.clients = clients
        self.codec = MessageCodec(options.message_encoding)
        self.wake = wake

    def __call__(self, binding: Binding, value: Any) -> None:
        connection = resolve_connection(binding.get("connection"))
        queue = str(binding.get("queueName")).lower()
        client = self.clients.get(connection, queue)
        for body in _bodies(value):
            client.send_message(self.codec.encode(body))
        self.wake.notify(connection, queue)


def _bodies(value: Any) -> Iterable[bytes]:
    if isinstance(value, (str, bytes, bytearray, abc_types.QueueMessage)):
        value = [value]
    for item in value:
        if isinstance(item, str):
            yield item.encode("utf-8")
        elif isinstance(item, (bytes, bytearray)):
            yield bytes(item)
        elif isinstance(item, abc_types.QueueMessage):
            yield cast(bytes, item.get_body())  # func.QueueMessage's; the abstract class says str | bytes
        else:
            raise TypeError(f"queue output values must be str, bytes or func.QueueMessage, not {type(item).__name__}")


class VisibilityRenewal:
    """Keeps a message being processed invisible: every half lease its visibility is extended by a
    whole lease, as the extension's ``UpdateQueueMessageVisibilityCommand`` does. The newest pop
    receipt (each update changes it) is :attr:`pop_receipt`, for the final delete or update."""

    def __init__(self, client: Any, message: QueueMessage, lease_seconds: float = LEASE_SECONDS) -> None:
        self.client = client
        self.message_id = message.id
        self.pop_receipt = message.pop_receipt
        self.lease_seconds = lease_seconds
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"devhost-renew-{message.id[:8]}", daemon=True)

    def __enter__(self) -> VisibilityRenewal:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with self._lock:  # an update under way finishes first, so pop_receipt is the newest
            pass

    def _run(self) -> None:
        while not self._stop.wait(self.lease_seconds / 2):
            with self._lock:
                if self._stop.is_set():
                    return
                try:
                    receipt = self.client.update_message(
                        self.message_id, pop_receipt=self.pop_receipt, visibility_timeout=round(self.lease_seconds)
                    )
                    self.pop_receipt = receipt.pop_receipt
                except Exception as exc:  # lost (deleted, receipt mismatch) or storage down: retry sooner
                    log.warning("could not renew the lease of message %s: %s", self.message_id, exc)


class QueuePoller:
    """Polls the queue of one queue-triggered function on its own thread."""

    def __init__(self, function: FunctionInfo, invoker: Invoker, clients: QueueClients, options: QueueOptions) -> None:
        self.function = function
        self.invoker = invoker
        self.clients = clients
        self.options = options
        self.codec = MessageCodec(options.message_encoding)
        self.connection = resolve_connection(function.trigger.get("connection"))
        self.queue_name = str(function.trigger.get("queueName")).lower()
        self.poison_name = f"{self.queue_name}-poison"
        annotation = function.trigger_annotation
        self._as = annotation if annotation in (str, bytes) else None
        self._stopping = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"devhost-queue-{function.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Ask the thread to stop; messages already fetched are still processed."""
        self._stopping = True
        self._wake.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.ident is not None:  # started
            self._thread.join(timeout)

    def _run(self) -> None:
        delay = 0.0
        failing = False
        while not self._stopping:
            try:
                client = self.clients.get(self.connection, self.queue_name)
                page = client.receive_messages(
                    messages_per_page=self.options.batch_size, visibility_timeout=LEASE_SECONDS
                ).by_page()
                messages = list(next(page, []))
                failing = False
            except Exception as exc:  # storage down or similar: keep trying with back-off
                if not failing:
                    log.warning("polling queue %s failed (%s); retrying", self.queue_name, exc)
                failing = True
                self.clients.forget(self.connection, self.queue_name)
                messages = []
            if messages:
                wait([self.invoker.pool.submit(self._process, m) for m in messages])
                delay = 0.0
                continue
            delay = min(max(delay * 2, MIN_POLLING_INTERVAL), self.options.max_polling_interval)
            self._wake.wait(delay)
            if self._wake.is_set():
                self._wake.clear()
                delay = 0.0

    def _process(self, message: QueueMessage) -> None:
        name = self.function.name
        try:
            assert message.dequeue_count is not None  # the service sets it on every received message
            if message.dequeue_count > self.options.max_dequeue_count:
                self._poison(message, "dequeue count exceeded before processing")
                return
            try:
                body = self.codec.decode(message.content)
            except ValueError as exc:
                self._poison(message, str(exc))
                return
            log.debug(
                "Executing 'Functions.%s' (Reason='New queue message detected on %s', Id=%s)",
                name,
                self.queue_name,
                message.id,
            )
            client = self.clients.get(self.connection, self.queue_name)
            renewal = VisibilityRenewal(client, message)
            try:
                with renewal:
                    self.invoker.invoke_blocking(self.function, self._trigger_value(message, body))
            except Exception:
                log.exception(
                    "Executed 'Functions.%s' (Failed, MessageId=%s, DequeueCount=%s)",
                    name,
                    message.id,
                    message.dequeue_count,
                )
                if message.dequeue_count >= self.options.max_dequeue_count:
                    self._poison(message, f"failed {message.dequeue_count} time(s)", renewal.pop_receipt)
                else:
                    client.update_message(
                        message.id,
                        pop_receipt=renewal.pop_receipt,
                        visibility_timeout=round(self.options.visibility_timeout),
                    )
                return
            client.delete_message(message.id, renewal.pop_receipt)
        except Exception as exc:
            log.error("queue %s: could not settle message %s: %s", self.queue_name, message.id, exc)

    def _trigger_value(self, message: QueueMessage, body: bytes) -> Any:
        if self._as is bytes:
            return body
        if self._as is str:
            return body.decode("utf-8")
        return FunctionsQueueMessage(
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )

    def _poison(self, message: QueueMessage, reason: str, pop_receipt: str | None = None) -> None:
        log.warning("moving message %s from %s to %s (%s)", message.id, self.queue_name, self.poison_name, reason)
        self.clients.get(self.connection, self.poison_name).send_message(message.content)
        self.clients.get(self.connection, self.queue_name).delete_message(
            message.id, pop_receipt or message.pop_receipt
        )
