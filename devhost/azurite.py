"""Start and stop Azurite (the Azure Storage emulator from npm) on free loopback ports.

Used by ``make run``/``make test``/bench scripts and by the test suite::

    with Azurite(data_dir) as azurite:
        os.environ["AzureWebJobsStorage"] = azurite.connection_string

Command line: ``python -m devhost.azurite [--data DIR] -- COMMAND ...`` runs COMMAND with
``AzureWebJobsStorage`` pointing at a fresh Azurite and stops Azurite afterwards.

Azurite's data folder holds every table and blob in clear (the ledger, the catalog, sealed keys,
sealed webhook secrets, callers' results): it is made private to the host's user (``0700``, and
the project's ``.devdata`` with it; an existing one is tightened) and Azurite runs with
``umask 077``, so regions running as other uids cannot read it (docs/isolation.md).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from devhost.ports import free_port, wait_for_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = PROJECT_ROOT / "node_modules" / ".bin" / "azurite"
DEVDATA = PROJECT_ROOT / ".devdata"
# The well-known development account key (public, documented by Microsoft for the emulator).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def private_folder(path: Path) -> Path:
    """Create ``path`` (and missing parents) readable by the current user only, or tighten an existing
    one to ``0700``; also the project's ``.devdata`` when ``path`` is inside it."""
    missing = []
    folder = path
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    for folder in (path, DEVDATA) if path.resolve().is_relative_to(DEVDATA.resolve()) else (path,):
        if folder.stat().st_mode & 0o777 != 0o700:
            os.chmod(folder, 0o700)
    return path


def connection_string(blob: int, queue: int, table: int) -> str:
    """Connection string for an Azurite listening on the given loopback ports."""
    base = "http://127.0.0.1"
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint={base}:{blob}/{DEV_ACCOUNT};QueueEndpoint={base}:{queue}/{DEV_ACCOUNT};"
        f"TableEndpoint={base}:{table}/{DEV_ACCOUNT};"
    )


class Azurite:
    """One Azurite process with its data in ``data_dir`` on free loopback ports.

    The ports are chosen once, so :meth:`stop` followed by :meth:`start` brings the same
    storage back at the same address (tests use this to kill and restart storage).
    """

    def __init__(self, data_dir: Path | str, *, in_memory: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.in_memory = in_memory
        self.blob_port = free_port()
        self.queue_port = free_port()
        self.table_port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def connection_string(self) -> str:
        return connection_string(self.blob_port, self.queue_port, self.table_port)

    def start(self, timeout: float = 60.0) -> Azurite:
        if not AZURITE_BIN.exists():
            raise RuntimeError(f"{AZURITE_BIN} is missing: run `make setup` (npm ci) first")
        private_folder(self.data_dir)
        args = [
            str(AZURITE_BIN),
            "--silent",
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.blob_port),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(self.queue_port),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(self.table_port),
            "--location",
            str(self.data_dir),
        ]
        if self.in_memory:
            args.append("--inMemoryPersistence")
        log = os.open(self.data_dir / "azurite.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            self.process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                umask=0o077,  # what Azurite writes (tables, blobs, queues) is the host user's only
            )
        finally:
            os.close(log)
        try:
            for port in (self.blob_port, self.queue_port, self.table_port):
                wait_for_port(port, timeout, self.process)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self, *, kill: bool = False) -> None:
        """Stop Azurite (SIGTERM, or SIGKILL with ``kill=True``) and wait for it to exit."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devhost.azurite", description="Run COMMAND with a private Azurite on free loopback ports."
    )
    parser.add_argument(
        "--data",
        default=str(DEVDATA / "azurite-run"),
        help="Azurite data folder (default: .devdata/azurite-run)",
    )
    parser.add_argument("--fresh", action="store_true", help="empty the data folder first")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="command to run (after --)")
    args = parser.parse_args(argv)
    command = [c for c in args.command if c != "--"] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command to run after --")
    if args.fresh:
        import shutil

        shutil.rmtree(args.data, ignore_errors=True)
    with Azurite(args.data) as azurite:
        env = dict(os.environ, AzureWebJobsStorage=azurite.connection_string)
        child = subprocess.Popen(command, env=env)
        try:
            return child.wait()
        except KeyboardInterrupt:
            child.send_signal(signal.SIGINT)
            return child.wait()


if __name__ == "__main__":
    sys.exit(main())
