"""``python -m adapters.ethereum``: run the chain adapter (docs/adapters.md).

Every option also reads an environment variable (shown in ``--help``); an option given wins.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .adapter import Adapter, Config


def _key_file(path: str | None) -> str:
    """The private key of a key file (``cryptlet subscriber keygen`` JSON, or a bare hex line)."""
    if not path:
        return ""
    text = Path(path).read_text().strip()
    if text.startswith("{"):
        return json.loads(text)["private_key"]
    return text


def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m adapters.ethereum", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rpc-url",
        default=env("ADAPTER_RPC_URL", "http://127.0.0.1:8545"),
        help="JSON-RPC endpoint of the chain (ADAPTER_RPC_URL)",
    )
    parser.add_argument("--proxy", default=env("ADAPTER_PROXY"), help="CryptletProxy address (ADAPTER_PROXY)")
    parser.add_argument(
        "--abi",
        default=env("ADAPTER_PROXY_ABI", "contracts/build/CryptletProxy.json"),
        help="the proxy's build artifact or ABI JSON (ADAPTER_PROXY_ABI)",
    )
    parser.add_argument(
        "--tx-key-file",
        default=env("ADAPTER_TX_KEY_FILE"),
        help="key file of the account that sends the transactions (ADAPTER_TX_KEY_FILE)",
    )
    parser.add_argument(
        "--fabric-url",
        default=env("CRYPTLET_URL", "http://127.0.0.1:7071"),
        help="the fabric's base URL (CRYPTLET_URL)",
    )
    parser.add_argument(
        "--function-key",
        default=env("CRYPTLET_FUNCTION_KEY", ""),
        help="function key for the fabric's API (CRYPTLET_FUNCTION_KEY)",
    )
    parser.add_argument(
        "--subscriber",
        default=env("ADAPTER_SUBSCRIBER", ""),
        help="the adapter's registered subscriber name (ADAPTER_SUBSCRIBER)",
    )
    parser.add_argument(
        "--subscriber-key-file",
        default=env("ADAPTER_SUBSCRIBER_KEY_FILE"),
        help="its key file, from `cryptlet subscriber keygen` (ADAPTER_SUBSCRIBER_KEY_FILE)",
    )
    parser.add_argument(
        "--subscriptions",
        default=env("ADAPTER_SUBSCRIPTIONS"),
        help="JSON file: topic string -> {method?, args, trigger, missed?} (ADAPTER_SUBSCRIPTIONS)",
    )
    parser.add_argument(
        "--state", default=env("ADAPTER_STATE", ".devdata/adapter-state.json"), help="state file (ADAPTER_STATE)"
    )
    parser.add_argument(
        "--confirmations",
        type=int,
        default=int(env("ADAPTER_CONFIRMATIONS", "12")),
        help="blocks an event must be under before it is acted on (ADAPTER_CONFIRMATIONS)",
    )
    parser.add_argument(
        "--start-block",
        type=int,
        default=int(env("ADAPTER_START_BLOCK", "0")),
        help="first block to scan when there is no state file yet (ADAPTER_START_BLOCK)",
    )
    parser.add_argument(
        "--poll", type=float, default=float(env("ADAPTER_POLL_S", "2")), help="seconds between rounds (ADAPTER_POLL_S)"
    )
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=int(env("ADAPTER_MAX_ATTEMPTS", "5")),
        help="tries of a failing fulfilment or delivery before it is reported (ADAPTER_MAX_ATTEMPTS)",
    )
    parser.add_argument(
        "--backoff",
        type=float,
        default=float(env("ADAPTER_BACKOFF_S", "1")),
        help="first retry delay, doubled per attempt up to 60 s (ADAPTER_BACKOFF_S)",
    )
    parser.add_argument(
        "--no-expire",
        action="store_true",
        help="leave requests whose deadline passed pending instead of calling expire()",
    )
    parser.add_argument(
        "--no-ledger",
        action="store_true",
        help="do not mirror the ledger's key events into the proxy's signer set (done only when "
        "the transaction account is the proxy's owner)",
    )
    parser.add_argument(
        "--ledger-key",
        default=env("ADAPTER_LEDGER_KEY", env("CRYPTLET_LEDGER_KEY", "")),
        help="the fabric's checkpoint verifier key (GET /api/ledger public_key): each ledger page "
        "must then be in a checkpoint it signed (ADAPTER_LEDGER_KEY, CRYPTLET_LEDGER_KEY)",
    )
    parser.add_argument("--once", action="store_true", help="one round, then exit")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpcore", "web3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not args.proxy or not args.tx_key_file:
        parser.error("--proxy and --tx-key-file are required")
    config = Config(
        rpc_url=args.rpc_url,
        proxy=args.proxy,
        abi_path=Path(args.abi),
        tx_key=_key_file(args.tx_key_file),
        fabric_url=args.fabric_url,
        function_key=args.function_key,
        state_path=Path(args.state),
        subscriber=args.subscriber,
        subscriber_key=_key_file(args.subscriber_key_file),
        subscriptions=json.loads(Path(args.subscriptions).read_text()) if args.subscriptions else {},
        confirmations=args.confirmations,
        poll_s=args.poll,
        start_block=args.start_block,
        max_attempts=args.max_attempts,
        backoff_s=args.backoff,
        expire_late=not args.no_expire,
        follow_ledger=not args.no_ledger,
        ledger_key=args.ledger_key,
    )
    Adapter(config).run(once=args.once)
    return 0


if __name__ == "__main__":
    sys.exit(main())
