"""Regenerate tests/vectors/package-digest.json: package digests under ``cfpkg-v2`` and ``cfpkg-v1``.

    .venv/bin/python tests/vectors/make_package_digest_vectors.py

The encodings are written out here from the specification in docs/container-protocol.md, with the
standard library only (not with shared.packages.digest, which tests/unit/packages/test_digest.py
checks against this file).
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

OUT = Path(__file__).with_name("package-digest.json")

CASES = [
    {
        "label": "three files: a manifest, a file in a folder, an empty file with a non-ASCII name",
        "files": {"cryptlet.json": '{"name":"vector"}\n', "lib/util.py": "X = 1\n", "é.txt": ""},
    },
    {
        "label": "the v1 collision, package A: files x and y",
        "files": {"x": "1", "y": "2"},
    },
    {
        "label": "the v1 collision, package B: one file whose name holds a newline (refused when measured)",
        "files": {"x\n" + hashlib.sha256(b"2").hexdigest() + "  y": "1"},
    },
]


def v2_encoding(files: dict[str, bytes]) -> bytes:
    paths = sorted(files, key=lambda p: p.encode("utf-8"))
    out = b"cfpkg-v2\x00" + struct.pack(">I", len(paths))
    for path in paths:
        name = path.encode("utf-8")
        out += struct.pack(">I", len(name)) + name + hashlib.sha256(files[path]).digest()
    return out


def v1_listing(files: dict[str, bytes]) -> bytes:
    paths = sorted(files, key=lambda p: p.encode("utf-8"))
    return "".join(f"{hashlib.sha256(files[p]).hexdigest()}  {p}\n" for p in paths).encode("utf-8")


def main() -> None:
    vectors = []
    for case in CASES:
        files = {path: text.encode("utf-8") for path, text in case["files"].items()}
        v2, v1 = v2_encoding(files), v1_listing(files)
        vectors.append(
            {
                "label": case["label"],
                "files": case["files"],
                "cfpkg-v2": {"encoding": v2.hex(), "digest": "0x" + hashlib.sha256(v2).hexdigest()},
                "cfpkg-v1": {"listing": v1.decode("utf-8"), "digest": "0x" + hashlib.sha256(v1).hexdigest()},
            }
        )
    OUT.write_text(json.dumps(vectors, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
