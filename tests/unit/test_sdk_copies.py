"""Packages carry their own copy of the Node SDK (it is measured with them, so it cannot be shared):
the Node sample's copy must be byte-identical to ``cryptlet_sdk/js/cryptlet.js``."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "cryptlet_sdk" / "js" / "cryptlet.js"
SLA = ROOT / "cryptlet_packages" / "sla_monitor"


def difference(copy: bytes, original: bytes) -> str:
    """Where ``copy`` first differs from ``original``: sizes, and the first differing line of each."""
    pairs = enumerate(zip(copy, original, strict=False))
    offset = next((i for i, (a, b) in pairs if a != b), min(len(copy), len(original)))
    line = copy[:offset].count(b"\n")

    def text(data: bytes) -> str:
        lines = data.splitlines()
        return repr(lines[line][:200]) if line < len(lines) else "(end of file)"

    return (
        f"{len(copy)} bytes vs {len(original)} bytes; first difference at byte {offset}, line {line + 1}:\n"
        f"  copy: {text(copy)}\n  sdk:  {text(original)}"
    )


def test_the_node_sample_ships_the_sdk_file_unchanged():
    copy, original = (SLA / "cryptlet.js").read_bytes(), SDK.read_bytes()
    assert copy == original, f"{(SLA / 'cryptlet.js').relative_to(ROOT)} is not {SDK.relative_to(ROOT)}: " + difference(
        copy, original
    )
