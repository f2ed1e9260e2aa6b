"""Base classes for Python cryptlets: :class:`UtilityCryptlet` and :class:`ContractCryptlet`.

::

    from cryptlet_sdk import UtilityCryptlet, method

    class Quotes(UtilityCryptlet):
        @method
        def price(self, symbol: str) -> dict:
            quote = self.context.fetch_json(f"https://api.example.com/quote/{symbol}")
            self.context.emit("Priced", symbol=symbol, price=quote["price"])
            return {"symbol": symbol, "price": quote["price"]}

Every method the manifest's ``interface.methods`` names must exist on the class and be marked
with :func:`method`; the container checks that at load and calls nothing else. The container
sets :attr:`Cryptlet.context` for the duration of each call. Signing is automatic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from cryptlet_sdk.context import Context, CryptletError, State

F = TypeVar("F", bound=Callable[..., Any])
METHOD_MARK = "__cryptlet_method__"


def method(fn: F) -> F:
    """Mark a function as a cryptlet method (callable through the fabric)."""
    setattr(fn, METHOD_MARK, True)
    return fn


def is_method(fn: Any) -> bool:
    return bool(getattr(fn, METHOD_MARK, False))


class Cryptlet:
    """Common base: the per-call :attr:`context`."""

    #: "utility" or "contract"; must match the manifest's ``kind``.
    kind = "utility"

    def __init__(self) -> None:
        self._context: Context | None = None

    @property
    def context(self) -> Context:
        """The current call's context (only during a call)."""
        context = getattr(self, "_context", None)
        if context is None:
            raise CryptletError("the context exists only during a call")
        return context

    def setup(self) -> None:
        """Called once after the region loaded the class; override for one-time initialisation."""


class UtilityCryptlet(Cryptlet):
    """A stateless cryptlet: data or computation, signed, pushed or pulled."""

    kind = "utility"


class ContractCryptlet(Cryptlet):
    """A cryptlet that runs a contract's logic over a state the fabric keeps between calls.

    :attr:`state` reads and changes it during a call; :meth:`snapshot` returns a copy. Each
    invocation's envelope signs ``{"result", "state": {"version", "hash", "previous"}}``, so a
    chain can follow the state by its hashes.
    """

    kind = "contract"

    @property
    def state(self) -> State:
        return self.context.state

    def snapshot(self) -> dict[str, Any]:
        """A copy of the whole current state."""
        return self.state.snapshot()
