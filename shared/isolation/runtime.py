"""The cryptlet container: the program that runs inside a region.

A region is forked from the zygote (:mod:`shared.isolation.zygote`), confines itself
(:mod:`shared.isolation.sandbox`) and calls :func:`main` with the path of its package snapshot.
It then speaks :mod:`shared.isolation.protocol` on its socket: it measures the package before
loading it (a changed package refuses to start), generates or unseals the cryptlet's key with the
seal key the host derived for the measured digest (never the platform secret), runs calls, signs
every output and forwards the cryptlet's call-outs (``import fabric_host``). The private key
exists only in this process; only the sealed blob leaves. Cryptlet code that prints goes to
stderr, never onto the protocol stream; processes the cryptlet forks never answer the host.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import resource
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import coincurve

from cryptlet_sdk import MAX_EVENTS, MAX_STATE_BYTES, Context, Cryptlet, CryptletError, State, is_method
from cryptlet_sdk.context import Emitted, check_event
from shared import clock
from shared.encoding import canonical_json, from_hex, keccak256, to_hex
from shared.envelope import Domain, Envelope, address_of, payload_hash, signed_document
from shared.errors import FabricError
from shared.isolation import exec_runtime, protocol
from shared.isolation.callout import HostChannel, host_module
from shared.keys import sealing
from shared.packages.digest import measure
from shared.packages.manifest import Manifest, load_manifest


class RegionFault(Exception):
    """An error reported back to the host with a stable code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Outcome:
    """What one call produced before signing: its result, emitted events, and new state (if changed)."""

    result: Any
    events: list[Emitted]
    state: dict[str, Any] | None


class _NoHost:
    """Call-outs when the region has no host channel (never in a served region)."""

    def call(self, op: str, **params: Any) -> dict[str, Any]:
        raise CryptletError(f"no host to answer call-out {op!r}")


class Container:
    """State of one region: the loaded cryptlet, its key and its signing context."""

    def __init__(self, package_dir: Path, channel: HostChannel | None = None) -> None:
        self.package_dir = package_dir
        self.channel = channel
        self.pid = os.getpid()
        self.digest: bytes | None = None
        self.manifest: Manifest | None = None
        self.instance: Any = None
        self._key: coincurve.PrivateKey | None = None  # parsed once: signing reuses it
        self.public_key: bytes | None = None
        self.address: str | None = None
        self._seal_key: bytes | None = None
        self.domain = Domain()
        self.registration: dict[str, Any] = {}
        self.evidence: dict[str, Any] = {}
        self.last_sequence = -1
        self.program: exec_runtime.ExecCryptlet | None = None
        self.fork_attempts = 0
        os.register_at_fork(before=self._count_fork)

    def _count_fork(self) -> None:
        self.fork_attempts += 1

    # -- operations ---------------------------------------------------------------------------
    def op_load(self, msg: dict[str, Any]) -> dict[str, Any]:
        if self.digest is not None:
            raise RegionFault("already_loaded", "this region has already loaded its package")
        expected = from_hex(msg["expected_digest"], length=32)
        measurement = measure(self.package_dir)  # under cfpkg-v2, or cfpkg-v1 for an older registration
        measured = expected if measurement.algorithm_of(expected) else measurement.digest()
        if measured != expected:
            raise RegionFault(
                "digest_mismatch",
                f"package measures {measured.hex()}, registered digest is {expected.hex()}: refusing to load",
            )
        self.digest = measured
        self._seal_key = base64.b64decode(msg["seal_key"])
        self.domain = Domain.from_dict(msg["domain"])
        self.manifest = load_manifest(self.package_dir, check_schema=False)
        if self.manifest.runtime == "exec":
            return self._load_program(measured)
        if self.channel is not None:
            sys.modules["fabric_host"] = host_module(self.channel)
        module_name, _, class_name = self.manifest.entry.partition(":")
        module_path = self.package_dir.joinpath(*module_name.split(".")).with_suffix(".py")
        spec = importlib.util.spec_from_file_location(f"cryptlet_{self.manifest.name}", module_path)
        if spec is None or spec.loader is None or not module_path.is_file():
            raise RegionFault("entry_not_found", f"entry module {module_name!r} not found in the package")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(self.package_dir))
        try:
            loader = spec.loader
            _run_cryptlet(lambda: loader.exec_module(module), self._forks)
            cls = getattr(module, class_name, None)
            if cls is None:
                raise RegionFault("entry_not_found", f"entry class {class_name!r} not found in {module_name}")
            _check_sdk_class(cls, self.manifest)
            self.instance = _run_cryptlet(cls, self._forks)
            if isinstance(self.instance, Cryptlet):
                _run_cryptlet(self.instance.setup, self._forks)
        except (TypeError, ValueError, KeyError) as exc:
            raise RegionFault("load_failed", f"{type(exc).__name__}: {exc}") from None
        return {"digest": to_hex(measured), "name": self.manifest.name, "companions": []}

    def _load_program(self, measured: bytes) -> dict[str, Any]:
        """``exec`` runtime: start the package's program and hand it its interface."""
        assert self.manifest is not None  # op_load, the only caller, set it
        init = {
            "name": self.manifest.name,
            "kind": self.manifest.kind,
            "methods": sorted(self.manifest.methods),
            "events": sorted(self.manifest.events),
            "config": self.manifest.document.get("config", {}),
        }
        try:
            self.program = exec_runtime.start(
                self.package_dir, self.manifest.entry, self.manifest.interpreter, self.channel, init
            )
        except exec_runtime.CryptletFault as fault:
            raise RegionFault(
                "entry_not_found" if fault.code == "entry_not_found" else "load_failed", str(fault)
            ) from None
        return {"digest": to_hex(measured), "name": self.manifest.name, "companions": [self.program.pid]}

    def op_generate_key(self, msg: dict[str, Any]) -> dict[str, Any]:
        digest, seal_key = self._require_loaded()
        key = coincurve.PrivateKey()
        self._key = key
        self.public_key = key.public_key.format(compressed=False)
        self.address = address_of(self.public_key)
        sealed = sealing.seal_with_key(seal_key, digest, self.address, key.secret)
        return {
            "public_key": to_hex(self.public_key),
            "address": self.address,
            "sealed_key": base64.b64encode(sealed).decode(),
        }

    def op_unseal(self, msg: dict[str, Any]) -> dict[str, Any]:
        digest, seal_key = self._require_loaded()
        address = msg["address"]
        secret = sealing.unseal_with_key(seal_key, digest, address, base64.b64decode(msg["sealed_key"]))
        key = coincurve.PrivateKey(secret)
        public = key.public_key.format(compressed=False)
        if address_of(public).lower() != address.lower():
            raise RegionFault("key_mismatch", "unsealed key does not belong to the registered address")
        self._key, self.public_key, self.address = key, public, address_of(public)
        return {"address": self.address, "public_key": to_hex(public)}

    def op_report(self, msg: dict[str, Any]) -> dict[str, Any]:
        """What the platform attests about this region: its measured digest and its key."""
        digest, _ = self._require_loaded()
        return {
            "digest": to_hex(digest),
            "address": self.address,
            "public_key": to_hex(self.public_key) if self.public_key else None,
        }

    def op_bind(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Record the registration (ledger reference) and evidence that envelopes cite."""
        self.registration = dict(msg["registration"])
        self.evidence = dict(msg.get("evidence") or {})
        return {}

    def op_invoke(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Run a method; sign its result, each event it emitted and (contract kind) its new state.

        ``sequence`` numbers the result's envelope; events take the following numbers, up to
        ``sequences`` in all (the block the host reserved). A contract call gets the current
        ``state`` and ``state_version`` and returns the new state when it changed.
        """
        self._require_loaded()
        if self._key is None:
            raise RegionFault("no_key", "region holds no key: generate or unseal first")
        if not self.registration:
            raise RegionFault("not_bound", "region is not bound to a registration")
        method = msg["method"]
        manifest = self._loaded_manifest()
        if method not in manifest.methods:
            raise RegionFault("unknown_method", f"{manifest.name} has no method {method!r}")
        sequence = int(msg["sequence"])
        block = max(1, int(msg.get("sequences", 1)))
        if sequence <= self.last_sequence:
            raise RegionFault("sequence_reused", f"sequence {sequence} is not above {self.last_sequence}")
        contract = manifest.kind == "contract"
        before = dict(msg.get("state") or {}) if contract else None
        outcome = self._call(method, msg.get("args") or {}, msg["request_id"], before)
        self.last_sequence = sequence + block - 1
        if len(outcome.events) > block - 1:
            raise RegionFault(
                "too_many_events", f"{method} emitted {len(outcome.events)} events; this call allows {block - 1}"
            )
        reply: dict[str, Any] = {}
        payload = outcome.result
        if contract:
            version = int(msg.get("state_version", 0))
            after = outcome.state if outcome.state is not None else before
            encoded = canonical_json(after)
            if len(encoded) > MAX_STATE_BYTES:
                raise RegionFault("state_too_large", f"state is {len(encoded)} bytes; the limit is {MAX_STATE_BYTES}")
            changed = outcome.state is not None and after != before
            if changed:
                version += 1
                reply["state"] = after
            payload = {
                "result": outcome.result,
                "state": {
                    "version": version,
                    "hash": to_hex(keccak256(encoded)),
                    "previous": to_hex(payload_hash(before)),
                },
            }
        request_id = from_hex(msg["request_id"], length=32)
        reply["envelope"] = self._sign(f"{manifest.name}.{method}", request_id, sequence, payload)
        if outcome.events:
            reply["events"] = [
                self._sign(f"{manifest.name}.{e.event}", request_id, sequence + i + 1, e.fields)
                for i, e in enumerate(outcome.events)
            ]
        return reply

    def _sign(self, topic: str, request_id: bytes, sequence: int, payload: Any) -> dict[str, Any]:
        # op_invoke, the only caller, checked that a package is loaded and a key (with its address) is held
        assert self.manifest is not None and self.digest is not None
        assert self._key is not None and self.address is not None
        envelope = Envelope(
            cryptlet=self.address,
            name=self.manifest.name,
            digest=self.digest,
            topic=topic,
            request_id=request_id,
            sequence=sequence,
            timestamp_ms=clock.now_ms(),
            payload=payload,
            domain=self.domain,
            registration=self.registration,
            evidence=self.evidence,
        )
        return signed_document(envelope, self._key)

    def _call(self, method: str, args: Any, request_id: str, state: dict[str, Any] | None) -> Outcome:
        """Run the method in the cryptlet (in this process, or the exec program) -> result, events, state."""
        if not isinstance(args, dict):
            raise RegionFault("bad_arguments", "args must be an object")
        if self.program is not None:
            assert self.manifest is not None  # op_invoke, the only caller, checked it
            return _call_program(self.program, self.manifest, method, args, request_id, state)
        sdk = isinstance(self.instance, Cryptlet)
        context = None
        assert self.manifest is not None  # op_invoke, the only caller, checked it
        if sdk:
            context = Context(
                self.channel or _NoHost(),
                name=self.manifest.name,
                method=method,
                request_id=request_id,
                events=self.manifest.events,
                state=State(state) if state is not None else None,
            )
            self.instance._context = context
        try:
            result = _run_cryptlet(lambda: getattr(self.instance, method)(**args), self._forks)
        except (TypeError, ValueError, KeyError) as exc:
            raise RegionFault("bad_arguments", f"{type(exc).__name__}: {exc}") from None
        finally:
            if sdk:
                self.instance._context = None
        if context is None:
            return Outcome(result, [], None)
        if context._state is None or not context._state.changed:
            return Outcome(result, context.emitted, None)
        return Outcome(result, context.emitted, context._state.snapshot())

    def _forks(self) -> int:
        return self.fork_attempts

    def _require_loaded(self) -> tuple[bytes, bytes]:
        """(digest, seal key) of the loaded package."""
        if self.digest is None or self._seal_key is None:
            raise RegionFault("not_loaded", "no package loaded")
        return self.digest, self._seal_key

    def _loaded_manifest(self) -> Manifest:
        if self.manifest is None:
            raise RegionFault("not_loaded", "no package loaded")
        return self.manifest


def _check_sdk_class(cls: Any, manifest: Manifest) -> None:
    """An SDK cryptlet must match its manifest: same kind, every method present and marked."""
    if not (isinstance(cls, type) and issubclass(cls, Cryptlet)):
        return
    if cls.kind != manifest.kind:
        raise RegionFault(
            "load_failed",
            f"{cls.__name__} is a {cls.kind} cryptlet but the manifest says kind {manifest.kind!r}",
        )
    for name in manifest.methods:
        if not is_method(getattr(cls, name, None)):
            raise RegionFault(
                "load_failed",
                f"{cls.__name__}.{name} is in interface.methods but is not a method marked with @method",
            )


def _call_program(
    program: exec_runtime.ExecCryptlet,
    manifest: Manifest,
    method: str,
    args: dict[str, Any],
    request_id: str,
    state: dict[str, Any] | None,
) -> Outcome:
    """Run the method in the ``exec`` program -> result, checked events, new state."""
    params: dict[str, Any] = {"method": method, "args": args, "request_id": request_id}
    if state is not None:
        params["state"] = state
    try:
        reply = program.request("invoke", **params)
    except exec_runtime.CryptletFault as fault:
        raise RegionFault(fault.code, str(fault)) from None
    events = reply.get("events") or []
    if not isinstance(events, list) or len(events) > MAX_EVENTS:
        raise RegionFault("cryptlet_error", f"events must be a list of at most {MAX_EVENTS}")
    try:
        emitted = [
            check_event(manifest.events, e.get("event"), e.get("fields"))
            if isinstance(e, dict)
            else check_event({}, None, None)
            for e in events
        ]
    except CryptletError as exc:
        raise RegionFault("cryptlet_error", str(exc)) from None
    new_state = reply.get("state") if state is not None else None
    if new_state is not None and not isinstance(new_state, dict):
        raise RegionFault("cryptlet_error", "state must be a JSON object")
    return Outcome(reply.get("result"), emitted, new_state)


def _run_cryptlet(fn: Callable[[], Any], fork_attempts: Callable[[], int]) -> Any:
    """Run cryptlet code; turn resource exhaustion into faults with clear codes."""
    forks_before = fork_attempts()
    try:
        return fn()
    except (TypeError, ValueError, KeyError):
        raise
    except MemoryError:
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        raise RegionFault(
            "out_of_memory", f"the cryptlet ran out of memory (region limit {limit >> 20} MiB of address space)"
        ) from None
    except (BlockingIOError, RuntimeError) as exc:
        if (isinstance(exc, BlockingIOError) and fork_attempts() > forks_before) or "can't start new thread" in str(
            exc
        ):
            limit = resource.getrlimit(resource.RLIMIT_NPROC)[0]
            raise RegionFault(
                "process_limit",
                f"the cryptlet hit the region's process limit ({limit} processes and threads): {exc}",
            ) from None
        traceback.print_exc(file=sys.stderr)
        raise RegionFault("cryptlet_error", f"{type(exc).__name__}: {exc}") from None
    except RegionFault:
        raise
    except CryptletError as exc:
        raise RegionFault("cryptlet_error", str(exc)) from None
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        raise RegionFault("cryptlet_error", f"{type(exc).__name__}: {exc}") from None


def serve(reader: BinaryIO, write: Callable[[bytes], None], package_dir: Path) -> None:
    """Answer protocol requests until EOF or ``shutdown``."""
    container = Container(package_dir, HostChannel(reader, write))
    while True:
        line = reader.readline(protocol.MAX_LINE + 1)
        if not line:
            return
        try:
            message = protocol.decode(line)
        except ValueError:
            write(
                protocol.encode(
                    {"id": None, "ok": False, "error": {"code": "protocol", "message": "malformed request"}}
                )
            )
            continue
        op = message.get("op")
        reply: dict[str, Any] = {"id": message.get("id")}
        if op == "shutdown":
            if container.program is not None:
                container.program.close()
            write(protocol.encode({**reply, "ok": True, "result": {}}))
            return
        handler = getattr(container, f"op_{op}", None) if isinstance(op, str) else None
        try:
            if handler is None:
                raise RegionFault("unknown_op", f"unknown operation {op!r}")
            reply.update(ok=True, result=handler(message))
        except RegionFault as fault:
            reply.update(ok=False, error={"code": fault.code, "message": str(fault)})
            if fault.code in exec_runtime.FATAL_CODES:  # the program is gone or broken: so is this region
                write(protocol.encode(reply))
                return
        except FabricError as exc:
            reply.update(ok=False, error={"code": exc.code, "message": exc.detail})
        except MemoryError:
            reply.update(ok=False, error={"code": "out_of_memory", "message": "the region ran out of memory"})
        except Exception as exc:  # the container itself failed: report, keep serving
            traceback.print_exc(file=sys.stderr)
            reply.update(ok=False, error={"code": "container_error", "message": f"{type(exc).__name__}: {exc}"})
        if os.getpid() != container.pid:  # a process the cryptlet forked: it never answers the host
            os._exit(0)
        write(protocol.encode(reply))


def _writer(fd: int) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    return write


def main(package_dir: Path) -> None:
    """Serve the protocol on stdin/stdout (the region's socket); the cryptlet gets /dev/null and stderr."""
    reader = os.fdopen(os.dup(0), "rb")
    protocol_out = os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull, encoding="utf-8")
    sys.stdout = sys.stderr
    serve(reader, _writer(protocol_out), package_dir)
