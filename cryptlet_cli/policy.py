"""``cryptlet policy get|set``: a cryptlet's admin policy and effective settings."""

from __future__ import annotations

import json
from typing import Any

import click

from cryptlet_cli.client import FabricClient


@click.group()
def policy() -> None:
    """Per-cryptlet policy (overrides the manifest) and the effective settings."""


@policy.command("get")
@click.argument("name")
@click.pass_obj
def get_policy(obj: Any, name: str) -> None:
    """Print NAME's manifest settings, policy and effective settings (JSON)."""
    click.echo(json.dumps(obj.client.request("GET", f"cryptlets/{name}/policy"), indent=2))


@policy.command("set")
@click.argument("name")
@click.option("--max-instances", type=int, default=None, help="Most concurrent regions.")
@click.option("--min-instances", type=int, default=None, help="Warm regions started when the policy is set.")
@click.option("--egress", multiple=True, help="Host pattern the cryptlet may fetch from (repeat; docs/egress.md).")
@click.option("--no-egress", is_flag=True, help="Allow no egress at all (an empty list).")
@click.option("--isolation/--no-isolation", default=None, help="Require (or not) an isolated region.")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True, max=300),
    default=None,
    help="Per-call time limit of the cryptlet's regions, seconds.",
)
@click.option("--note", default=None, help="Why; recorded in the ledger entry.")
@click.option("--replace", is_flag=True, help="Start from an empty policy instead of the current one.")
@click.option(
    "--admin-key",
    envvar="CRYPTLET_ADMIN_KEY",
    default=None,
    help="Admin (master) key (env CRYPTLET_ADMIN_KEY; default: --key).",
)
@click.pass_obj
def set_policy(
    obj: Any,
    name: str,
    max_instances: int | None,
    min_instances: int | None,
    egress: tuple[str, ...],
    no_egress: bool,
    isolation: bool | None,
    timeout_s: float | None,
    note: str | None,
    replace: bool,
    admin_key: str | None,
) -> None:
    """Set NAME's policy: the given options change the current policy (all of it with --replace)."""
    body: dict[str, Any] = {} if replace else dict(obj.client.request("GET", f"cryptlets/{name}/policy")["policy"])
    body.pop("note", None)
    given = {
        "max_instances": max_instances,
        "min_instances": min_instances,
        "isolation": isolation,
        "note": note,
        "timeout_s": timeout_s,
        "egress": [] if no_egress else (list(egress) if egress else None),
    }
    body.update({k: v for k, v in given.items() if v is not None})
    admin = FabricClient(obj.url, admin_key or obj.key)
    try:
        result = admin.request("PUT", f"cryptlets/{name}/policy", json=body)
    finally:
        admin.close()
    click.echo(
        json.dumps({"policy": result["policy"], "effective": result["effective"], "ledger": result["ledger"]}, indent=2)
    )
