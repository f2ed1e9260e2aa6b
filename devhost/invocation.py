"""Calling user functions the way the Python worker does.

Arguments are bound by parameter name: the trigger value, a :class:`Out` per output
binding, and a :class:`Context` for a parameter named ``context``. Sync functions run in
a shared thread pool (``PYTHON_THREADPOOL_THREAD_COUNT``, default ``min(32, CPUs + 4)``); async functions
run on the server's event loop. After the call, output values (``Out`` values and the
return value for ``$return``) go to their binding: the HTTP response is handed back,
other outputs to the sink registered for the binding type (e.g. queues).
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import azure.functions as func
from azure.functions import _abc as abc_types  # TraceContext/RetryContext are not re-exported

from devhost.catalog import RETURN, Binding, FunctionInfo

T = TypeVar("T")
Sink = Callable[[Binding, Any], None]
# The Python worker's default for Python 3.9+ (PYTHON_THREADPOOL_THREAD_COUNT unset): ThreadPoolExecutor's.
DEFAULT_WORKERS = min(32, (os.cpu_count() or 1) + 4)


class Out(func.Out[T]):
    """The value holder passed for output binding parameters (``func.Out[...]``)."""

    def __init__(self) -> None:
        self._value: T | None = None

    def set(self, val: T) -> None:
        self._value = val

    def get(self) -> T | None:  # type: ignore[override]  # func.Out.get says T, but an unset holder has None
        return self._value


class TraceContext(abc_types.TraceContext):
    def __init__(self) -> None:
        self._parent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-00"

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class RetryContext(abc_types.RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class Context(func.Context):
    """``func.Context`` for one invocation."""

    _local = threading.local()

    def __init__(self, function_name: str, function_directory: str) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._function_directory = function_directory

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property  # func.Context says type[threading.local]; the worker, like this, returns an instance
    def thread_local_storage(self) -> threading.local:  # type: ignore[override]
        self._local.invocation_id = self._invocation_id
        return self._local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> TraceContext:
        return TraceContext()

    @property
    def retry_context(self) -> RetryContext:
        return RetryContext()


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    """Complete ``future`` on its loop (unless its task was cancelled meanwhile)."""
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


class Invoker:
    """Runs functions and delivers their outputs. Needs :attr:`loop` set for async functions."""

    def __init__(self, app_dir: str, workers: int | None = None) -> None:
        workers = workers or int(os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT") or DEFAULT_WORKERS)
        self.app_dir = app_dir
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="devhost-worker")
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sinks: dict[str, Sink] = {}

    def add_sink(self, binding_type: str, sink: Sink) -> None:
        """Deliver values of output bindings of ``binding_type`` with ``sink(binding, value)``."""
        self.sinks[binding_type] = sink

    async def invoke(self, fn: FunctionInfo, trigger_value: Any) -> Any:
        """Invoke from the event loop; returns the value for the ``http`` output, if any."""
        if not fn.is_async:
            assert self.loop is not None
            return await self._in_pool(self.loop, fn, trigger_value)
        kwargs, outs = self._arguments(fn, trigger_value)
        result = await fn.func(**kwargs)
        if self._needs_sink(fn, outs, result):
            assert self.loop is not None
            return await self.loop.run_in_executor(self.pool, self._deliver, fn, outs, result)
        return self._deliver(fn, outs, result)

    def invoke_blocking(self, fn: FunctionInfo, trigger_value: Any) -> Any:
        """Invoke from a non-loop thread (timers, queue pollers); waits for the result."""
        if fn.is_async:
            if self.loop is None:
                raise RuntimeError("the dev host event loop is not running")
            return asyncio.run_coroutine_threadsafe(self.invoke(fn, trigger_value), self.loop).result()
        return self._call_sync(fn, trigger_value)

    def _in_pool(self, loop: asyncio.AbstractEventLoop, fn: FunctionInfo, trigger_value: Any) -> asyncio.Future[Any]:
        """Run a sync function in the pool; its outcome lands on an asyncio future. Leaner than
        ``run_in_executor`` (no chained concurrent future): the worker hands the result straight to the
        loop. A call not started when the awaiting task is cancelled is skipped, as there."""
        outcome: asyncio.Future[Any] = loop.create_future()

        def run() -> None:
            if outcome.cancelled():
                return
            try:
                result = self._call_sync(fn, trigger_value)
            except BaseException as exc:
                loop.call_soon_threadsafe(_settle, outcome, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, outcome, result, None)

        self.pool.submit(run)
        return outcome

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _call_sync(self, fn: FunctionInfo, trigger_value: Any) -> Any:
        kwargs, outs = self._arguments(fn, trigger_value)
        return self._deliver(fn, outs, fn.func(**kwargs))

    def _arguments(self, fn: FunctionInfo, trigger_value: Any) -> tuple[dict[str, Any], dict[str, Out[Any]]]:
        kwargs: dict[str, Any] = {fn.trigger.name: trigger_value}
        outs: dict[str, Out[Any]] = {}
        for name in fn.out_params:
            kwargs[name] = outs[name] = Out()
        if fn.wants_context:
            kwargs["context"] = Context(fn.name, self.app_dir)
        return kwargs, outs

    @staticmethod
    def _needs_sink(fn: FunctionInfo, outs: dict[str, Out[Any]], result: Any) -> bool:
        if any(fn.outputs[name].type != "http" and out.get() is not None for name, out in outs.items()):
            return True
        returns = fn.outputs.get(RETURN)
        return returns is not None and returns.type != "http" and result is not None

    def _deliver(self, fn: FunctionInfo, outs: dict[str, Out[Any]], result: Any) -> Any:
        http_value = None
        values = [(name, out.get()) for name, out in outs.items()]
        if RETURN in fn.outputs:
            values.append((RETURN, result))
        for name, value in values:
            binding = fn.outputs[name]
            if binding.type == "http":
                http_value = value
            elif value is not None:
                self.sinks[binding.type](binding, value)
        return http_value
