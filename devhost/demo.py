"""The fabric demo: ``make demo`` (run once and exit) and ``make run`` (then keep serving).

Starts Azurite and the dev host, registers the sample ``customer_validator`` cryptlet, invokes it,
verifies the signed envelope against the ledger, audits the ledger and prints a summary.
Exit status 0 means the envelope verified. Everything it started is stopped on exit.
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

from cryptlet_cli.client import ApiError, FabricClient
from devhost.azurite import PROJECT_ROOT, Azurite
from devhost.ports import free_port, wait_for_port
from shared.attestation.software import SoftwarePolicy
from shared.errors import FabricError, VerificationError
from shared.ledger import Ledger
from shared.settings import SETTINGS
from shared.storage import table_client
from shared.verification import verify_against_registration

DATA = PROJECT_ROOT / ".devdata"
SAMPLE_CUSTOMER = {"name": "Ada Example", "email": "ada@example.com", "country": "GB",
                   "birth_date": "1990-12-10", "credit_score": 742}


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

    def __init__(self, port: int, env: dict[str, str]) -> None:
        self.port = port
        self.process = subprocess.Popen([sys.executable, "-m", "devhost", "serve", "--app-dir", str(PROJECT_ROOT),
                                         "--port", str(port)], env=env, cwd=PROJECT_ROOT, start_new_session=True)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def run_demo(client: FabricClient, storage: str, table_prefix: str) -> bool:
    """Register, invoke, verify; print a summary. Returns True when the envelope verified."""
    print("\n== Cryptlet Fabric demo ==")
    try:
        registration = client.register("customer_validator")
        print(f"registered  {registration['name']} v{registration['version']}")
    except ApiError as exc:
        if exc.status != 409:
            raise
        registration = client.get("customer_validator")
        print(f"found       {registration['name']} v{registration['version']} (registered earlier)")
    print(f"  address   {registration['address']}")
    print(f"  digest    {registration['digest']}")
    print(f"  ledger    {registration['ledger']['stream']}#{registration['ledger']['sequence']} "
          f"{registration['ledger']['entry_hash'][:18]}...")
    envelope = client.invoke("customer_validator", "validate",
                             {"customer": SAMPLE_CUSTOMER, "salt": "0x" + secrets.token_hex(32)})
    print(f"invoked     customer_validator.validate -> approved={envelope['payload']['approved']} "
          f"failed_rules={envelope['payload']['failed_rules']}")
    print(f"  envelope  sequence {envelope['sequence']}, signature {envelope['signature'][:22]}...")
    entry = client.ledger_entry(envelope["registration"]["sequence"])
    # The dev host's evidence is software/debug (process provider): accept it explicitly, pinned
    # to the platform key the host reports.
    policy = SoftwarePolicy(allow_software=True, platform_keys=frozenset({client.attestation()["platform_key"]}))
    try:
        verified = verify_against_registration(envelope, entry, evidence_policy=policy)
        print(f"{verified.summary()}")
        head = Ledger(table_client(storage, f"{table_prefix}ledger", create=False)).verify()
    except VerificationError:
        print("note: if .devdata holds data from an older version of the fabric, `make clean` starts over",
              file=sys.stderr)
        raise
    print(f"ledger      {head.size} entries, chain intact, head {head.entry_hash[:16]}...")
    print("The customer record never left the region: the envelope carries only the verdict and a salted commitment.")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost.demo", description=__doc__.splitlines()[0])
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
        shown = azurite.data_dir.relative_to(PROJECT_ROOT) if azurite.data_dir.is_relative_to(PROJECT_ROOT) \
            else azurite.data_dir
        print(f"starting Azurite (data in {shown}) ...")
        azurite.start()
        prefix = os.environ.get("FABRIC_TABLE_PREFIX", "fabric")
        env = dict(os.environ, AzureWebJobsStorage=azurite.connection_string, FABRIC_SEALING_SECRET=sealing,
                   DEVHOST_FUNCTION_KEY=function_key, DEVHOST_MASTER_KEY=master_key,
                   FABRIC_TABLE_PREFIX=prefix)
        for name, (default, _) in SETTINGS.items():  # binding expressions such as %FABRIC_INVOKE_QUEUE%
            if default is not None:
                env.setdefault(name, default)
        host = DevHostProcess(port, env)
        wait_for_port(port, 60, host.process)
        client = FabricClient(f"http://127.0.0.1:{port}", function_key)
        ok = run_demo(client, azurite.connection_string, prefix)
        if args.serve:
            print(f"\nServing on http://127.0.0.1:{port} - try the CLI in another shell:\n"
                  f"  export CRYPTLET_URL=http://127.0.0.1:{port} CRYPTLET_FUNCTION_KEY=$(cat {data}/function-key)\n"
                  f"  export CRYPTLET_ADMIN_KEY=$(cat {data}/master-key)   # for policy changes\n"
                  f"  export AzureWebJobsStorage='{azurite.connection_string}'\n"
                  f"  .venv/bin/cryptlet list\n  .venv/bin/cryptlet ledger verify\nPress Ctrl-C to stop.")
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
