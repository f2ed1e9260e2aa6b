"""Index the functions of a ``FunctionApp``: trigger, bindings and how to call them.

The bindings are read in their ``function.json`` form (``Function.get_function_json()``),
which is exactly what the Python worker reports to the Functions host. ``%NAME%``
expressions in binding properties are resolved from the app settings here, once.

As in the Functions host, a function that cannot be indexed (unresolved setting,
parameters not matching bindings, ...) is "in error": it is reported and not served,
while the other functions run.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func

from devhost.errors import DevHostError
from devhost.settings import resolve

log = logging.getLogger("devhost")

HTTP_TRIGGER = "httpTrigger"
TIMER_TRIGGER = "timerTrigger"
QUEUE_TRIGGER = "queueTrigger"
SUPPORTED_TRIGGERS = frozenset({HTTP_TRIGGER, TIMER_TRIGGER, QUEUE_TRIGGER})
SUPPORTED_OUTPUTS = frozenset({"http", "queue"})
RETURN = "$return"
# Binding properties that name things rather than hold binding expressions.
_UNRESOLVED = frozenset({"name", "type", "direction", "connection", "route"})


@dataclass(frozen=True)
class Binding:
    """One binding of a function, as in ``function.json`` (with ``%NAME%`` resolved)."""

    name: str
    type: str
    direction: str  # "in", "out" or "inout"
    props: Mapping[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        value = self.props.get(key)
        return default if value is None else value


@dataclass(frozen=True)
class FunctionInfo:
    """A function ready to be invoked: its callable and how arguments map to bindings."""

    name: str
    func: Callable[..., Any]
    is_async: bool
    trigger: Binding
    trigger_annotation: Any  # annotation of the trigger parameter (inspect.Parameter.empty if none)
    outputs: Mapping[str, Binding]  # by binding name, including "$return"
    out_params: tuple[str, ...]  # parameters that receive a func.Out
    wants_context: bool  # a parameter named "context" gets a func.Context
    bindings: tuple[Binding, ...] = field(default=())

    @property
    def kind(self) -> str:
        return self.trigger.type


def index(
    app: func.FunctionRegister, *, only: Iterable[str] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[list[FunctionInfo], dict[str, str]]:
    """Index ``app``: the functions to serve, and the reason for each function in error.

    Functions with unsupported bindings are skipped with a warning. ``only`` is
    host.json's ``functions`` allow-list; ``AzureWebJobs.<name>.Disabled`` settings
    disable single functions, as in the Functions host.
    """
    environ = os.environ if environ is None else environ
    # get_functions() records the names it has seen and rejects them on a second call;
    # forget them so an app can be indexed again (the worker indexes once per process).
    if hasattr(app, "functions_bindings"):
        app.functions_bindings = None
    try:
        functions = app.get_functions()
    except ValueError as exc:
        raise DevHostError(str(exc).splitlines()[0]) from None
    allowed = {n.lower() for n in only} if only is not None else None
    result: list[FunctionInfo] = []
    errors: dict[str, str] = {}
    for function in functions:
        name = function.get_function_name()
        assert name is not None  # get_functions() named every function (default: the Python function's name)
        if allowed is not None and name.lower() not in allowed:
            continue
        if environ.get(f"AzureWebJobs.{name}.Disabled", "").strip().lower() in ("true", "1"):
            log.info("function %s is disabled by AzureWebJobs.%s.Disabled", name, name)
            continue
        try:
            info = _describe(function, environ)
        except DevHostError as exc:
            errors[name] = str(exc)
            continue
        if info is not None:
            result.append(info)
    return result, errors


def _describe(function: func.Function, environ: Mapping[str, str]) -> FunctionInfo | None:
    name = function.get_function_name()
    trigger_obj = function.get_trigger()
    assert name is not None and trigger_obj is not None  # get_functions() refuses a function without a trigger
    bindings = tuple(_binding(raw, environ) for raw in json.loads(function.get_function_json())["bindings"])
    trigger = next(b for b in bindings if b.name == trigger_obj.name and b.type == trigger_obj.type)
    unsupported = [
        b.type for b in bindings if b is not trigger and (b.direction != "out" or b.type not in SUPPORTED_OUTPUTS)
    ]
    if trigger.type not in SUPPORTED_TRIGGERS or unsupported:
        kinds = ", ".join(sorted({trigger.type} - SUPPORTED_TRIGGERS | set(unsupported)))
        log.warning("skipping function %s: unsupported binding type(s) %s", name, kinds)
        return None

    user_function = function.get_user_function()
    params = _signature(user_function).parameters
    named = {b.name: b for b in bindings if b.name != RETURN}
    for param in params:
        if param not in named and param != "context":
            raise DevHostError(f"parameter '{param}' has no binding (bindings: {', '.join(sorted(named)) or 'none'})")
    for binding_name in named:
        if binding_name not in params:
            raise DevHostError(f"binding '{binding_name}' has no parameter of that name")
    outputs = {b.name: b for b in bindings if b.direction == "out"}
    return FunctionInfo(
        name=name,
        func=user_function,
        is_async=inspect.iscoroutinefunction(user_function),
        trigger=trigger,
        trigger_annotation=params[trigger.name].annotation,
        outputs=outputs,
        out_params=tuple(n for n in outputs if n != RETURN),
        wants_context="context" in params and "context" not in named,
        bindings=bindings,
    )


def _signature(function: Callable[..., Any]) -> inspect.Signature:
    """The signature with string annotations (``from __future__ import annotations``) evaluated if possible."""
    try:
        return inspect.signature(function, eval_str=True)
    except Exception:
        return inspect.signature(function)


def _binding(raw: dict[str, Any], environ: Mapping[str, str]) -> Binding:
    props: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str) and key not in _UNRESOLVED:
            value = resolve(value, environ)
        props[key] = value
    return Binding(name=raw["name"], type=raw["type"], direction=str(raw.get("direction", "IN")).lower(), props=props)
