"""The fabric's JSON Schemas (``cryptlet.schema.json``, ``ledger-entries.schema.json``,
``policy.schema.json``) and the one way they are validated.

Schema patterns are ECMA-262 regular expressions (JSON Schema 2020-12, section 6.4). Python's
``re`` reads them alike but for one thing that matters for names: its ``$`` also matches before a
trailing newline, so ``^[a-z]+$`` would accept ``"name\\n"``. :func:`validator` builds a Draft
2020-12 validator whose ``pattern`` and ``patternProperties`` read ``$`` (outside a character
class) as ECMA-262 does, as the end of the string (Python's ``\\Z``). jsonschema is imported only
when a validator is built: regions read already-validated documents without it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).parent


def ecma_pattern(pattern: str) -> str:
    """``pattern`` for Python's ``re`` with ECMA-262's ``$``: every unescaped ``$`` outside a character
    class becomes ``\\Z``."""
    out: list[str] = []
    in_class = escaped = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            char = r"\Z"
        out.append(char)
    return "".join(out)


@lru_cache(maxsize=512)
def compiled(pattern: str) -> re.Pattern[str]:
    """A schema pattern compiled with ECMA-262's ``$`` (cached)."""
    return re.compile(ecma_pattern(pattern))


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not compiled(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, properties: dict[str, Any], instance: Any, schema: dict[str, Any]) -> Any:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in properties.items():
        for key, value in instance.items():
            if compiled(pattern).search(key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


@lru_cache(maxsize=1)
def _validator_class() -> Any:
    import jsonschema

    keywords = {"pattern": _pattern, "patternProperties": _pattern_properties}
    return jsonschema.validators.extend(jsonschema.Draft202012Validator, keywords)  # type: ignore[no-untyped-call]


def validator(schema: dict[str, Any]) -> Any:
    """A Draft 2020-12 validator of ``schema`` (checked first) with ECMA-262 pattern anchors."""
    cls = _validator_class()
    cls.check_schema(schema)
    return cls(schema)
