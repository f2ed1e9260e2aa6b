"""Package digest: the cryptlet's measurement (our MRENCLAVE).

The digest is SHA-256 over a listing of every regular file in the package folder, one line
per file in byte order of its POSIX relative path::

    <sha256 of file content, hex>  <relative/path>\\n

(the format of ``sha256sum``), so it can be reproduced with standard tools::

    (cd PACKAGE && find . -type f ! -path '*/__pycache__/*' -printf '%P\\n' | LC_ALL=C sort \\
        | xargs -d '\\n' sha256sum) | sha256sum

``__pycache__`` folders are excluded: regions run with a private ``pycache_prefix`` and never
read them. Symbolic links and other special files are refused, so what is measured is what
runs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from shared.errors import InvalidInput

EXCLUDED_DIRS = frozenset({"__pycache__"})


def package_files(package_dir: Path) -> list[str]:
    """Relative POSIX paths of the files that make up a package, in digest order."""
    root = Path(package_dir)
    if not root.is_dir():
        raise InvalidInput(f"package folder {root.name!r} does not exist", field="package")
    paths: list[str] = []
    for current, dirs, files in os.walk(root, followlinks=False):
        base = Path(current)
        for name in list(dirs):
            if (base / name).is_symlink():
                raise InvalidInput(
                    f"package contains a symbolic link: {(base / name).relative_to(root)}", field="package"
                )
        dirs[:] = [d for d in dirs if d not in EXCLUDED_DIRS]
        for name in files:
            path = base / name
            if path.is_symlink() or not path.is_file():
                raise InvalidInput(
                    f"package contains a special file or link: {path.relative_to(root)}", field="package"
                )
            paths.append(path.relative_to(root).as_posix())
    return sorted(paths, key=lambda p: p.encode("utf-8"))


def package_listing(package_dir: Path) -> bytes:
    """The ``sha256sum``-style listing that the digest is taken over."""
    root = Path(package_dir)
    lines = []
    for rel in package_files(root):
        lines.append(f"{hashlib.sha256((root / rel).read_bytes()).hexdigest()}  {rel}\n")
    return "".join(lines).encode("utf-8")


def package_digest(package_dir: Path) -> bytes:
    """The 32-byte measurement of a package folder."""
    return hashlib.sha256(package_listing(package_dir)).digest()
