"""The dev host keeps a message it is processing invisible by renewing its visibility (as the
Functions host's queue listener does), and settles it with the newest pop receipt."""

from __future__ import annotations

import time
import uuid

from azure.storage.queue import QueueClient

from devhost.queues import VisibilityRenewal


def test_a_message_stays_invisible_while_its_lease_is_renewed(storage: str) -> None:
    queue = QueueClient.from_connection_string(storage, f"lease-{uuid.uuid4().hex[:12]}")
    queue.create_queue()
    try:
        queue.send_message("work")
        (message,) = list(queue.receive_messages(visibility_timeout=2))
        with VisibilityRenewal(queue, message, lease_seconds=2) as renewal:
            time.sleep(5)  # more than twice the lease: without renewal it would be handed out again
            assert list(queue.receive_messages(visibility_timeout=1)) == []
        assert renewal.pop_receipt != message.pop_receipt
        queue.delete_message(message.id, renewal.pop_receipt)  # the newest receipt settles it
        time.sleep(2.5)
        assert list(queue.receive_messages()) == []
    finally:
        queue.delete_queue()


def test_a_message_whose_holder_stopped_renewing_comes_back(storage: str) -> None:
    queue = QueueClient.from_connection_string(storage, f"lease-{uuid.uuid4().hex[:12]}")
    queue.create_queue()
    try:
        queue.send_message("work")
        (message,) = list(queue.receive_messages(visibility_timeout=2))
        time.sleep(2.5)  # the holder died: no renewal
        (again,) = list(queue.receive_messages(visibility_timeout=2))
        assert again.id == message.id and again.dequeue_count == 2
    finally:
        queue.delete_queue()
