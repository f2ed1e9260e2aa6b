"""Command line: ``python -m devhost serve [--app-dir DIR] [--port N] [--host H] [--access-log]``.

Serves the function app like ``func start`` and runs until SIGINT/SIGTERM, then shuts
down gracefully and exits 0 (``atexit`` handlers run). Configuration errors print one
line ``devhost: error: ...`` and exit 1.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from types import FrameType

from devhost.errors import DevHostError
from devhost.server import DEFAULT_HOST, DEFAULT_PORT, build
from shared.redact import RedactingFilter


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devhost", description="Serve an Azure Functions (Python v2) app without Core Tools."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the function app until SIGINT/SIGTERM")
    serve.add_argument("--app-dir", default=".", help="folder with function_app.py and host.json (default: .)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default: {DEFAULT_PORT})")
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default: {DEFAULT_HOST})")
    serve.add_argument("--access-log", action="store_true", help="log every HTTP request")
    serve.add_argument("--verbose", "-v", action="store_true", help="log every invocation (debug level)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:  # no function key (?code=), signature or password in the log
        handler.addFilter(RedactingFilter())
    if args.verbose:
        logging.getLogger("devhost").setLevel(logging.DEBUG)

    # The handler only flips a flag: taking locks (e.g. Event.set) in a signal handler
    # can deadlock with the main thread it interrupts.
    stop: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.append(signum)
        # A second Ctrl-C interrupts a shutdown that hangs.
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    try:
        host = build(args.app_dir, host=args.host, port=args.port, access_log=args.access_log)
        host.start()
    except DevHostError as exc:
        print(f"devhost: error: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"devhost: serving {len(host.functions)} functions on {host.url}", flush=True)
    for line in host.summary():
        print(line, flush=True)
    try:
        while not stop:
            time.sleep(0.1)
    finally:
        print("devhost: shutting down", flush=True)
        host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
