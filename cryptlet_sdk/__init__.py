"""Cryptlet SDK for authors: base classes, the method marker and the per-call context.

See :mod:`cryptlet_sdk.base` for an example and docs/container-protocol.md for what the
container does around a call (signing, events, state).
"""

from cryptlet_sdk.base import ContractCryptlet, Cryptlet, UtilityCryptlet, is_method, method
from cryptlet_sdk.context import MAX_EVENTS, MAX_STATE_BYTES, Context, CryptletError, Response, State

__all__ = [
    "ContractCryptlet",
    "Context",
    "Cryptlet",
    "CryptletError",
    "MAX_EVENTS",
    "MAX_STATE_BYTES",
    "Response",
    "State",
    "UtilityCryptlet",
    "is_method",
    "method",
]
