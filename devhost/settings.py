"""App settings: ``local.settings.json``, ``%NAME%`` binding expressions and TimeSpans.

Like Core Tools, the values of ``local.settings.json`` become environment variables,
but never override a variable that is already set.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from devhost.errors import DevHostError

_EXPRESSION = re.compile(r"%([^%]+)%")
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?$")


def load_local_settings(app_dir: Path, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Copy ``Values`` of ``app_dir/local.settings.json`` into ``environ`` (default ``os.environ``).

    Variables already present win. Returns the settings that were applied.
    """
    environ = os.environ if environ is None else environ
    path = app_dir / "local.settings.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except ValueError as exc:
        raise DevHostError(f"{path} is not valid JSON: {exc}") from None
    if data.get("IsEncrypted"):
        raise DevHostError(f"{path} is encrypted; decrypt it with `func settings decrypt` first")
    applied: dict[str, str] = {}
    for name, value in (data.get("Values") or {}).items():
        if name not in environ and value is not None:
            environ[name] = applied[name] = _to_setting(value)
    return applied


def _to_setting(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def resolve(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace every ``%NAME%`` in ``text`` by the app setting ``NAME``.

    Raises :class:`DevHostError` naming the setting if it is not set (as the Functions
    host refuses to index such a function).
    """
    environ = os.environ if environ is None else environ

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        value = environ.get(name)
        if value is None:
            raise DevHostError(f"binding expression '%{name}%' cannot be resolved: app setting {name} is not set")
        return value

    return _EXPRESSION.sub(replace, text) if "%" in text else text


def parse_timespan(value: str | int | float, *, default_unit: float = 1.0) -> float:
    """Seconds in a .NET TimeSpan string (``[d.]hh:mm[:ss[.fffffff]]``).

    Plain numbers are accepted too and multiplied by ``default_unit`` (seconds per unit).
    """
    if isinstance(value, bool):
        raise DevHostError(f"not a TimeSpan: {value!r}")
    if isinstance(value, (int, float)):
        return float(value) * default_unit
    text = value.strip()
    match = _TIMESPAN.match(text)
    if not match:
        raise DevHostError(f"not a TimeSpan (expected hh:mm:ss): {value!r}")
    days, hours, minutes, seconds, fraction = match.groups()
    if int(minutes) > 59 or (seconds and int(seconds) > 59):
        raise DevHostError(f"not a TimeSpan (expected hh:mm:ss): {value!r}")
    return (
        int(days or 0) * 86400
        + int(hours) * 3600
        + int(minutes) * 60
        + int(seconds or 0)
        + (float("0." + fraction) if fraction else 0.0)
    )
