"""Invocations: a call checked against the cryptlet's interface, run in a leased region, answered with
the signed envelope. A contract cryptlet's call runs over its stored state, one call at a time per
host, and its new state is stored as the envelope reports it; when another host changed the state
in the meantime, the call is run again on the new state (up to :data:`STATE_ATTEMPTS` times).

Every call gets a block of sequence numbers (:data:`SEQUENCE_BLOCK`) for its signing key from the
host's :class:`~shared.isolation.sequences.SequenceSource`, unique across hosts."""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any, cast

from cryptlet_sdk import MAX_EVENTS
from shared.encoding import to_hex
from shared.envelope import payload_hash
from shared.errors import InvalidInput, RegionError
from shared.host.contract_state import StateConflict, StateStore
from shared.host.models import Call
from shared.host.pools import Pools
from shared.host.registry import Registration, RegistrationCache
from shared.isolation.sequences import SequenceSource

#: Sequence numbers reserved per invocation: its envelope and the events it may emit.
SEQUENCE_BLOCK = 1 + MAX_EVENTS
#: Runs of one contract call that lost the race to store its new state, before 409 reaches the caller.
STATE_ATTEMPTS = 24
#: Most seconds between two runs of a contract call (jittered, doubling from 1 ms).
STATE_BACKOFF_MAX_S = 0.025


class Invocations:
    """Runs calls of registered cryptlets in their region pools."""

    def __init__(
        self, registrations: RegistrationCache, pools: Pools, states: StateStore, sequences: SequenceSource
    ) -> None:
        self.registrations = registrations
        self.pools = pools
        self.states = states
        self.sequences = sequences
        self._state_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def check(self, name: str, call: Call) -> tuple[Registration, bytes]:
        """The registration ``call`` is for and its request id; :class:`InvalidInput` if the method is not
        one of the cryptlet's interface."""
        registration = self.registrations.get(name)
        if call.method not in registration.methods:
            raise InvalidInput(f"method must be one of {sorted(registration.methods)}", field="method")
        return registration, call.request_id if call.request_id is not None else os.urandom(32)

    def invoke(self, name: str, call: Call) -> dict[str, Any]:
        """Run ``call`` of cryptlet ``name`` in a region; return the signed envelope document (with
        ``events``, each its own signed envelope, when the call emitted any)."""
        registration, request_id = self.check(name, call)
        if registration.kind == "contract":
            return self._invoke_contract(registration, call, request_id)
        return _response(self._call_region(registration, call.method, args=call.args, request_id=to_hex(request_id)))

    def _call_region(self, registration: Registration, method: str, **params: Any) -> dict[str, Any]:
        with self.pools.get(registration).lease() as region:
            try:
                return region.call(
                    "invoke",
                    method=method,
                    sequence=self.sequences.next(registration.address, SEQUENCE_BLOCK),
                    sequences=SEQUENCE_BLOCK,
                    **params,
                )
            except RegionError as exc:
                if exc.extra.get("region_code") == "bad_arguments":
                    raise InvalidInput(
                        f"{registration.name}.{method} rejected its arguments: {exc.detail}", field="args"
                    ) from None
                raise

    def _invoke_contract(self, registration: Registration, call: Call, request_id: bytes) -> dict[str, Any]:
        """Run a contract call over the stored state; run it again on the new state while another host's
        call stored first (the losing run's envelope is discarded, never returned)."""
        attempts = 0
        with self._state_lock(registration.name):
            while True:
                try:
                    return _response(self._run_contract(registration, call, request_id))
                except StateConflict:
                    attempts += 1
                    if attempts >= STATE_ATTEMPTS:
                        raise
                    time.sleep(random.uniform(0, min(STATE_BACKOFF_MAX_S, 0.001 * 2**attempts)))

    def _run_contract(self, registration: Registration, call: Call, request_id: bytes) -> dict[str, Any]:
        record = self.states.get(registration.name)
        result = self._call_region(
            registration,
            call.method,
            args=call.args,
            request_id=to_hex(request_id),
            state=record.state,
            state_version=record.version,
        )
        if "state" in result:
            summary = result["envelope"]["payload"]["state"]
            if to_hex(payload_hash(result["state"])) != summary["hash"]:
                raise RegionError(
                    "region returned a state that does not match the hash it signed", region_code="state_mismatch"
                )
            self.states.put(registration.name, record, result["state"], summary["version"], summary["hash"])
        return result

    def _state_lock(self, name: str) -> threading.Lock:
        with self._lock:
            return self._state_locks.setdefault(name, threading.Lock())

    def state(self, name: str) -> dict[str, Any]:
        """A contract cryptlet's stored state, version and hash (``GET /api/cryptlets/{name}/state``)."""
        registration = self.registrations.registry.get(name)
        if registration.kind != "contract":
            raise InvalidInput(f"{name} is a {registration.kind} cryptlet: it has no state", field="name")
        return {"name": name, **self.states.get(name).to_dict()}


def _response(result: dict[str, Any]) -> dict[str, Any]:
    """An invocation's answer: the envelope document, plus ``events`` when the call emitted any."""
    if result.get("events"):
        return {**result["envelope"], "events": result["events"]}
    return cast("dict[str, Any]", result["envelope"])
