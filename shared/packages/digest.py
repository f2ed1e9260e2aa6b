"""Package digest: the cryptlet's measurement (our MRENCLAVE).

A package is measured as the list of its regular files, each a (relative POSIX path, SHA-256 of
its content) pair, in byte order of the UTF-8 path. ``__pycache__`` folders are excluded (regions
run with a private ``pycache_prefix`` and never read them); symbolic links and other special files
are refused, and so are file names outside :mod:`shared.packages.names` (control characters,
backslashes, ...), so what is measured is what runs. File modes are not measured.

The digest is SHA-256 over an encoding of that list, named by its algorithm identifier, which the
ledger records as ``digest_alg`` in ``cryptlet.registered`` and ``cryptlet.key_rotated``:

``cfpkg-v2`` (new registrations): an unambiguous, length-prefixed encoding::

    "cfpkg-v2" 0x00 || u32be(n) || entry_1 || ... || entry_n
    entry_i = u32be(len(path_i)) || path_i || SHA-256(content_i)     (path_i: UTF-8 bytes)

``cfpkg-v1`` (registrations made before ``digest_alg`` was recorded; an entry without the field is
``cfpkg-v1``): SHA-256 over the ``sha256sum`` listing, one ``<hex sha256>  <path>\\n`` line per
file. It is only unambiguous because names with a newline are refused: without that check one file
named ``"x\\n<sha256 of y>  y"`` lists like the two files ``x`` and ``y``.

The v2 encoding begins with ``c f p`` and a v1 listing with 64 hex digits, so no v2 encoding is a
v1 listing: a digest identifies its algorithm too, and a region given the registered digest
accepts its package if it measures that digest under either algorithm
(:meth:`Measurement.algorithm_of`). Format and test vector: ``docs/container-protocol.md``.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from shared.errors import InvalidInput
from shared.packages.names import PackageRejected, check_path, printable

EXCLUDED_DIRS = frozenset({"__pycache__"})
DIGEST_V1 = "cfpkg-v1"
DIGEST_V2 = "cfpkg-v2"
#: The algorithm of new registrations.
DIGEST_ALG = DIGEST_V2
#: Every algorithm a region or verifier accepts, newest first.
DIGEST_ALGS = (DIGEST_V2, DIGEST_V1)
V2_PREFIX = b"cfpkg-v2\x00"


@dataclass(frozen=True)
class Measurement:
    """What a package is measured as: ``(path, SHA-256 of content)`` per file, in digest order."""

    files: tuple[tuple[str, bytes], ...]

    def encoding(self, alg: str = DIGEST_ALG) -> bytes:
        """The bytes the digest of ``alg`` is taken over."""
        if alg == DIGEST_V2:
            parts = [V2_PREFIX, struct.pack(">I", len(self.files))]
            for path, content_hash in self.files:
                name = path.encode("utf-8")
                parts += [struct.pack(">I", len(name)), name, content_hash]
            return b"".join(parts)
        if alg == DIGEST_V1:
            return "".join(f"{content_hash.hex()}  {path}\n" for path, content_hash in self.files).encode("utf-8")
        raise InvalidInput(
            f"unknown package digest algorithm {alg!r}; one of {', '.join(DIGEST_ALGS)}", field="digest_alg"
        )

    def digest(self, alg: str = DIGEST_ALG) -> bytes:
        """The 32-byte digest under ``alg``."""
        return hashlib.sha256(self.encoding(alg)).digest()

    def algorithm_of(self, digest: bytes) -> str | None:
        """The algorithm under which this package measures ``digest``, or ``None``."""
        return next((alg for alg in DIGEST_ALGS if self.digest(alg) == digest), None)


def check_alg(alg: object) -> str:
    """``alg`` if it is a known digest algorithm, else :class:`InvalidInput` naming ``digest_alg``."""
    if alg not in DIGEST_ALGS:
        raise InvalidInput(
            f"unknown package digest algorithm {alg!r}; one of {', '.join(DIGEST_ALGS)}", field="digest_alg"
        )
    return str(alg)


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
                raise PackageRejected(
                    "symlink",
                    f"package contains a symbolic link: {printable((base / name).relative_to(root).as_posix())!r}",
                    entry=(base / name).relative_to(root).as_posix(),
                )
        dirs[:] = [d for d in dirs if d not in EXCLUDED_DIRS]
        for name in files:
            path = base / name
            rel = path.relative_to(root).as_posix()
            check_path(rel)
            if path.is_symlink() or not path.is_file():
                raise PackageRejected(
                    "special_file", f"package contains a special file or link: {printable(rel)!r}", entry=rel
                )
            paths.append(rel)
    return sorted(paths, key=lambda p: p.encode("utf-8"))


def measure(package_dir: Path) -> Measurement:
    """Measure a package folder (refusing links, special files and bad names)."""
    root = Path(package_dir)
    files = []
    for rel in package_files(root):
        with os.fdopen(os.open(root / rel, os.O_RDONLY | os.O_NOFOLLOW), "rb") as file:
            files.append((rel, hashlib.file_digest(file, "sha256").digest()))
    return Measurement(tuple(files))


def package_listing(package_dir: Path) -> bytes:
    """The ``sha256sum``-style listing that the ``cfpkg-v1`` digest is taken over."""
    return measure(package_dir).encoding(DIGEST_V1)


def package_digest(package_dir: Path, alg: str = DIGEST_ALG) -> bytes:
    """The 32-byte measurement of a package folder under ``alg`` (default: that of new registrations)."""
    return measure(package_dir).digest(alg)
