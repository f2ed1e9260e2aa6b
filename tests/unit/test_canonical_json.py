"""``canonical_json`` (with its fast path for plain values) is byte-for-byte the RFC 8785 canonicaliser."""

from __future__ import annotations

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.encoding import canonical_json
from shared.errors import InvalidInput

LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.text(), st.floats(allow_nan=False, allow_infinity=False))
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=24,
)


@settings(max_examples=800, deadline=None)
@given(VALUES)
def test_same_bytes_or_same_refusal_as_rfc8785(value) -> None:
    try:
        expected = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError):
        with pytest.raises(InvalidInput):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        {"a": '\x00\x1f\x7f\u2028"\\\n\t\b\f\r', "B": [1, -1, 2**53 - 1, -(2**53 - 1)]},
        {"é": 1, "z": 2, "\U0001f600": 3, "\uffff": 4},  # non-ASCII keys: UTF-16 order (general path)
        {"f": 1.5, "e": 1e21, "i": 10},  # floats: ECMAScript number form (general path)
        [[[[{"deep": [True, False, None]}]]]],
    ],
)
def test_edge_values(value) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("value", [{"s": "\ud800"}, {"n": 2**53}, [-(2**53)]])
def test_what_rfc8785_refuses_is_refused(value) -> None:
    with pytest.raises((rfc8785.CanonicalizationError, ValueError)):
        rfc8785.dumps(value)
    with pytest.raises(InvalidInput):
        canonical_json(value)
