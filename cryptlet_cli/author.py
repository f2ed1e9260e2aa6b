"""Author tools: ``cryptlet init``, ``cryptlet simulate`` and ``cryptlet header``.

Thin commands over :mod:`shared.scaffold`, :mod:`shared.simulate` and :mod:`shared.header`;
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
@click.option("--runtime", type=click.Choice(["python", "exec"]), default="python", show_default=True,
              help="exec is not implemented yet.")
@click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder to create the package folder NAME in.")
def init(name: str, kind: str, runtime: str, parent: Path) -> None:
    """Scaffold a cryptlet package folder NAME (manifest, entry class, a passing test)."""
    from shared.scaffold import scaffold

    target = scaffold(name, kind=kind, runtime=runtime, parent=parent)
    click.echo(f"created {target}: cryptlet.json, main.py, test_{name}.py, pytest.ini")
    click.echo(f"try: cryptlet simulate {target} hello --args '{{\"name\": \"Ada\"}}'")


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("method")
@click.option("--args", "args_json", default="{}", show_default=True, help="Named arguments as a JSON object.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds the call may take.")
@click.option("-o", "--output", default=None, help="Write the envelope to this file instead of stdout.")
def simulate(path: Path, method: str, args_json: str, timeout: float, output: str | None) -> None:
    """Run METHOD of the package at PATH in a fresh process region, without storage or host.

    Prints the signed envelope; its registration is marked simulated (stream "simulation",
    sequence 0, zero entry hash), so it never verifies against a ledger.
    """
    from cryptlet_cli.main import emit
    from shared.simulate import simulate as run

    try:
        args = json.loads(args_json)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"--args is not valid JSON: {exc.msg}", field="--args") from None
    logger = logging.getLogger("cryptlet.simulate")
    if not logger.handlers:  # the cryptlet's fabric_host.log lines, on stderr
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("log %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    emit(run(path, method, args, timeout=timeout, logger=logger), output)


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
    from shared.header import HeaderSource, generate

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
