"""``cryptlet``: the fabric's command line.

Errors print one line to stderr and exit 1 (usage errors exit 2); nothing prints a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from cryptlet_cli.author import header, init, simulate
from cryptlet_cli.client import FabricClient
from cryptlet_cli.history import history
from cryptlet_cli.ledger import ledger, signer_key_record
from cryptlet_cli.output import emit
from cryptlet_cli.policy import policy
from cryptlet_cli.subscriptions import COMMANDS as SUBSCRIPTION_COMMANDS
from shared.errors import FabricError, InvalidInput, VerificationError
from shared.redact import redact_text

DEFAULT_URL = "http://127.0.0.1:7071"


class Context:
    def __init__(self, url: str, key: str | None) -> None:
        self.url, self.key = url, key
        self._client: FabricClient | None = None

    @property
    def client(self) -> FabricClient:
        if self._client is None:
            self._client = FabricClient(self.url, self.key)
        return self._client


def fail(message: str) -> None:
    click.echo(f"error: {redact_text(message)}", err=True)  # no key, signature or password in the line
    sys.exit(1)


class FabricGroup(click.Group):
    """Runs commands so that a :class:`FabricError` becomes one line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VerificationError as exc:
            fail(exc.diagnostics())
        except FabricError as exc:
            fail(exc.diagnostics())
        except OSError as exc:
            fail(f"{exc.strerror or exc}: {exc.filename}" if getattr(exc, "filename", None) else str(exc))


@click.group(cls=FabricGroup)
@click.option(
    "--url", envvar="CRYPTLET_URL", default=DEFAULT_URL, show_default=True, help="Fabric base URL (env CRYPTLET_URL)."
)
@click.option(
    "--key", envvar="CRYPTLET_FUNCTION_KEY", default=None, help="Function key for the API (env CRYPTLET_FUNCTION_KEY)."
)
@click.pass_context
def cli(ctx: click.Context, url: str, key: str | None) -> None:
    """Register, invoke and verify cryptlets; audit the registration ledger."""
    ctx.obj = Context(url, key)


@cli.command()
@click.argument("package")
@click.pass_obj
def register(obj: Context, package: str) -> None:
    """Register PACKAGE: a local folder or .zip is uploaded; otherwise a folder name on the host."""
    from pathlib import Path

    from shared.packages.upload import zip_package

    local = Path(package)
    if local.is_dir():
        emit(obj.client.register_zip(zip_package(local)))
    elif local.is_file() and local.suffix.lower() == ".zip":
        emit(obj.client.register_zip(local.read_bytes()))
    elif os.sep in package or package.endswith(".zip"):
        raise InvalidInput(f"no package folder or .zip file at {package}", field="PACKAGE")
    else:
        emit(obj.client.register(package))


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def list_(obj: Context, as_json: bool) -> None:
    """List registered cryptlets."""
    cryptlets = obj.client.list()
    if as_json:
        emit(cryptlets)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "version", "kind", "address", "digest", "ledger #")
    for c in cryptlets:
        table.add_row(
            c["name"], c["version"], c["kind"], c["address"], c["digest"][:18] + "...", str(c["ledger"]["sequence"])
        )
    Console().print(table)


@cli.command()
@click.argument("name")
@click.argument("method")
@click.option("--args", "args_json", default="{}", help="Named arguments as a JSON object.")
@click.option("--request-id", default=None, help="32-byte hex request id (default: random).")
@click.option("-o", "--output", default=None, help="Write the envelope to this file instead of stdout.")
@click.pass_obj
def invoke(obj: Context, name: str, method: str, args_json: str, request_id: str | None, output: str | None) -> None:
    """Invoke METHOD of cryptlet NAME; print the signed envelope."""
    try:
        args = json.loads(args_json)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"--args is not valid JSON: {exc.msg}", field="--args") from None
    emit(obj.client.invoke(name, method, args, request_id), output)


@cli.command()
@click.argument("envelope", type=click.File("r", encoding="utf-8"), default="-")
@click.option(
    "--allow-software-evidence",
    is_flag=True,
    help="Accept the process provider's software/debug evidence (development only).",
)
@click.option(
    "--platform-key",
    envvar="CRYPTLET_PLATFORM_KEY",
    default=None,
    help="Pin the Ed25519 platform key (hex) that must sign software evidence "
    "(env CRYPTLET_PLATFORM_KEY; default: the key GET /api/attestation reports).",
)
@click.option(
    "--connection",
    default=None,
    help="Replay the signer's key history (rotation, revocation) from this storage connection "
    "string instead of asking the host.",
)
@click.option(
    "--package",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Also measure this package folder (with the registration's digest algorithm) and require the "
    "registered digest.",
)
@click.pass_obj
def verify(
    obj: Context,
    envelope,
    allow_software_evidence: bool,
    platform_key: str | None,
    connection: str | None,
    package: Path | None,
) -> None:
    """Verify an ENVELOPE file (or stdin): envelope -> key -> evidence -> digest."""
    from shared.attestation.software import SoftwarePolicy
    from shared.errors import ConfigurationError
    from shared.verification import verify_against_registration

    try:
        document = json.load(envelope)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"envelope is not valid JSON: {exc.msg}", field="$") from None
    registration = document.get("registration") if isinstance(document, dict) else None
    sequence = registration.get("sequence") if isinstance(registration, dict) else None
    if not isinstance(sequence, int) or sequence < 1:
        raise InvalidInput("envelope has no registration sequence", field="registration.sequence")
    entry = obj.client.ledger_entry(sequence)
    signer_key = signer_key_record(obj.client, entry, connection)  # revoked? rotated out? retired?
    policy = SoftwarePolicy()  # hardware-only: refuses software evidence with reason software_evidence
    if allow_software_evidence:
        key = platform_key or obj.client.attestation().get("platform_key", "")
        try:
            policy = SoftwarePolicy(allow_software=True, platform_keys=frozenset({key}))
        except ConfigurationError:
            raise InvalidInput(
                "--platform-key must be a 32-byte Ed25519 public key in hex", field="--platform-key"
            ) from None
    try:
        verified = verify_against_registration(document, entry, evidence_policy=policy, key=signer_key, package=package)
    except VerificationError as exc:
        if exc.reason != "software_evidence":
            raise
        raise VerificationError(
            exc.reason, f"{exc.detail}; pass --allow-software-evidence to accept it (development only)"
        ) from None
    pinned = (
        ""
        if not allow_software_evidence
        else (" (platform key pinned)" if platform_key else " (platform key as reported by the host)")
    )
    click.echo(verified.summary() + pinned)


cli.add_command(ledger)
cli.add_command(policy)
cli.add_command(history)
for _command in (init, simulate, header):
    cli.add_command(_command)
for _command in SUBSCRIPTION_COMMANDS:
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="cryptlet")


if __name__ == "__main__":
    main()
