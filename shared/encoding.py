"""Canonical encodings and hashes shared by every signed or hashed structure.

* JSON that is hashed or signed is canonicalised with RFC 8785 (JCS).
* ``keccak256`` is Ethereum's Keccak-256 (not SHA3-256), as used by EIP-712.
* Byte strings travel as ``0x``-prefixed lowercase hex.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from typing import Any, NoReturn

import msgspec
import orjson
import rfc8785
from sha3 import keccak_256 as _keccak_256

from shared.errors import InvalidInput
from shared.limits import MAX_JSON_DEPTH, MAX_JSON_INT_DIGITS

_MAX_SAFE_INT = 2**53 - 1
_FAST_DEPTH = 32


def _plain(value: Any, depth: int = 0) -> bool:
    """Whether the sorted-keys compact JSON of ``value`` (``orjson`` with ``OPT_SORT_KEYS``, the same bytes as
    ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``) is already its RFC 8785
    form: only dicts with ASCII keys (so code-point and UTF-16 order agree), lists, strings, booleans,
    None and integers of at most 53 bits (no floats: their JCS form is ECMAScript's number formatting)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        in_range: bool = -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT
        return in_range
    if depth >= _FAST_DEPTH:
        return False
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not key.isascii():
                return False
            if type(item) is not str and not _plain(item, depth + 1):
                return False
        return True
    if kind is list:
        for item in value:
            if type(item) is not str and not _plain(item, depth + 1):
                return False
        return True
    return False


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON bytes of ``value``."""
    if _plain(value):  # the common case, without the general (pure-Python) canonicaliser
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # lone surrogates: let the canonicaliser report them
            pass
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InvalidInput(f"value cannot be canonicalised as JSON: {exc}") from None


_JSON_DECODER = msgspec.json.Decoder()


def parse_json(data: bytes | str) -> Any:
    """``json.loads(data)``, through ``msgspec``'s faster parser when it accepts ``data`` (standard JSON:
    both then give the same value, big integers included); what it refuses (``NaN``, lone surrogates,
    a byte order mark, malformed text) goes to ``json.loads``, which accepts or rejects it as before."""
    try:
        return _JSON_DECODER.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec.ValidationError is a DecodeError
        return json.loads(data)


class JsonInputError(InvalidInput, ValueError):
    """JSON input that is malformed or over a limit: a 400 whose ``field`` is the JSON path of the
    offending value (``$`` for the document). Also a ``ValueError``, as ``json.loads`` raises."""


def parse_json_input(data: bytes | str, *, what: str = "request body") -> Any:
    """Parse untrusted JSON (a request body, a queue message) within the limits of :mod:`shared.limits`.

    Refused, as :class:`JsonInputError` naming the JSON path where it is known: text that is not
    UTF-8 JSON (a leading UTF-8 byte order mark is ignored), nesting deeper than
    :data:`~shared.limits.MAX_JSON_DEPTH`, an integer of more than
    :data:`~shared.limits.MAX_JSON_INT_DIGITS` digits, ``NaN``/``Infinity`` or a number too large for
    a double, a lone UTF-16 surrogate (``"\\ud800"``) in a string or a member name, and a member name
    that occurs twice in one object (RFC 8259 leaves duplicates to the parser; they are refused so
    that no two readers of a document, a signer and this host say, can see different values).

    Nesting is measured on the text before anything is parsed (when it has more brackets than the
    limit): both parsers recurse, guarded only by the interpreter's recursion limit, which some
    libraries raise (``py_ecc`` to 100,000), so a deep enough document would overflow the C stack
    rather than raise. Then the common case is ``msgspec``'s parser (it refuses lone surrogates and
    non-finite numbers itself) plus one walk over the value that checks integers and counts members:
    when the count equals the number of ``:`` in the text, no name can be a duplicate; otherwise (a
    ``:`` inside a string) ``json.loads`` reads the text again to look for one. What ``msgspec``
    refuses is parsed again by ``json.loads`` with hooks that mark the offending value, and a walk
    reports its path.
    """
    if _containers(data) > MAX_JSON_DEPTH and _depth(data) > MAX_JSON_DEPTH:
        _refuse(what, "$", _TOO_DEEP)  # before any parser recurses (their guard is the interpreter's limit)
    try:
        value = _JSON_DECODER.decode(data)
    except RecursionError:
        _refuse(what, "$", _TOO_DEEP)
    except (msgspec.DecodeError, UnicodeError):  # msgspec.ValidationError (out of range) is a DecodeError
        return _parse_strictly(data, what)
    try:
        members = _scan(value, 1) if type(value) is dict or type(value) is list else _scalar(value)
    except _Problem as problem:
        _refuse(what, _json_path(problem.path), problem.message)
    colons = data.count(b":") if isinstance(data, bytes) else data.count(":")
    if members != colons:  # a ":" inside a string, or a duplicate name
        _refuse_duplicates(data, what)
    return value


# A JSON string (possessive: no backtracking), or an unterminated one up to the end.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\Z)', re.DOTALL)
# Keep only brackets: openings become 1, closings -1 (as signed bytes).
_BRACKETS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[{]}")


def _containers(data: bytes | str) -> int:
    """How many ``[`` and ``{`` the text has (strings included): at least its nesting depth."""
    return data.count(b"[") + data.count(b"{") if isinstance(data, bytes) else data.count("[") + data.count("{")


def _depth(data: bytes | str) -> int:
    """The deepest nesting of arrays and objects in the text, strings skipped (in C: a regular
    expression, a translation and a running sum)."""
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    skeleton = _STRING.sub(b"", raw).translate(_BRACKETS, _NOT_BRACKETS)
    return max(itertools.accumulate(memoryview(skeleton).cast("b")), default=0)


_INT_BOUND = 10**MAX_JSON_INT_DIGITS
_TOO_DEEP = f"is nested deeper than {MAX_JSON_DEPTH} levels"
_TOO_LONG = f"is an integer of more than {MAX_JSON_INT_DIGITS} digits"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class _Problem(Exception):
    """What is wrong and where: ``path`` collects keys and indexes innermost first, while unwinding."""

    def __init__(self, message: str, *path: str | int) -> None:
        super().__init__(message)
        self.message = message
        self.path = list(path)


class _Marker:
    """What a ``json.loads`` hook returns in place of a refused value, so that the walk finds its path."""

    def __init__(self, message: str) -> None:
        self.message = message


_LONG_INT = _Marker(_TOO_LONG)
_NOT_FINITE = _Marker("is a number outside the range of a double")
_CONSTANT = _Marker("is NaN or Infinity, which JSON does not have")


class _Duplicates(dict[str, Any]):
    """An object in which ``key`` occurred more than once (from the ``object_pairs_hook``)."""

    key: str


def _refuse(what: str, path: str, message: str) -> NoReturn:
    raise JsonInputError(f"{what}: {path} {message}", field=path) from None


def _scalar(value: Any) -> int:
    if type(value) is int and not -_INT_BOUND < value < _INT_BOUND:
        raise _Problem(_TOO_LONG)
    return 0


def _scan(value: dict[str, Any] | list[Any], depth: int) -> int:
    """The number of members in ``value`` and below it; raises :class:`_Problem` for an integer with
    too many digits (what ``msgspec`` lets through) or, as a backstop, nesting deeper than the limit."""
    if depth > MAX_JSON_DEPTH:
        raise _Problem(_TOO_DEEP)
    members = 0
    pairs: Any
    if type(value) is dict:
        members, pairs = len(value), value.items()
    else:
        pairs = enumerate(value)
    for key, item in pairs:
        kind = type(item)
        if kind is int:
            if not -_INT_BOUND < item < _INT_BOUND:
                raise _Problem(_TOO_LONG, key)
        elif kind is dict or kind is list:
            try:
                members += _scan(item, depth + 1)
            except _Problem as problem:
                problem.path.append(key)
                raise
    return members


def _parse_strictly(data: bytes | str, what: str) -> Any:
    """``json.loads`` with hooks that mark refused values, then a walk that reports the first one."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        _refuse(what, "$", f"is not UTF-8 (byte {exc.start})")
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object,
            parse_int=_integer,
            parse_float=_float,
            parse_constant=lambda name: _CONSTANT,
        )
    except RecursionError:
        _refuse(what, "$", _TOO_DEEP)
    except json.JSONDecodeError as exc:
        _refuse(what, "$", f"is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})")
    try:
        _check(value, 1)
    except _Problem as problem:
        _refuse(what, _json_path(problem.path), problem.message)
    return value


def _refuse_duplicates(data: bytes | str, what: str) -> None:
    """Refuse ``data`` (text ``msgspec`` accepted) if an object in it repeats a member name."""
    repeated = False

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        found = _object(pairs)
        repeated = repeated or type(found) is _Duplicates
        return found

    value = json.loads(data, object_pairs_hook=pairs_hook)
    if repeated:
        try:
            _check(value, 1)
        except _Problem as problem:
            _refuse(what, _json_path(problem.path), problem.message)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) == len(pairs):
        return found
    duplicates = _Duplicates(found)
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            duplicates.key = key
            break
        seen.add(key)
    return duplicates


def _integer(text: str) -> int | _Marker:
    return _LONG_INT if len(text) - text.startswith("-") > MAX_JSON_INT_DIGITS else int(text)


def _float(text: str) -> float | _Marker:
    value = float(text)
    return value if math.isfinite(value) else _NOT_FINITE


def _check(value: Any, depth: int) -> None:
    """Raise :class:`_Problem` at the first refused value under ``value`` (markers, lone surrogates,
    duplicate names, nesting deeper than the limit)."""
    kind = type(value)
    if kind is str:
        if not value.isascii() and not _encodable(value):
            raise _Problem("contains a lone UTF-16 surrogate")
        return
    if kind is _Marker:
        raise _Problem(value.message)
    if kind is not dict and kind is not list and kind is not _Duplicates:
        return
    if depth > MAX_JSON_DEPTH:
        raise _Problem(_TOO_DEEP)
    if kind is _Duplicates:
        raise _Problem("occurs twice in the same object", value.key)
    pairs = value.items() if kind is dict else enumerate(value)
    for key, item in pairs:
        if type(key) is str and not key.isascii() and not _encodable(key):
            raise _Problem("is a member name with a lone UTF-16 surrogate", key)
        try:
            _check(item, depth + 1)
        except _Problem as problem:
            problem.path.append(key)
            raise


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_path(path: list[str | int]) -> str:
    """``$.args.x[3]``, with names that are not identifiers quoted (``$['a b']``), at most 64 characters
    of each and escaped so that the path itself is printable."""
    parts = ["$"]
    for step in reversed(path):
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif _IDENTIFIER.match(step) and len(step) <= 64:
            parts.append("." + step)
        else:
            shown = step if len(step) <= 64 else step[:64] + "..."
            parts.append("['" + "".join(_escaped(c) for c in shown) + "']")
    return "".join(parts)


def _escaped(char: str) -> str:
    if char in "'\\":
        return "\\" + char
    if char < " " or "\ud800" <= char <= "\udfff" or char == "\x7f":
        return f"\\u{ord(char):04x}"
    return char


def keccak256(data: bytes) -> bytes:
    """Ethereum Keccak-256 of ``data`` (``safe-pysha3``, in C: ~0.8 µs for 32 bytes; pycryptodome through
    cffi took ~2 µs)."""
    digest: bytes = _keccak_256(data).digest()  # sha3 has no type information
    return digest


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def to_hex(data: bytes) -> str:
    """``0x``-prefixed lowercase hex."""
    return "0x" + data.hex()


def from_hex(text: str, *, length: int | None = None, field: str = "value") -> bytes:
    """Parse ``0x``-prefixed (or bare) hex, optionally of an exact byte ``length``."""
    if not isinstance(text, str):
        raise InvalidInput(f"{field} must be a hex string", field=field)
    body = text[2:] if text[:2] in ("0x", "0X") else text
    try:
        data = bytes.fromhex(body)
    except ValueError:
        raise InvalidInput(f"{field} is not valid hex", field=field) from None
    if length is not None and len(data) != length:
        raise InvalidInput(f"{field} must be {length} bytes, got {len(data)}", field=field)
    return data
