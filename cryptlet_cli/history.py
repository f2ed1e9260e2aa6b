"""``cryptlet history replay SUBSCRIPTION``: re-verify every recorded delivery of a subscription.

Reads ``GET /api/subscriptions/{id}/history`` page by page and checks, for every row: sequences
strictly increasing and equal to the fire's; the envelope parses, its payload hash matches, its
EIP-712 signature recovers a key the cryptlet has held (``GET /api/cryptlets/{name}/keys``); a
scheduled or webhook fire's envelope answers the fire's deterministic request id; a delivered row's
fabric signature recovers the delivery address (``GET /api/attestation``) over the body that was
delivered. One line per problem on stderr, exit 1 on any; else a one-line summary.
"""

from __future__ import annotations

import sys

import click

from shared.encoding import from_hex
from shared.envelope import Envelope, verify_envelope
from shared.errors import FabricError
from shared.events.delivery import signer_of

OBSERVATION_REASONS = {"threshold_crossed", "deviation", "heartbeat", "first"}


@click.group()
def history() -> None:
    """Delivery history of event subscriptions."""


@history.command()
@click.argument("subscription")
@click.pass_obj
def replay(obj, subscription: str) -> None:
    """Re-verify every recorded delivery's signatures and the sequence order of SUBSCRIPTION."""
    import hashlib

    client = obj.client
    rows: list[dict] = []
    start = 0
    while True:
        page = client.request("GET", f"subscriptions/{subscription}/history", params={"from": start, "limit": 1000})
        rows.extend(page["deliveries"])
        if "next" not in page:
            break
        start = page["next"]
    delivery_address = client.attestation().get("delivery_address")
    keys: dict[str, set[str]] = {}
    problems: list[str] = []
    previous = -1
    for row in rows:
        sequence = row["sequence"]
        where = f"sequence {sequence}"
        if sequence <= previous:
            problems.append(f"{where}: out of order (after {previous})")
        previous = sequence
        fire = row.get("fire") or {}
        if fire.get("sequence") != sequence or fire.get("subscription") != subscription:
            problems.append(f"{where}: the fire names {fire.get('subscription')}/{fire.get('sequence')}")
        envelope = row.get("envelope")
        if envelope is not None:
            try:
                parsed = Envelope.from_dict({k: v for k, v in envelope.items() if k != "events"})
                if parsed.name not in keys:
                    listed = client.request("GET", f"cryptlets/{parsed.name}/keys")
                    keys[parsed.name] = {k["address"].lower() for k in listed.get("keys", [])}
                signer = verify_envelope(parsed)
                if signer.lower() not in keys[parsed.name]:
                    problems.append(f"{where}: envelope signed by {signer}, not a key of {parsed.name}")
                if row.get("payload_hash") and row["payload_hash"] != envelope.get("payload_hash"):
                    problems.append(f"{where}: recorded payload hash differs from the envelope's")
                if fire.get("reason") not in OBSERVATION_REASONS:
                    expected = hashlib.sha256(f"{subscription}:{sequence}".encode()).digest()
                    if parsed.request_id != expected:
                        problems.append(f"{where}: envelope answers another request id")
            except FabricError as exc:
                problems.append(f"{where}: envelope {exc.diagnostics()}")
        elif row.get("result") == "ok":
            problems.append(f"{where}: result ok without an envelope")
        if row.get("status") == "delivered" and row.get("delivery_signature") and delivery_address:
            body = {
                "subscription": subscription,
                "sequence": sequence,
                "fire": fire,
                "status": row.get("result"),
                "envelope": envelope,
                "error": row.get("error"),
                "delivered_ms": row.get("delivered_ms"),
            }
            try:
                if signer_of(body, from_hex(row["delivery_signature"], length=65)).lower() != delivery_address.lower():
                    problems.append(f"{where}: delivery signature is not the fabric's")
            except FabricError as exc:
                problems.append(f"{where}: delivery signature {exc.diagnostics()}")
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        sys.exit(1)
    delivered = sum(1 for r in rows if r.get("status") == "delivered")
    click.echo(
        f"{subscription}: {len(rows)} deliveries ({delivered} delivered), every signature and the order verified"
    )
