"""The fabric demo: ``make demo`` (run once and exit) and ``make run`` (then keep serving).

Starts Azurite and the dev host, registers the samples ``customer_validator`` (Python) and
``sla_monitor`` (JavaScript, exec runtime), invokes them, verifies every signed envelope (and
event) against the ledger, audits the ledger and prints a summary. Exit status 0 means every
envelope verified. Everything it started is stopped on exit.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cryptlet_cli.client import ApiError, FabricClient
from devhost.azurite import PROJECT_ROOT, Azurite
from devhost.ports import free_port, wait_for_port
from shared.attestation.software import SoftwarePolicy
from shared.errors import FabricError, VerificationError
from shared.ledger.chain import Ledger
from shared.settings import SETTINGS
from shared.storage import table_client
from shared.verification import verify_against_registration

DATA = PROJECT_ROOT / ".devdata"
SAMPLE_CUSTOMER = {
    "name": "Ada Example",
    "email": "ada@example.com",
    "country": "GB",
    "birth_date": "1990-12-10",
    "credit_score": 742,
}


def _secret_file(path: Path, make) -> str:
    """Read a dev secret from ``path``, creating it (mode 0600) on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make())
    return path.read_text().strip()


class DevHostProcess:
    """``python -m devhost serve`` as a child process."""

    def __init__(self, port: int, env: dict[str, str], *, stdout: Any = None) -> None:
        """``stdout``: where the host's own output goes (default: this process's stdout; benchmarks pass
        ``sys.stderr`` so that their JSON stays the last line of stdout)."""
        self.port = port
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devhost", "serve", "--app-dir", str(PROJECT_ROOT), "--port", str(port)],
            env=env,
            cwd=PROJECT_ROOT,
            start_new_session=True,
            stdout=stdout,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _registered(client: FabricClient, name: str) -> dict:
    """Register sample ``name`` (or find it registered by an earlier run) and print its identity."""
    try:
        registration = client.register(name)
        print(f"registered  {registration['name']} v{registration['version']} ({registration['kind']})")
    except ApiError as exc:
        if exc.status != 409:
            raise
        registration = client.get(name)
        print(f"found       {registration['name']} v{registration['version']} (registered earlier)")
    print(f"  address   {registration['address']}")
    print(f"  digest    {registration['digest']}")
    print(
        f"  ledger    {registration['ledger']['stream']}#{registration['ledger']['sequence']} "
        f"{registration['ledger']['entry_hash'][:18]}..."
    )
    return registration


def run_demo(client: FabricClient, storage: str, table_prefix: str) -> bool:
    """Register, invoke, verify (a Python and a JavaScript cryptlet); print a summary.
    Returns True when every envelope verified."""
    print("\n== Cryptlet Fabric demo ==")
    # The dev host's evidence is software/debug (process provider): accept it explicitly, pinned
    # to the platform key the host reports.
    policy = SoftwarePolicy(allow_software=True, platform_keys=frozenset({client.attestation()["platform_key"]}))

    def verify(envelope: dict) -> None:
        entry = client.ledger_entry(envelope["registration"]["sequence"])
        try:
            print(f"{verify_against_registration(envelope, entry, evidence_policy=policy).summary()}")
        except VerificationError:
            print(
                "note: if .devdata holds data from an older version of the fabric, `make clean` starts over",
                file=sys.stderr,
            )
            raise

    _registered(client, "customer_validator")
    envelope = client.invoke(
        "customer_validator", "validate", {"customer": SAMPLE_CUSTOMER, "salt": "0x" + secrets.token_hex(32)}
    )
    print(
        f"invoked     customer_validator.validate -> approved={envelope['payload']['approved']} "
        f"failed_rules={envelope['payload']['failed_rules']}"
    )
    print(f"  envelope  sequence {envelope['sequence']}, signature {envelope['signature'][:22]}...")
    verify(envelope)
    print("The customer record never left the region: the envelope carries only the verdict and a salted commitment.")

    _registered(client, "sla_monitor")  # the same path for a cryptlet written in JavaScript (exec runtime)
    envelope = client.invoke(
        "sla_monitor",
        "evaluate",
        {
            "observations": [{"at": 0, "up": True}, {"at": 86_000_000, "up": False}, {"at": 89_600_000, "up": True}],
            "period_end": 2_592_000_000,
            "target_bp": 9995,
            "penalty_per_bp": "100",
        },
    )
    print(
        f"invoked     sla_monitor.evaluate (Node.js) -> availability {envelope['payload']['availability_bp']} bp, "
        f"breached={envelope['payload']['breached']}, penalty {envelope['payload']['penalty']}"
    )
    verify(envelope)
    for event in envelope.get("events", []):
        print(f"  event     {event['topic']} {event['payload']}")
        verify(event)
    head = Ledger(table_client(storage, f"{table_prefix}ledger", create=False)).verify()
    print(f"ledger      {head.size} entries, chain intact, head {head.entry_hash[:16]}...")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cryptlet_cli.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="keep serving after the demo until Ctrl-C")
    parser.add_argument("--port", type=int, default=None, help="dev host port (default 7071 if free)")
    parser.add_argument("--data", type=Path, default=DATA, help="dev data folder (default .devdata)")
    args = parser.parse_args(argv)

    data = args.data
    sealing = _secret_file(data / "sealing-secret", lambda: base64.b64encode(os.urandom(32)).decode())
    function_key = _secret_file(data / "function-key", lambda: secrets.token_urlsafe(24))
    master_key = _secret_file(data / "master-key", lambda: secrets.token_urlsafe(24))
    port = args.port or (7071 if _port_free(7071) else free_port())
    azurite = Azurite(data / "azurite")
    host: DevHostProcess | None = None
    ok = False
    try:
        shown = (
            azurite.data_dir.relative_to(PROJECT_ROOT)
            if azurite.data_dir.is_relative_to(PROJECT_ROOT)
            else azurite.data_dir
        )
        print(f"starting Azurite (data in {shown}) ...")
        azurite.start()
        prefix = os.environ.get("FABRIC_TABLE_PREFIX", "fabric")
        env = dict(
            os.environ,
            AzureWebJobsStorage=azurite.connection_string,
            FABRIC_SEALING_SECRET=sealing,
            DEVHOST_FUNCTION_KEY=function_key,
            DEVHOST_MASTER_KEY=master_key,
            FABRIC_TABLE_PREFIX=prefix,
        )
        for name, (default, _) in SETTINGS.items():  # binding expressions such as %FABRIC_INVOKE_QUEUE%
            if default is not None:
                env.setdefault(name, default)
        host = DevHostProcess(port, env)
        wait_for_port(port, 60, host.process)
        client = FabricClient(f"http://127.0.0.1:{port}", function_key)
        ok = run_demo(client, azurite.connection_string, prefix)
        if args.serve:
            print(
                f"\nServing on http://127.0.0.1:{port} - try the CLI in another shell:\n"
                f"  export CRYPTLET_URL=http://127.0.0.1:{port} CRYPTLET_FUNCTION_KEY=$(cat {data}/function-key)\n"
                f"  export CRYPTLET_ADMIN_KEY=$(cat {data}/master-key)   # for policy changes\n"
                f"  export AzureWebJobsStorage='{azurite.connection_string}'\n"
                f"  .venv/bin/cryptlet list\n  .venv/bin/cryptlet ledger verify\nPress Ctrl-C to stop."
            )
            while host.process.poll() is None:
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    except FabricError as exc:
        print(f"demo failed: {exc.diagnostics()}", file=sys.stderr)
        ok = False
    except (RuntimeError, TimeoutError) as exc:  # Azurite or the dev host did not come up
        print(f"demo failed: {exc}", file=sys.stderr)
        ok = False
    finally:
        if host is not None:
            host.stop()
        azurite.stop()
        print("stopped the dev host and Azurite.")
    return 0 if ok else 1


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is fine
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


if __name__ == "__main__":
    sys.exit(main())
