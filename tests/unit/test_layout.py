"""The house keeps its rooms: the core's subpackages exist, few modules sit loose in shared/, no class
grows past 250 lines, and the README stays an on-ramp."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"
ROOMS = ("ledger", "keys", "events", "packages", "isolation", "attestation", "host")


def test_the_core_has_its_subpackages():
    for room in ROOMS:
        assert (SHARED / room / "__init__.py").is_file(), f"shared/{room}/ is missing"


def test_at_most_twelve_modules_directly_in_shared():
    loose = sorted(p.name for p in SHARED.glob("*.py"))
    assert len(loose) <= 12, loose


def test_no_class_in_shared_is_longer_than_250_lines():
    long = []
    for path in SHARED.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                length = node.end_lineno - node.lineno + 1
                if length > 250:
                    long.append(f"{path.relative_to(ROOT)}:{node.name} ({length} lines)")
    assert not long, long


def test_the_readme_is_an_on_ramp():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250
