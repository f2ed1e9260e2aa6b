"""Names the fabric accepts: cryptlet and package names, and the paths of the files in a package.

Cryptlet (and package folder) names are ``[a-z][a-z0-9_]{1,62}``, matched in full: a trailing
newline is not a name (Python's ``$`` would let it through, so patterns here end in ``\\Z``).

A file path inside a package is its relative POSIX path (components joined by ``/``). Each
component must be printable (:meth:`str.isprintable`: no C0 or C1 control character such as NUL,
``\\n`` or ``\\r``, no DEL, no Unicode format, separator or unassigned character, no space other
than U+0020), contain no backslash, not begin or end with a space, not be ``.`` or ``..``, and be
at most :data:`MAX_COMPONENT_BYTES` bytes of UTF-8; the whole path at most :data:`MAX_PATH_BYTES`.
A package that holds another name is refused (:class:`PackageRejected`, reason ``bad_name`` or
``name_too_long``, naming the entry), whether uploaded or in the packages folder.
"""

from __future__ import annotations

import re
from typing import Any

from shared.errors import InvalidInput

#: A cryptlet or package folder name (``match`` or ``fullmatch``: ``\Z`` refuses a trailing newline).
NAME = re.compile(r"[a-z][a-z0-9_]{1,62}\Z")
NAME_RULE = "lowercase letters, digits and underscores, starting with a letter, 2 to 63 characters"
MAX_COMPONENT_BYTES = 255
MAX_PATH_BYTES = 1024


class PackageRejected(InvalidInput):
    """A package is refused; ``reason`` says why, ``entry`` names the offending file (if one)."""

    code, title = "package_rejected", "Package rejected"

    def __init__(self, reason: str, detail: str, *, entry: str | None = None) -> None:
        extra = {"reason": reason} if entry is None else {"reason": reason, "entry": printable(entry)}
        super().__init__(detail, field="package", **extra)


class PackageTooLarge(PackageRejected):
    status, code, title = 413, "package_too_large", "Package too large"


def is_name(value: Any) -> bool:
    """Whether ``value`` is a cryptlet (or package folder) name."""
    return isinstance(value, str) and NAME.match(value) is not None


def check_name(value: Any, field: str = "name") -> str:
    """``value`` if it is a cryptlet name; else :class:`InvalidInput` naming ``field``."""
    if not is_name(value):
        raise InvalidInput(f"{field} must be a cryptlet name ({NAME_RULE})", field=field)
    return str(value)


def printable(text: str, limit: int = 300) -> str:
    """``text`` as it can be reported: a lone surrogate (from an undecodable file name) escaped, at most
    ``limit`` characters."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_path(path: str) -> None:
    """Raise :class:`PackageRejected` unless ``path`` is an acceptable file path inside a package."""
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise PackageRejected("bad_name", f"package entry name {printable(path)!r} is malformed", entry=path)
        if not part.isprintable() or "\\" in part or part != part.strip(" "):
            raise PackageRejected(
                "bad_name",
                f"package entry name {printable(path)!r} has a control character, a backslash, or a leading "
                "or trailing space",
                entry=path,
            )
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            raise PackageRejected(
                "name_too_long",
                f"a name in package entry {printable(path, 80)!r} is over {MAX_COMPONENT_BYTES} bytes",
                entry=path,
            )
    if len(path.encode("utf-8")) > MAX_PATH_BYTES:
        raise PackageRejected(
            "name_too_long", f"package entry {printable(path, 80)!r} is over {MAX_PATH_BYTES} bytes", entry=path
        )
