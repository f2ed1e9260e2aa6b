"""``cryptlet subscriber …``, ``cryptlet subscribe …``, ``cryptlet subscriptions …``: subscriber keys,
signed subscription requests (docs/events.md)."""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime
from typing import Any

import click

from cryptlet_cli.client import FabricClient
from shared.encoding import to_hex
from shared.envelope import address_of
from shared.errors import InvalidInput
from shared.events.subscribers import HEADER, sign_request

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)\Z")
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def _echo(document: Any) -> None:
    click.echo(json.dumps(document, indent=2))


def _json_option(text: str, option: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{option} is not valid JSON: {exc.msg}", field=option) from None


def read_key_file(path: str) -> bytes:
    """The private key of a key file written by ``cryptlet subscriber keygen`` (or a bare hex key)."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read().strip()
    if text.startswith("{"):
        try:
            text = str(json.loads(text)["private_key"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InvalidInput(f"{path} is not a subscriber key file (no private_key)", field="--key-file") from None
    body = text[2:] if text[:2] in ("0x", "0X") else text
    try:
        raw = bytes.fromhex(body)
    except ValueError:
        raise InvalidInput(f"{path} does not hold a hex private key", field="--key-file") from None
    if len(raw) != 32:
        raise InvalidInput(f"{path} does not hold a 32-byte private key", field="--key-file")
    return raw


def parse_deadline(text: str, now_ms: int) -> int:
    """``--deadline``: a duration (``90s``, ``30m``, ``12h``, ``7d``, ``500ms``) from now, or absolute unix ms."""
    text = text.strip()
    match = _DURATION.match(text)
    if match:
        return now_ms + int(float(match[1]) * _UNITS_MS[match[2]])
    if text.isdigit():
        return int(text)
    raise InvalidInput("--deadline is a duration (90s, 30m, 12h, 7d) or unix milliseconds", field="--deadline")


def _signed_post(obj: Any, path: str, key_file: str, name: str, action: str, body: Any) -> Any:
    content, signature = sign_request(read_key_file(key_file), name, action, body)
    return obj.client.request(
        "POST", path, content=content, headers={"content-type": "application/json", HEADER: signature}
    )


# -- cryptlet subscriber ----------------------------------------------------------------------------
@click.group()
def subscriber() -> None:
    """Subscriber keys and registration (who may subscribe)."""


@subscriber.command("keygen")
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Key file to create (mode 0600; refused if it exists).",
)
def keygen(output: str) -> None:
    """Make a new secp256k1 key in a new file; print its public key and address (never the private key)."""
    import coincurve

    key = coincurve.PrivateKey()
    public = key.public_key.format(compressed=False)
    document = {"public_key": to_hex(public), "address": address_of(public)}
    descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(json.dumps({"private_key": to_hex(key.secret), **document}, indent=2) + "\n")
    _echo({**document, "key_file": output})


@subscriber.command("register")
@click.argument("name")
@click.option("--public-key", default=None, help="The subscriber's secp256k1 public key (hex, 65 or 33 bytes).")
@click.option(
    "--key-file",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Take the public key from this key file instead.",
)
@click.option(
    "--admin-key",
    envvar="CRYPTLET_ADMIN_KEY",
    default=None,
    help="Admin (master) key (env CRYPTLET_ADMIN_KEY; default: --key).",
)
@click.pass_obj
def register_subscriber(
    obj: Any, name: str, public_key: str | None, key_file: str | None, admin_key: str | None
) -> None:
    """Register subscriber NAME with its public key (needs the admin key)."""
    if (public_key is None) == (key_file is None):
        raise InvalidInput("give exactly one of --public-key and --key-file", field="--public-key")
    if key_file is not None:
        import coincurve

        public_key = to_hex(coincurve.PrivateKey(read_key_file(key_file)).public_key.format(compressed=False))
    admin = FabricClient(obj.url, admin_key or obj.key)
    try:
        _echo(admin.request("POST", "subscribers", json={"name": name, "public_key": public_key}))
    finally:
        admin.close()


@subscriber.command("list")
@click.pass_obj
def list_subscribers(obj: Any) -> None:
    """Registered subscribers (JSON)."""
    _echo(obj.client.request("GET", "subscribers")["subscribers"])


# -- cryptlet subscribe -----------------------------------------------------------------------------
def _trigger(
    cron: str | None,
    tz: str | None,
    calendar: str | None,
    at: str | None,
    every: float | None,
    webhook: bool,
    once: bool,
    threshold: float | None,
    direction: str | None,
    hysteresis: float | None,
    deviation: float | None,
    heartbeat: float | None,
    now_ms: int,
) -> dict[str, Any]:
    chosen = [
        name
        for name, given in (
            ("--cron", cron is not None),
            ("--every", every is not None),
            ("--webhook", webhook),
            ("--once", once),
            ("--threshold", threshold is not None),
            ("--deviation", deviation is not None),
        )
        if given
    ]
    if len(chosen) != 1:
        raise InvalidInput(
            "give exactly one trigger: --cron, --every, --webhook, --once, --threshold or "
            f"--deviation (got {', '.join(chosen) or 'none'})",
            field="--trigger",
        )
    if cron is not None:
        if not tz:
            raise InvalidInput("--cron needs --tz (an IANA zone such as America/New_York)", field="--tz")
        trigger: dict[str, Any] = {"type": "cron", "expression": cron, "timezone": tz}
        if calendar:
            trigger["calendar"] = calendar
        if at:
            trigger["at"] = at
        return trigger
    if every is not None:
        start = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
        return {
            "type": "interval",
            "seconds": every,
            "start": start.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now_ms % 1000:03d}Z",
        }
    if threshold is not None:
        trigger = {"type": "threshold", "level": threshold}
        if direction:
            trigger["direction"] = direction
        if hysteresis is not None:
            trigger["hysteresis"] = hysteresis
        return trigger
    if deviation is not None:
        if heartbeat is None:
            raise InvalidInput("--deviation needs --heartbeat SECONDS", field="--heartbeat")
        return {"type": "deviation_heartbeat", "deviation_fraction": deviation, "heartbeat_s": heartbeat}
    return {"type": "webhook" if webhook else "once"}


@click.command()
@click.option("--as", "name", required=True, help="Subscriber name (registered).")
@click.option(
    "--key-file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The subscriber's key file (cryptlet subscriber keygen).",
)
@click.option("--cryptlet", required=True, help="Registered cryptlet to run.")
@click.option("--method", required=True, help="Its method.")
@click.option("--args", "args_json", default="{}", help="Named arguments as a JSON object.")
@click.option("--cron", default=None, help="Trigger: NCRONTAB expression (seconds first), with --tz.")
@click.option("--tz", default=None, help="IANA time zone of --cron.")
@click.option("--calendar", default=None, help="Exchange calendar of --cron (e.g. XNYS): only on session days.")
@click.option(
    "--at",
    type=click.Choice(["cron", "open", "close"]),
    default=None,
    help="With --calendar: fire at the session's open/close instead of the cron times.",
)
@click.option("--every", type=float, default=None, help="Trigger: every SECONDS (>= 1), starting now.")
@click.option("--webhook", is_flag=True, help="Trigger: each HMAC-signed webhook call (secret shown once).")
@click.option("--once", is_flag=True, help="Trigger: once, now (a long job).")
@click.option("--threshold", type=float, default=None, help="Trigger: the observed value crosses LEVEL.")
@click.option("--direction", type=click.Choice(["above", "below"]), default=None, help="Threshold direction.")
@click.option("--hysteresis", type=float, default=None, help="Threshold re-arm distance.")
@click.option(
    "--deviation", type=float, default=None, help="Trigger: relative deviation (e.g. 0.005), with --heartbeat."
)
@click.option("--heartbeat", type=float, default=None, help="Deviation trigger's heartbeat, seconds.")
@click.option("--observe", "observe_field", default=None, help="Observation triggers: payload member to watch.")
@click.option("--observe-every", type=float, default=None, help="Observation triggers: poll every SECONDS.")
@click.option("--callback", default=None, help="Target: POST each signed delivery to this URL.")
@click.option("--history", is_flag=True, help="Target: the history table only.")
@click.option("--deadline", required=True, help="Until when: a duration (30m, 12h, 7d) or unix ms.")
@click.option(
    "--missed",
    type=click.Choice(["skip", "fire_once", "fire_all"]),
    default=None,
    help="Missed-fire policy (default fire_once).",
)
@click.pass_obj
def subscribe(
    obj: Any,
    name: str,
    key_file: str,
    cryptlet: str,
    method: str,
    args_json: str,
    cron: str | None,
    tz: str | None,
    calendar: str | None,
    at: str | None,
    every: float | None,
    webhook: bool,
    once: bool,
    threshold: float | None,
    direction: str | None,
    hysteresis: float | None,
    deviation: float | None,
    heartbeat: float | None,
    observe_field: str | None,
    observe_every: float | None,
    callback: str | None,
    history: bool,
    deadline: str,
    missed: str | None,
) -> None:
    """Subscribe as NAME: run CRYPTLET.METHOD on a trigger and deliver each signed result (a signed request)."""
    now_ms = int(time.time() * 1000)
    if (callback is None) == (not history):
        raise InvalidInput("give exactly one target: --callback URL or --history", field="--callback")
    spec: dict[str, Any] = {
        "cryptlet": cryptlet,
        "method": method,
        "args": _json_option(args_json, "--args"),
        "trigger": _trigger(
            cron, tz, calendar, at, every, webhook, once, threshold, direction, hysteresis, deviation, heartbeat, now_ms
        ),
        "target": {"type": "callback", "url": callback} if callback else {"type": "history"},
        "deadline_ms": parse_deadline(deadline, now_ms),
    }
    if observe_field is not None or observe_every is not None:
        spec["observe"] = {"field": observe_field, "every_s": observe_every}
    if missed:
        spec["missed"] = {"mode": missed}
    _echo(_signed_post(obj, "subscriptions", key_file, name, "subscribe", spec))


# -- cryptlet subscriptions -------------------------------------------------------------------------
@click.group()
def subscriptions() -> None:
    """List, show and cancel subscriptions."""


@subscriptions.command("list")
@click.option("--as", "name", default=None, help="Only this subscriber's.")
@click.option("--status", type=click.Choice(["active", "cancelled", "expired", "done"]), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def list_subscriptions(obj: Any, name: str | None, status: str | None, as_json: bool) -> None:
    """Subscriptions (optionally one subscriber's / in one status)."""
    params = {k: v for k, v in (("subscriber", name), ("status", status)) if v}
    found = obj.client.request("GET", "subscriptions", params=params)["subscriptions"]
    if as_json:
        _echo(found)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "subscriber", "cryptlet.method", "trigger", "target", "status", "deadline (UTC)")
    for s in found:
        deadline = datetime.fromtimestamp(s["deadline_ms"] / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            s["id"],
            s["subscriber"],
            f"{s['cryptlet']}.{s['method']}",
            s["trigger"].get("type", "?"),
            s["target"].get("type", "?"),
            s["status"],
            deadline,
        )
    Console(width=200).print(table)


@subscriptions.command("show")
@click.argument("subscription_id", metavar="ID")
@click.pass_obj
def show_subscription(obj: Any, subscription_id: str) -> None:
    """One subscription (JSON)."""
    _echo(obj.client.request("GET", f"subscriptions/{subscription_id}"))


@subscriptions.command("cancel")
@click.argument("subscription_id", metavar="ID")
@click.option("--as", "name", required=True, help="Subscriber name (the subscription's owner).")
@click.option(
    "--key-file", required=True, type=click.Path(exists=True, dir_okay=False), help="The subscriber's key file."
)
@click.pass_obj
def cancel_subscription(obj: Any, subscription_id: str, name: str, key_file: str) -> None:
    """Cancel subscription ID (a signed request by its subscriber)."""
    _echo(
        _signed_post(
            obj, f"subscriptions/{subscription_id}/cancel", key_file, name, "cancel", {"subscription": subscription_id}
        )
    )


COMMANDS = (subscriber, subscribe, subscriptions)
