"""``cryptlet ledger``: audit the registration ledger, fetch and check receipts and consistency proofs.

``verify`` reads storage directly (an auditor need not trust the host); ``receipt``,
``checkpoint``, ``consistency`` and ``tail`` ask the host but check everything it returns
against the pinned checkpoint key (``--public-key`` / ``CRYPTLET_LEDGER_KEY``). Without a pin
they fall back to the key the host publishes and say so.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from shared.errors import InvalidInput, VerificationError
from shared.ledger.checkpoints import VerifierKey, open_checkpoint, parse_body, split_note

KEY_HELP = "Pinned checkpoint key <name>+<id>+<base64> (env CRYPTLET_LEDGER_KEY)."


def _emit(document: Any, output: str | None) -> None:
    text = json.dumps(document, indent=2)
    if output and output != "-":
        Path(output).write_text(text + "\n", encoding="utf-8")
    else:
        click.echo(text)


def _key(obj: Any, pinned: str | None) -> tuple[VerifierKey, str]:
    """The key to check checkpoints with, and how it was obtained (for the output line)."""
    if pinned:
        return VerifierKey.parse(pinned, field="--public-key"), "pinned"
    published = obj.client.request("GET", "ledger")["public_key"]
    return VerifierKey.parse(published), "as published by the host; pin it with --public-key"


@click.group("ledger")
def ledger() -> None:
    """Audit the registration ledger; receipts, checkpoints and consistency proofs."""


@ledger.command("verify")
@click.option(
    "--connection",
    envvar="AzureWebJobsStorage",
    required=True,
    help="Storage connection string (env AzureWebJobsStorage); read directly, not via the host.",
)
@click.option("--table-prefix", envvar="FABRIC_TABLE_PREFIX", default="fabric", show_default=True)
@click.option("--stream", default="registry", show_default=True)
@click.option("--public-key", envvar="CRYPTLET_LEDGER_KEY", default=None, help=KEY_HELP)
def ledger_verify(connection: str, table_prefix: str, stream: str, public_key: str | None) -> None:
    """Walk the whole hash chain and every signed checkpoint from storage; name the first problem."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from shared.ledger.audit import audit
    from shared.ledger.chain import Ledger
    from shared.ledger.checkpoint_store import CheckpointStore
    from shared.storage import table_client

    table = table_client(connection, f"{table_prefix}ledger", create=False)
    store = Ledger(table, stream)
    key = VerifierKey.parse(public_key, field="--public-key") if public_key else None
    size = store.head().size
    columns = (TextColumn("verifying {task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(
        *columns, transient=True, disable=not sys.stderr.isatty() or size < 10_000, console=Console(stderr=True)
    ) as progress:
        task = progress.add_task(stream, total=size)
        report = audit(
            store, CheckpointStore(table, stream), key, progress=lambda n: progress.update(task, completed=n)
        )
    click.echo(report.summary(stream))


@ledger.command("receipt")
@click.argument("sequence", type=int, required=False)
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Check a saved receipt offline instead of fetching one.",
)
@click.option("-o", "--output", default=None, help="Save the receipt (JSON) to this file.")
@click.option("--public-key", envvar="CRYPTLET_LEDGER_KEY", default=None, help=KEY_HELP)
@click.pass_obj
def ledger_receipt(
    obj: Any, sequence: int | None, path: str | None, output: str | None, public_key: str | None
) -> None:
    """Fetch the receipt of entry SEQUENCE (or check --file) and verify it against the checkpoint key."""
    from shared.ledger.receipts import Receipt

    if path is not None:
        if not public_key:
            raise InvalidInput("checking a saved receipt needs the pinned key: --public-key", field="--public-key")
        document = _load_json(path)
        key, how = VerifierKey.parse(public_key, field="--public-key"), "pinned"
    elif sequence is None:
        raise InvalidInput("give an entry SEQUENCE, or --file with a saved receipt", field="sequence")
    else:
        document = obj.client.request("GET", f"ledger/entries/{sequence}/receipt")
        key, how = _key(obj, public_key)
    receipt = Receipt.from_dict(document)
    checkpoint = receipt.verify(key)
    if output:
        _emit(document, output)
    entry = receipt.entry
    click.echo(
        f"receipt verified: entry {entry.sequence} ({entry.kind}, {entry.time}) is in the checkpoint of "
        f"{checkpoint.size} entries signed {checkpoint.time}; root {checkpoint.root.hex()[:16]}...; "
        f"key {key.name}+{key.key_id.hex()} ({how})"
    )


@ledger.command("checkpoint")
@click.option("--new", "new", is_flag=True, help="Ask the host to sign a checkpoint of the current head first.")
@click.option("-o", "--output", default=None, help="Save the signed checkpoint (note text) to this file.")
@click.option("--public-key", envvar="CRYPTLET_LEDGER_KEY", default=None, help=KEY_HELP)
@click.pass_obj
def ledger_checkpoint(obj: Any, new: bool, output: str | None, public_key: str | None) -> None:
    """Fetch (or with --new, request) the newest signed checkpoint; check its signature; keep it for later."""
    document = (
        obj.client.request("POST", "ledger/checkpoints") if new else obj.client.request("GET", "ledger/checkpoint")
    )
    key, how = _key(obj, public_key)
    checkpoint = open_checkpoint(document["note"], key)
    if output:
        Path(output).write_text(document["note"], encoding="utf-8")
    click.echo(
        f"checkpoint verified: {checkpoint.origin} size {checkpoint.size} root {checkpoint.root.hex()} "
        f"at {checkpoint.time}; key {key} ({how})"
    )


def _load_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path} is not valid JSON: {exc.msg}", field="--file") from None


def _checkpoint_arg(value: str | None) -> tuple[int | None, str | None]:
    """A size or a saved checkpoint note file -> (size, note)."""
    if value is None:
        return None, None
    if value.isdigit():
        return int(value), None
    path = Path(value)
    if not path.is_file():
        raise InvalidInput(f"{value} is neither a tree size nor a saved checkpoint file", field="OLD")
    note = path.read_text(encoding="utf-8")
    return parse_body(split_note(note)[0]).size, note


@ledger.command("consistency")
@click.argument("old")
@click.argument("new", required=False)
@click.option("--public-key", envvar="CRYPTLET_LEDGER_KEY", default=None, help=KEY_HELP)
@click.pass_obj
def ledger_consistency(obj: Any, old: str, new: str | None, public_key: str | None) -> None:
    """Prove the ledger only grew from checkpoint OLD to NEW (default: the newest).

    OLD and NEW are tree sizes or checkpoint files saved with `cryptlet ledger checkpoint -o`;
    a saved file is the strong form: the host cannot re-sign a history it rewrote since.
    """
    from shared.ledger.receipts import Consistency

    size1, old_note = _checkpoint_arg(old)
    size2, new_note = _checkpoint_arg(new)
    query = {"from": size1} if size2 is None else {"from": size1, "to": size2}
    proof = Consistency.from_dict(obj.client.request("GET", "ledger/consistency", params=query))
    key, how = _key(obj, public_key)
    if proof.old is None and old_note is None:
        raise VerificationError(
            "consistency_proof_invalid", f"the host issued no checkpoint of size {size1}; use a saved checkpoint file"
        )
    first, second = proof.verify(key, old_note, new_note)
    click.echo(
        f"consistent: the ledger of {first.size} entries ({first.time}) is a prefix of the ledger of "
        f"{second.size} entries ({second.time}); key {key.name}+{key.key_id.hex()} ({how})"
    )


@ledger.command("tail")
@click.option("-n", "count", type=click.IntRange(1, 1000), default=10, show_default=True, help="Entries to show.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new entries (Ctrl-C to stop).")
@click.option("--interval", type=float, default=2.0, show_default=True, help="Seconds between polls with --follow.")
@click.option("--json", "as_json", is_flag=True, help="One JSON entry per line.")
@click.pass_obj
def ledger_tail(obj: Any, count: int, follow: bool, interval: float, as_json: bool) -> None:
    """Show the newest entries, each checked against its hash and linked to the one before."""
    from shared.ledger.chain import LedgerEntry

    size = obj.client.request("GET", "ledger")["size"]
    start = max(1, size - count + 1)
    previous: LedgerEntry | None = None
    try:
        while True:
            page = obj.client.request("GET", "ledger/entries", params={"from": start, "limit": 1000})["entries"]
            for document in page:
                entry = LedgerEntry.from_dict(document)
                if entry.computed_hash() != entry.entry_hash:
                    raise VerificationError(
                        "entry_hash_mismatch", f"ledger entry {entry.sequence} does not match its hash"
                    )
                if previous is not None and entry.prev_hash != previous.entry_hash:
                    raise VerificationError(
                        "prev_hash_mismatch",
                        f"ledger entry {entry.sequence} does not link to entry {previous.sequence}",
                    )
                click.echo(json.dumps(document) if as_json else _line(entry))
                previous, start = entry, entry.sequence + 1
            if not follow:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return


def _line(entry: Any) -> str:
    p = entry.payload
    subject = p.get("name") or p.get("scope") or p.get("id") or ""
    detail = p.get("address") or p.get("contract") or ""
    return f"{entry.sequence:>8}  {entry.time}  {entry.kind:<22} {subject:<24} {detail}  {entry.entry_hash[:16]}"


def signer_key_record(client: Any, entry: Any, connection: str | None) -> Any:
    """The key history of the key ``entry`` (the envelope's registration) established: replayed
    from storage with ``connection`` (nothing trusted), else from the entries the host returns
    for it (each hash-checked). ``None`` when ``entry`` establishes no key (verification then
    fails on the registration link)."""
    import os

    from shared.keys.history import record_from_entries, replay
    from shared.ledger.kinds import KEY_ESTABLISHING

    address = entry.payload.get("address")
    if entry.kind not in KEY_ESTABLISHING or not isinstance(address, str):
        return None
    if connection:
        from shared.ledger.chain import Ledger
        from shared.storage import table_client

        table = table_client(connection, f"{os.environ.get('FABRIC_TABLE_PREFIX', 'fabric')}ledger", create=False)
        return replay(Ledger(table)).get(address)
    answer = client.request("GET", f"ledger/keys/{address}")
    return record_from_entries(address, answer.get("entries", []))
