"""``shared.encoding.parse_json_input``: untrusted JSON within the limits of shared/limits.py, refused
as a 400 naming the JSON path, and otherwise the same value ``json.loads`` gives."""

from __future__ import annotations

import json
import math
import sys

import pytest

from shared.encoding import JsonInputError, parse_json_input
from shared.errors import InvalidInput
from shared.limits import MAX_JSON_DEPTH, MAX_JSON_INT_DIGITS


def nested(depth: int) -> bytes:
    return b'{"method":"m","args":{"x":' + b"[" * depth + b"]" * depth + b"}}"


def refused(data: bytes | str) -> JsonInputError:
    with pytest.raises(JsonInputError) as caught:
        parse_json_input(data)
    return caught.value


@pytest.mark.parametrize(
    "data",
    [
        b'{"method":"validate","args":{"customer":{"name":"Ada","score":742},"salt":"0x00ff"}}',
        b'{"when":"2024-01-01T00:00:00Z","url":"https://example.com:8443/a?b=c","n":[1,2.5,-3e10,true,null]}',
        b'{"a":{"b":{"c":[{"d":"e:f"}]}},"g":"\\u00e9\\ud83d\\ude00","h":""}',
        b'{"big":' + b"9" * MAX_JSON_INT_DIGITS + b',"neg":-' + b"9" * MAX_JSON_INT_DIGITS + b"}",
        b"[]",
        b'"just a string: with a colon"',
        b"42",
        '{"ünïcödé":"ok","k":"a:b"}'.encode(),
        '{"text":"a str, not bytes"}',
    ],
)
def test_valid_json_gives_the_value_json_loads_gives(data: bytes | str) -> None:
    assert parse_json_input(data) == json.loads(data)


def test_a_utf8_byte_order_mark_is_ignored() -> None:
    assert parse_json_input(b'\xef\xbb\xbf{"a":1}') == {"a": 1}


def test_depth_up_to_the_limit_is_accepted_and_one_more_is_refused() -> None:
    assert parse_json_input(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    assert parse_json_input(b'{"x":"' + b"[{" * 500 + b'","y":' + b"[" * 63 + b"]" * 63 + b"}")  # strings skipped
    error = refused(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    assert error.field == "$" and "nested deeper than 64 levels" in error.detail


@pytest.mark.parametrize("depth", [100, 500, 1100, 100_000])
def test_deep_nesting_is_a_400_not_a_recursion_error(depth: int) -> None:
    error = refused(nested(depth))
    assert isinstance(error, InvalidInput) and error.status == 400
    assert error.field == "$" and "nested deeper than" in error.detail


@pytest.mark.parametrize("data", [b"[" * 300_000, b'"x",' + b"{" * 300_000, '["\ud800",' + "[" * 300_000])
def test_depth_is_measured_before_a_parser_recurses(data: bytes | str) -> None:
    """py_ecc raises the recursion limit to 100,000: deep enough text would then overflow the C stack
    of msgspec or json.loads (a crash, not an exception) if it reached them."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1_000_000)
    try:
        assert refused(data).field == "$"
    finally:
        sys.setrecursionlimit(limit)


@pytest.mark.parametrize("digits", [MAX_JSON_INT_DIGITS + 1, 4_300, 5_000, 100_000])
def test_long_integers_are_refused_naming_their_path(digits: int) -> None:
    error = refused(b'{"method":"m","args":{"x":[1,-' + b"9" * digits + b"]}}")
    assert error.field == "$.args.x[1]" and f"more than {MAX_JSON_INT_DIGITS} digits" in error.detail


def test_a_long_integer_at_the_top_is_refused() -> None:
    assert refused(b"9" * 5000).field == "$"


@pytest.mark.parametrize(
    "data,field",
    [
        (b'{"method":"m","args":{"x":"\\ud800"}}', "$.args.x"),
        (b'{"args":{"x":["ok","a\\udc00b"]}}', "$.args.x[1]"),
        (b'{"args":{"x":"\\ud800\\u0041"}}', "$.args.x"),
        (b'{"args":{"\\ud800":1}}', "$.args['\\ud800']"),
        ('{"args":{"x":"\ud800"}}', "$.args.x"),  # a str holding a lone surrogate itself
    ],
)
def test_lone_surrogates_are_refused_in_strings_and_names(data: bytes | str, field: str) -> None:
    error = refused(data)
    assert error.field == field and "surrogate" in error.detail


def test_a_surrogate_pair_is_a_character() -> None:
    assert parse_json_input(b'{"x":"\\ud83d\\ude00"}') == {"x": "\U0001f600"}


@pytest.mark.parametrize(
    "data,field",
    [
        (b'{"a":1,"a":2}', "$.a"),
        (b'{"args":{"b":{"c":1,"d":2,"c":3}}}', "$.args.b.c"),
        (b'{"t":"12:00","args":[{"k":"v","k":"v"}]}', "$.args[0].k"),  # colons inside strings too
    ],
)
def test_duplicate_member_names_are_refused(data: bytes, field: str) -> None:
    error = refused(data)
    assert error.field == field and "twice" in error.detail


@pytest.mark.parametrize(
    "data,field",
    [(b'{"x":NaN}', "$.x"), (b'{"x":[Infinity]}', "$.x[0]"), (b'{"x":-Infinity}', "$.x"), (b'{"x":1e400}', "$.x")],
)
def test_numbers_json_or_a_double_cannot_hold_are_refused(data: bytes, field: str) -> None:
    assert refused(data).field == field


@pytest.mark.parametrize(
    "data,words",
    [
        (b'{"a":', "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"a":"\xff"}', "not UTF-8"),
        ('{"a":1}'.encode("utf-16"), "not UTF-8"),
        (b"{'a':1}", "not valid JSON"),
    ],
)
def test_malformed_text_is_refused_naming_the_document(data: bytes, words: str) -> None:
    error = refused(data)
    assert error.field == "$" and words in error.detail


def test_odd_member_names_are_quoted_and_escaped_in_the_path() -> None:
    error = refused(b'{"a b\'\\n":{"c":' + b"9" * 200 + b"}}")
    assert error.field == "$['a b\\'\\u000a'].c"
    assert refused(b'{"' + b"k" * 500 + b'":' + b"9" * 200 + b"}").field == "$['" + "k" * 64 + "...']"


def test_the_error_is_an_invalid_input_and_a_value_error() -> None:
    error = refused(b'{"x":NaN}')
    assert isinstance(error, InvalidInput) and isinstance(error, ValueError)
    assert error.problem()["field"] == "$.x" and error.problem()["status"] == 400
    assert json.dumps(error.problem())  # printable: no lone surrogate in the detail or the field


def test_what_names_the_input_in_the_detail() -> None:
    with pytest.raises(JsonInputError, match=r"^webhook body: \$\.x "):
        parse_json_input(b'{"x":NaN}', what="webhook body")


def test_floats_keep_their_values() -> None:
    value = parse_json_input(b'{"t":"1:2","x":[0.1,1e308,-0.0,5e-324]}')
    assert value["x"][:2] == [0.1, 1e308] and math.copysign(1, value["x"][2]) == -1 and value["x"][3] == 5e-324
