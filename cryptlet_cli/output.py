"""How the CLI writes documents: JSON to stdout, or to a file with ``-o``."""

from __future__ import annotations

import json
from typing import Any

import click


def emit(document: Any, output: str | None = None) -> None:
    """Write ``document`` as indented JSON to ``output`` (a path; ``-`` or none: stdout)."""
    text = json.dumps(document, indent=2)
    if output and output != "-":
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    else:
        click.echo(text)
