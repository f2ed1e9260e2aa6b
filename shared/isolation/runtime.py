"""The cryptlet container: the program that runs inside a region.

Started by a provider as ``python -I -B shared/isolation/runtime.py``; speaks
:mod:`shared.isolation.protocol` on stdin/stdout. It measures the package before loading it
(a changed package refuses to start), generates or unseals the cryptlet's key, runs calls and
signs every output. The private key exists only in this process; only the sealed blob leaves.
Cryptlet code that prints goes to stderr, never onto the protocol stream.
"""
from __future__ import annotations

import base64
import importlib.util
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # started as a script in isolated mode: make `shared` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import coincurve  # noqa: E402

from shared import sealing  # noqa: E402
from shared.digest import package_digest  # noqa: E402
from shared.encoding import from_hex, to_hex  # noqa: E402
from shared.envelope import Domain, Envelope, address_of, sign_envelope  # noqa: E402
from shared.errors import FabricError  # noqa: E402
from shared.isolation import protocol  # noqa: E402
from shared.manifest import load_manifest  # noqa: E402


class RegionFault(Exception):
    """An error reported back to the host with a stable code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Container:
    """State of one region: the loaded cryptlet, its key and its signing context."""

    def __init__(self) -> None:
        self.digest: bytes | None = None
        self.manifest = None
        self.instance: Any = None
        self.package_dir: Path | None = None
        self._key: bytes | None = None
        self.address: str | None = None
        self._platform_secret: bytes | None = None
        self.domain = Domain()
        self.registration: dict[str, Any] = {}
        self.evidence: dict[str, Any] = {}
        self.last_sequence = -1

    # -- operations ---------------------------------------------------------------------------
    def op_load(self, msg: dict[str, Any]) -> dict[str, Any]:
        package_dir = Path(msg["package_dir"])
        measured = package_digest(package_dir)
        expected = from_hex(msg["expected_digest"], length=32)
        if measured != expected:
            raise RegionFault("digest_mismatch",
                              f"package measures {measured.hex()}, registered digest is {expected.hex()}: refusing to load")
        self.digest, self.package_dir = measured, package_dir
        self._platform_secret = base64.b64decode(msg["platform_secret"])
        self.domain = Domain.from_dict(msg["domain"])
        self.manifest = load_manifest(package_dir, check_schema=False)
        module_name, _, class_name = self.manifest.entry.partition(":")
        module_path = package_dir.joinpath(*module_name.split(".")).with_suffix(".py")
        spec = importlib.util.spec_from_file_location(f"cryptlet_{self.manifest.name}", module_path)
        if spec is None or spec.loader is None or not module_path.is_file():
            raise RegionFault("entry_not_found", f"entry module {module_name!r} not found in the package")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(package_dir))
        spec.loader.exec_module(module)
        cls = getattr(module, class_name, None)
        if cls is None:
            raise RegionFault("entry_not_found", f"entry class {class_name!r} not found in {module_name}")
        self.instance = cls()
        return {"digest": to_hex(measured), "name": self.manifest.name}

    def op_generate_key(self, msg: dict[str, Any]) -> dict[str, Any]:
        self._require_loaded()
        key = coincurve.PrivateKey()
        self._key = key.secret
        public = key.public_key.format(compressed=False)
        self.address = address_of(public)
        sealed = sealing.seal(self._platform_secret, self.digest, self.address, self._key)
        return {"public_key": to_hex(public), "address": self.address,
                "sealed_key": base64.b64encode(sealed).decode()}

    def op_unseal(self, msg: dict[str, Any]) -> dict[str, Any]:
        self._require_loaded()
        address = msg["address"]
        secret = sealing.unseal(self._platform_secret, self.digest, address, base64.b64decode(msg["sealed_key"]))
        public = coincurve.PrivateKey(secret).public_key.format(compressed=False)
        if address_of(public).lower() != address.lower():
            raise RegionFault("key_mismatch", "unsealed key does not belong to the registered address")
        self._key, self.address = secret, address_of(public)
        return {"address": self.address, "public_key": to_hex(public)}

    def op_bind(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Record the registration (ledger reference) and evidence that envelopes cite."""
        self.registration = dict(msg["registration"])
        self.evidence = dict(msg.get("evidence") or {})
        return {}

    def op_invoke(self, msg: dict[str, Any]) -> dict[str, Any]:
        self._require_loaded()
        if self._key is None:
            raise RegionFault("no_key", "region holds no key: generate or unseal first")
        if not self.registration:
            raise RegionFault("not_bound", "region is not bound to a registration")
        method = msg["method"]
        if method not in self.manifest.methods:
            raise RegionFault("unknown_method", f"{self.manifest.name} has no method {method!r}")
        sequence = int(msg["sequence"])
        if sequence <= self.last_sequence:
            raise RegionFault("sequence_reused", f"sequence {sequence} is not above {self.last_sequence}")
        args = msg.get("args") or {}
        try:
            payload = getattr(self.instance, method)(**args)
        except (TypeError, ValueError, KeyError) as exc:
            raise RegionFault("bad_arguments", f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            raise RegionFault("cryptlet_error", f"{type(exc).__name__}: {exc}") from None
        self.last_sequence = sequence
        envelope = Envelope(
            cryptlet=self.address, name=self.manifest.name, digest=self.digest,
            topic=f"{self.manifest.name}.{method}", request_id=from_hex(msg["request_id"], length=32),
            sequence=sequence, timestamp_ms=int(time.time() * 1000), payload=payload, domain=self.domain,
            registration=self.registration, evidence=self.evidence)
        return {"envelope": sign_envelope(envelope, self._key).to_dict()}

    def _require_loaded(self) -> None:
        if self.digest is None or self._platform_secret is None:
            raise RegionFault("not_loaded", "no package loaded")


def serve(stdin, stdout) -> None:
    """Answer protocol requests until EOF or ``shutdown``."""
    container = Container()
    for line in stdin:
        try:
            message = protocol.decode(line)
        except ValueError:
            stdout.write(protocol.encode({"id": None, "ok": False,
                                          "error": {"code": "protocol", "message": "malformed request"}}))
            stdout.flush()
            continue
        op = message.get("op")
        reply: dict[str, Any] = {"id": message.get("id")}
        if op == "shutdown":
            stdout.write(protocol.encode({**reply, "ok": True, "result": {}}))
            stdout.flush()
            return
        handler = getattr(container, f"op_{op}", None) if isinstance(op, str) else None
        try:
            if handler is None:
                raise RegionFault("unknown_op", f"unknown operation {op!r}")
            reply.update(ok=True, result=handler(message))
        except RegionFault as fault:
            reply.update(ok=False, error={"code": fault.code, "message": str(fault)})
        except FabricError as exc:
            reply.update(ok=False, error={"code": exc.code, "message": exc.detail})
        except Exception as exc:  # the container itself failed: report, keep serving
            traceback.print_exc(file=sys.stderr)
            reply.update(ok=False, error={"code": "container_error", "message": f"{type(exc).__name__}: {exc}"})
        stdout.write(protocol.encode(reply))
        stdout.flush()


def main() -> None:
    # The protocol owns the real stdout; anything the cryptlet prints goes to stderr.
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, _Writer(protocol_out))


class _Writer:
    def __init__(self, raw) -> None:
        self.raw = raw

    def write(self, data: bytes) -> None:
        self.raw.write(data)

    def flush(self) -> None:
        pass


if __name__ == "__main__":
    main()
