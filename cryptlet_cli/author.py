"""Author tools: ``cryptlet init``, ``cryptlet simulate`` and ``cryptlet header``.

Thin commands over :mod:`cryptlet_cli.scaffold`, :mod:`cryptlet_cli.simulate` and :mod:`cryptlet_cli.header`;
errors are :class:`~shared.errors.FabricError` (one line, exit 1, via the CLI's group).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from shared.errors import InvalidInput


@click.command()
@click.argument("name")
@click.option("--kind", type=click.Choice(["utility", "contract"]), default="utility", show_default=True)
@click.option(
    "--runtime",
    type=click.Choice(["python", "exec"]),
    default="python",
    show_default=True,
    help="exec: a Node.js program speaking the container protocol.",
)
@click.option(
    "--dir",
    "parent",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder to create the package folder NAME in.",
)
def init(name: str, kind: str, runtime: str, parent: Path) -> None:
    """Scaffold a cryptlet package folder NAME (manifest, entry class, a passing test)."""
    from cryptlet_cli.scaffold import scaffold

    target = scaffold(name, kind=kind, runtime=runtime, parent=parent)
    files = ", ".join(sorted(p.name for p in target.iterdir()))
    click.echo(f"created {target}: {files}")
    click.echo(f"try: cryptlet simulate {target} hello Ada")


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("method")
@click.argument("values", nargs=-1, metavar="[ARGS]...")
@click.option("--args", "args_json", default=None, help="Named arguments as a JSON object (instead of ARGS).")
@click.option("--state", "state_json", default=None, help="Contract kind: the state to run over (JSON object).")
@click.option("--egress", multiple=True, help="Host pattern fetch may reach (repeat; default: the manifest's).")
@click.option("--timeout", type=float, default=None, help="Seconds the call may take (default: the manifest's or 10).")
@click.option("-o", "--output", default=None, help="Write the envelope to this file instead of stdout.")
def simulate(
    path: Path,
    method: str,
    values: tuple[str, ...],
    args_json: str | None,
    state_json: str | None,
    egress: tuple[str, ...],
    timeout: float | None,
    output: str | None,
) -> None:
    """Run METHOD of the package at PATH in a fresh process region, without storage or host.

    ARGS are the method's arguments in declared order (or NAME=VALUE); each is read as JSON when
    it parses and as a string otherwise. Prints the signed envelope (with ``events`` and, for a
    contract, the new ``state``); its registration is marked simulated (stream "simulation",
    sequence 0, zero entry hash), so it never verifies against a ledger.
    """
    from cryptlet_cli.output import emit
    from cryptlet_cli.simulate import positional_args
    from cryptlet_cli.simulate import simulate as run
    from shared.packages.manifest import load_manifest

    if args_json is not None and values:
        raise InvalidInput("give the arguments either as ARGS or as --args, not both", field="--args")
    args = _json_option(args_json, "--args") if args_json is not None else {}
    if values:
        manifest = load_manifest(path)
        method_spec = manifest.methods.get(method)
        if method_spec is None:
            raise InvalidInput(
                f"{manifest.name} has no method {method!r} (methods: {', '.join(sorted(manifest.methods))})",
                field="METHOD",
            )
        args = positional_args(method_spec.get("inputs") or [], values)
    state = _json_option(state_json, "--state") if state_json is not None else None
    logger = logging.getLogger("cryptlet.simulate")
    if not logger.handlers:  # the cryptlet's log call-outs, on stderr
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("log %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    emit(
        run(path, method, args, timeout=timeout, logger=logger, egress=list(egress) if egress else None, state=state),
        output,
    )


def _json_option(text: str, option: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{option} is not valid JSON: {exc.msg}", field=option) from None


@click.command()
@click.argument("target")
@click.option("--format", "fmt", type=click.Choice(["solidity", "abi"]), default="solidity", show_default=True)
@click.option("-o", "--output", default=None, help="Write the header to this file instead of stdout.")
@click.pass_obj
def header(obj: Any, target: str, fmt: str, output: str | None) -> None:
    """Header file of TARGET: a package folder (PATH) or a registered cryptlet NAME (asks the fabric).

    solidity: interface I<Name>Cryptlet plus a library of constants (address, digest, EIP-712
    envelope type hash); abi: the interface's JSON ABI.
    """
    from cryptlet_cli.header import HeaderSource, generate

    if os.sep in target or target in (".", "..") or Path(target).is_dir():
        if not Path(target).is_dir():
            raise InvalidInput(f"{target} is not a package folder", field="TARGET")
        source = HeaderSource.from_package(Path(target))
    else:
        source = HeaderSource.from_registration(obj.client.get(target))
    text = generate(source, fmt)
    if output and output != "-":
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)
