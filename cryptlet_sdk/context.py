"""The call context a cryptlet receives from its container: call-outs to the host, events, state.

A :class:`Context` is made by the container for each call and handed to SDK cryptlets as
``self.context``. Everything it does goes through the region's host channel (the region has no
network and no other way out): ``fetch`` is performed by the host and only to hosts in the
cryptlet's egress allow-list (docs/egress.md); ``log`` writes to the host log; ``now`` reads the
host clock; ``progress`` reports how far a long call has come. Events and state changes are
collected here and signed by the container after the method returns; the cryptlet never sees a
private key.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

#: Most events one call may emit (each becomes its own signed envelope).
MAX_EVENTS = 16
#: Largest contract state, as canonical JSON bytes (it is kept in one table property).
MAX_STATE_BYTES = 32 * 1024


class CryptletError(Exception):
    """A cryptlet used the SDK wrongly (unknown event, bad fields, state not JSON...)."""


class HostLink(Protocol):
    """What a context needs from the region: ``call(op, **params) -> result`` (a call-out)."""

    def call(self, op: str, **params: Any) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Response:
    """The result of :meth:`Context.fetch`."""

    status: int
    url: str
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def raise_for_status(self) -> Response:
        if self.status >= 400:
            raise CryptletError(f"{self.url} answered HTTP {self.status}")
        return self


class State(Mapping[str, Any]):
    """A contract cryptlet's state: a JSON object the fabric keeps between calls.

    Read it like a dict; change it with ``state[key] = value``, :meth:`set`, :meth:`delete` or
    :meth:`update`. Values must be JSON (they are copied in and out). After the call the
    container signs the new state's hash, and the host stores the state for the next call.
    """

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = copy.deepcopy(dict(data or {}))
        self.changed = False

    def __getitem__(self, key: str) -> Any:
        return copy.deepcopy(self._data[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __setitem__(self, key: str, value: Any) -> None:
        self.set(key, value)

    def __delitem__(self, key: str) -> None:
        self.delete(key)

    def set(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise CryptletError("state keys must be strings")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise CryptletError(f"state[{key!r}] must be a JSON value: {exc}") from None
        self._data[key] = copy.deepcopy(value)
        self.changed = True

    def delete(self, key: str) -> None:
        if key in self._data:
            del self._data[key]
            self.changed = True

    def update(self, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            self.set(key, value)

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of the whole state (what the container hashes and signs)."""
        return copy.deepcopy(self._data)


@dataclass
class Emitted:
    """One event a call emitted: its name and fields (signed later as its own envelope)."""

    event: str
    fields: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event, "fields": self.fields}


class Context:
    """What one call of a cryptlet may use besides its arguments."""

    def __init__(
        self,
        host: HostLink,
        *,
        name: str,
        method: str,
        request_id: str,
        events: Mapping[str, Mapping[str, Any]] | None = None,
        state: State | None = None,
    ) -> None:
        self._host = host
        self.name = name
        self.method = method
        self.request_id = request_id
        self._declared = dict(events or {})
        self._state = state
        self.emitted: list[Emitted] = []

    # -- call-outs ----------------------------------------------------------------------------------
    def log(self, message: str, level: str = "info") -> None:
        """Write to the host log (levels debug, info, warning, error), tagged with the cryptlet's name."""
        self._host.call("log", message=str(message), level=level)

    def now_ms(self) -> int:
        """The host clock in unix milliseconds."""
        return int(self._host.call("time")["unix_ms"])

    def now(self) -> dt.datetime:
        """The host clock as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.now_ms() / 1000, tz=dt.UTC)

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far this call has come (``fraction`` from 0 to 1, and a short ``message``).

        The host records it per request id (``GET /api/requests/{request_id}/progress``); the
        recorded fraction never goes down. Report at most every percent or so: each report is a
        call-out the call waits for.
        """
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise CryptletError(f"progress fraction must be a number from 0 to 1, not {fraction!r}")
        self._host.call("progress", request_id=self.request_id, fraction=float(fraction), message=str(message))

    def fetch(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
        timeout_s: float | None = None,
    ) -> Response:
        """HTTP through the host, allowed only to the cryptlet's egress allow-list."""
        params: dict[str, Any] = {"url": url, "method": method, "headers": dict(headers or {})}
        if body is not None:
            raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
            params["body_b64"] = base64.b64encode(raw).decode()
        if timeout_s is not None:
            params["timeout_s"] = timeout_s
        result = self._host.call("fetch", **params)
        return Response(
            status=int(result["status"]),
            url=str(result["url"]),
            headers=dict(result["headers"]),
            body=base64.b64decode(result["body_b64"]),
        )

    def fetch_json(self, url: str, **kwargs: Any) -> Any:
        """``fetch(url).raise_for_status().json()``."""
        return self.fetch(url, **kwargs).raise_for_status().json()

    # -- events and state ---------------------------------------------------------------------------
    def emit(self, event: str, **fields: Any) -> None:
        """Emit a declared event; the container signs it as an envelope with topic ``<name>.<event>``."""
        emitted = check_event(self._declared, event, fields)
        if len(self.emitted) >= MAX_EVENTS:
            raise CryptletError(f"a call may emit at most {MAX_EVENTS} events")
        self.emitted.append(emitted)

    @property
    def state(self) -> State:
        """The contract state (contract cryptlets only)."""
        if self._state is None:
            raise CryptletError(f"{self.name} is not a contract cryptlet: it has no state")
        return self._state


def check_event(declared: Mapping[str, Mapping[str, Any]], event: Any, fields: Any) -> Emitted:
    """Check an event against the manifest's ``interface.events``; return it normalised."""
    if not isinstance(event, str) or event not in declared:
        raise CryptletError(f"event {event!r} is not declared in interface.events (declared: {sorted(declared)})")
    if not isinstance(fields, dict):
        raise CryptletError(f"fields of event {event} must be an object")
    expected = [p["name"] for p in declared[event].get("inputs") or []]
    if sorted(fields) != sorted(expected):
        raise CryptletError(f"event {event} takes fields {expected}, got {sorted(fields)}")
    try:
        json.dumps(fields, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CryptletError(f"fields of event {event} must be JSON: {exc}") from None
    return Emitted(event, {name: fields[name] for name in expected})
