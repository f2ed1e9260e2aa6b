"""ASP.NET Core style route templates, as the Functions host uses for HTTP triggers.

Supported: literal segments (case-insensitive), ``{name}``, constraints ``{id:int}``,
``{name:alpha}``, ``{x:minlength(2):maxlength(8)}``, ``{x:regex(...)}`` ..., optional
``{x?}``, defaults ``{x=1}``, catch-all ``{*rest}``, and complex segments such as
``{name}.{ext}``. Each template is compiled once to a regex; candidates are tried in
ASP.NET precedence order (literal > constrained > plain parameter > catch-all), and a
path that matches only with other methods yields "405" with the allowed methods.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from devhost.errors import DevHostError

T = TypeVar("T")
Check = Callable[[str], bool]
ALL_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Parameter:
    name: str
    group: str  # regex group name
    checks: tuple[Check, ...]
    optional: bool = False
    default: str | None = None
    catch_all: bool = False


@dataclass(frozen=True)
class Route(Generic[T]):
    """One compiled template with the target it routes to."""

    template: str
    methods: frozenset[str]  # empty means every method
    target: T
    regex: re.Pattern[str]
    parameters: tuple[Parameter, ...]
    precedence: tuple[int, ...]

    @property
    def literal_key(self) -> str | None:
        """Lower-cased path for templates without parameters (matched by dict lookup)."""
        if self.parameters or "{" in self.template or "}" in self.template:
            return None
        return self.template.lower()

    def bind(self, path: str) -> dict[str, str] | None:
        """Route values if ``path`` matches the template and all constraints, else None."""
        match = self.regex.match(path)
        if match is None:
            return None
        values: dict[str, str] = {}
        for p in self.parameters:
            value = match.group(p.group)
            if value is None or (value == "" and (p.optional or p.catch_all)):
                if p.default is not None:
                    values[p.name] = p.default
                continue
            for check in p.checks:
                if not check(value):
                    return None
            values[p.name] = value
        return values


@dataclass(frozen=True)
class Match(Generic[T]):
    """Result of :meth:`RouteTable.match`: a target, or the methods the path allows (405), or neither (404)."""

    target: T | None
    params: dict[str, str]
    allowed: frozenset[str] = frozenset()


class RouteTable(Generic[T]):
    """Templates under a common prefix (host.json ``routePrefix``), matched by path and method."""

    def __init__(self, prefix: str = "api") -> None:
        self.prefix = prefix.strip("/")
        self._routes: list[Route[T]] = []
        self._literal: dict[str, list[Route[T]]] = {}
        # Templates with parameters, in precedence order, each with the lower-cased literal path its
        # matches must start with (a cheap test before the regex).
        self._patterned: list[tuple[str, Route[T]]] = []

    def add(self, template: str, methods: Iterable[str] | None, target: T) -> Route[T]:
        """Compile and add ``template`` (relative to the prefix) for ``methods`` (None: all)."""
        route = compile_route(self.full_template(template), methods, target)
        for other in self._routes:
            if other.template.lower() == route.template.lower() and (
                not other.methods or not route.methods or other.methods & route.methods
            ):
                raise DevHostError(f"route '{template}' is declared twice for the same method(s)")
        self._routes.append(route)
        self._routes.sort(key=lambda r: r.precedence)  # stable: ties keep declaration order
        self._literal.clear()
        self._patterned.clear()
        for r in self._routes:
            key = r.literal_key
            if key is not None:
                self._literal.setdefault(key, []).append(r)
            else:
                self._patterned.append((_literal_head(r.template), r))
        return route

    def full_template(self, template: str) -> str:
        """``/<prefix>/<template>`` without a trailing slash."""
        parts = [p for p in (self.prefix, template.strip("/")) if p]
        return "/" + "/".join(parts)

    @property
    def routes(self) -> list[Route[T]]:
        return list(self._routes)

    def match(self, method: str, path: str) -> Match[T]:
        """Find the target for ``method path`` (path already percent-decoded)."""
        allowed: set[str] = set()
        key = path.rstrip("/").lower() or "/"
        for route in self._literal.get(key, ()):
            if not route.methods or method in route.methods:
                return Match(route.target, {})
            allowed |= route.methods
        ascii_path = path.lower() if path.isascii() else None  # IGNORECASE folds some non-ASCII to ASCII
        for head, route in self._patterned:
            if ascii_path is not None and not ascii_path.startswith(head):
                continue
            values = route.bind(path)
            if values is None:
                continue
            if not route.methods or method in route.methods:
                return Match(route.target, values)
            allowed |= route.methods
        return Match(None, {}, frozenset(allowed))


def _literal_head(template: str) -> str:
    """The lower-cased leading whole-literal segments of ``template`` (``/api/cryptlets`` for
    ``/api/cryptlets/{name}/invoke``): every path the template matches starts with them."""
    literal = []
    for segment in template.strip("/").split("/"):
        if not segment or "{" in segment or "}" in segment:
            break
        literal.append(segment.lower())
    return "/" + "/".join(literal) if literal else ""


def compile_route(template: str, methods: Iterable[str] | None, target: T) -> Route[T]:
    """Compile ``template`` (starting with '/') to a :class:`Route`."""
    segments = [s for s in template.strip("/").split("/")] if template.strip("/") else []
    pattern = ["^"]
    parameters: list[Parameter] = []
    precedence: list[int] = []
    for index, segment in enumerate(segments):
        if not segment:
            raise DevHostError(f"route '{template}': empty segment")
        tokens = _tokenize(segment, template)
        params_here = [t for t in tokens if isinstance(t, _ParamSpec)]
        if len(tokens) == 1 and params_here:
            spec = params_here[0]
            param = _parameter(spec, f"p{len(parameters)}", template)
            if param.catch_all and index != len(segments) - 1:
                raise DevHostError(f"route '{template}': a catch-all parameter must be the last segment")
            parameters.append(param)
            if param.catch_all:
                pattern.append(f"(?:/(?P<{param.group}>.*))?")
                precedence.append(5)
            elif param.optional or param.default is not None:
                pattern.append(f"(?:/(?P<{param.group}>[^/]+))?")
                precedence.append(3 if param.checks else 4)
            else:
                pattern.append(f"/(?P<{param.group}>[^/]+)")
                precedence.append(3 if param.checks else 4)
            continue
        piece = ["/"]
        for token in tokens:
            if isinstance(token, str):
                piece.append(re.escape(token))
                continue
            param = _parameter(token, f"p{len(parameters)}", template)
            if param.catch_all or param.optional or param.default is not None:
                raise DevHostError(
                    f"route '{template}': optional, default or catch-all parameters must be a whole segment"
                )
            parameters.append(param)
            piece.append(f"(?P<{param.group}>[^/]+?)")
        pattern.append("".join(piece))
        precedence.append(2 if params_here else 1)
    pattern.append("/?$")
    names = [p.name.lower() for p in parameters]
    if len(set(names)) != len(names):
        raise DevHostError(f"route '{template}': a parameter name is used twice")
    canonical = "/" + "/".join(segments)
    return Route(
        template=canonical,
        methods=frozenset(m.upper() for m in methods) if methods else frozenset(),
        target=target,
        regex=re.compile("".join(pattern), re.IGNORECASE | re.DOTALL),
        parameters=tuple(parameters),
        precedence=tuple(precedence),
    )


@dataclass(frozen=True)
class _ParamSpec:
    text: str


def _tokenize(segment: str, template: str) -> list[str | _ParamSpec]:
    """Split a segment into literal text and ``{...}`` parameters (``{{``/``}}`` escape braces)."""
    tokens: list[str | _ParamSpec] = []
    literal: list[str] = []
    i, n = 0, len(segment)
    while i < n:
        ch = segment[i]
        if ch == "{" and segment[i + 1 : i + 2] == "{":
            literal.append("{")
            i += 2
        elif ch == "}" and segment[i + 1 : i + 2] == "}":
            literal.append("}")
            i += 2
        elif ch == "{":
            if literal:
                tokens.append("".join(literal))
                literal = []
            text: list[str] = []
            i += 1
            while True:
                if i >= n:
                    raise DevHostError(f"route '{template}': unbalanced '{{'")
                if segment[i] == "}" and segment[i + 1 : i + 2] == "}":
                    text.append("}")
                    i += 2
                elif segment[i] == "}":
                    i += 1
                    break
                elif segment[i] == "{" and segment[i + 1 : i + 2] == "{":
                    text.append("{")
                    i += 2
                else:
                    text.append(segment[i])
                    i += 1
            if tokens and isinstance(tokens[-1], _ParamSpec):
                raise DevHostError(f"route '{template}': two parameters need a literal between them")
            tokens.append(_ParamSpec("".join(text)))
        elif ch == "}":
            raise DevHostError(f"route '{template}': unbalanced '}}'")
        else:
            literal.append(ch)
            i += 1
    if literal:
        tokens.append("".join(literal))
    return tokens


_NAME = re.compile(r"[^:=?*{}/]+")


def _parameter(spec: _ParamSpec, group: str, template: str) -> Parameter:
    """Parse ``[*]name[:constraint[(args)]]...[?|=default]``."""
    text = spec.text
    catch_all = text.startswith("*")
    text = text.lstrip("*")
    match = _NAME.match(text)
    if not match:
        raise DevHostError(f"route '{template}': bad parameter '{{{spec.text}}}'")
    name, rest = match.group(0).strip(), text[match.end() :]
    default: str | None = None
    optional = False
    checks: list[Check] = []
    while rest:
        if rest == "?":
            optional, rest = True, ""
        elif rest.startswith("="):
            default, rest = rest[1:], ""
        elif rest.startswith(":"):
            constraint, rest = _split_constraint(rest[1:], template)
            checks.append(_constraint(constraint, template))
        else:
            raise DevHostError(f"route '{template}': bad parameter '{{{spec.text}}}'")
    return Parameter(
        name=name, group=group, checks=tuple(checks), optional=optional, default=default, catch_all=catch_all
    )


def _split_constraint(text: str, template: str) -> tuple[str, str]:
    """Cut one constraint off ``text``; arguments may contain ':' or ')' (regexes)."""
    head = re.match(r"[A-Za-z]+", text)
    if not head:
        raise DevHostError(f"route '{template}': bad constraint in '{text}'")
    end = head.end()
    if text[end : end + 1] != "(":
        return text[:end], text[end:]
    # The argument list ends at a ')' followed by the end, another constraint, '?' or '='.
    for close in (i for i, c in enumerate(text) if c == ")" and i > end):
        after = text[close + 1 :]
        if after == "" or after == "?" or after[:1] in (":", "="):
            return text[: close + 1], after
    raise DevHostError(f"route '{template}': unbalanced '(' in constraint '{text}'")


def _constraint(text: str, template: str) -> Check:
    name, _, args = text.partition("(")
    name = name.lower()
    args = args[:-1] if args.endswith(")") else args
    try:
        if name in _SIMPLE:
            if args:
                raise ValueError
            return _SIMPLE[name]
        if name == "regex":
            regex = re.compile(args, re.IGNORECASE)
            return lambda v: regex.search(v) is not None
        numbers = [int(a) for a in args.split(",")] if args else []
        if name == "minlength" and len(numbers) == 1:
            return lambda v: len(v) >= numbers[0]
        if name == "maxlength" and len(numbers) == 1:
            return lambda v: len(v) <= numbers[0]
        if name == "length" and len(numbers) == 1:
            return lambda v: len(v) == numbers[0]
        if name == "length" and len(numbers) == 2:
            return lambda v: numbers[0] <= len(v) <= numbers[1]
        if name == "min" and len(numbers) == 1:
            return lambda v: _is_long(v) and int(v) >= numbers[0]
        if name == "max" and len(numbers) == 1:
            return lambda v: _is_long(v) and int(v) <= numbers[0]
        if name == "range" and len(numbers) == 2:
            return lambda v: _is_long(v) and numbers[0] <= int(v) <= numbers[1]
    except (ValueError, re.error):
        pass
    raise DevHostError(f"route '{template}': unknown or malformed route constraint '{text}'")


_INTEGER = re.compile(r"^[+-]?[0-9]+$")
_ALPHA = re.compile(r"^[A-Za-z]+$")


def _is_int(value: str, bits: int = 32) -> bool:
    return _INTEGER.match(value) is not None and -(2 ** (bits - 1)) <= int(value) < 2 ** (bits - 1)


def _is_long(value: str) -> bool:
    return _is_int(value, 64)


def _is_float(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
        return True
    except ValueError:
        return False


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
        return True
    except ValueError:
        return False


_SIMPLE: dict[str, Check] = {
    "int": _is_int,
    "long": _is_long,
    "bool": lambda v: v.lower() in ("true", "false"),
    "alpha": lambda v: _ALPHA.match(v) is not None,
    "guid": _is_guid,
    "double": _is_float,
    "float": _is_float,
    "decimal": _is_float,
    "datetime": _is_datetime,
    "required": lambda v: v != "",
}
