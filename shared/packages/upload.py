"""Uploaded cryptlet packages: check a zip archive and extract it safely into a fabric-owned folder.

An upload is a zip whose root holds ``cryptlet.json`` (no enclosing folder). It is refused, with a
problem naming the ``reason`` and the offending ``entry``, when it is not a zip (``not_a_zip``), is
larger than the limit compressed (``too_large``) or uncompressed (``too_large_uncompressed``), has
too many entries (``too_many_files``), or holds an entry that climbs out of the package
(``path_traversal``), is absolute (``absolute_path``), is a symbolic link (``symlink``) or another
non-regular file (``special_file``), repeats a name (``duplicate_entry``), is encrypted or uses an
unsupported compression (``unsupported_entry``), has a malformed name (``bad_name``: empty parts,
control characters, backslashes, leading or trailing spaces, see :mod:`shared.packages.names`) or
an over-long one (``name_too_long``); or when ``cryptlet.json`` is missing (``missing_manifest``).

An accepted archive is extracted into ``<uploads>/.tmp-<random>`` and measured
(:func:`stage_package`); :meth:`StagedUpload.commit` then moves it to ``<uploads>/<digest hex>``,
so the folder name is the measurement and identical uploads share it. Registration commits only
once it holds the cryptlet's name (:mod:`shared.host.registry`). The zip's declared sizes are not
trusted: bytes are counted while they are written.
"""

from __future__ import annotations

import errno
import io
import os
import re
import secrets
import shutil
import stat
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from shared.errors import FabricError, InvalidInput
from shared.packages.digest import measure as measure_package
from shared.packages.digest import package_files
from shared.packages.names import PackageRejected, PackageTooLarge, check_path, printable

__all__ = ["PackageRejected", "PackageTooLarge", "StagedUpload", "check_archive", "extract_package", "stage_package"]

UPLOADS_FOLDER = ".uploads"
#: The package reference of an uploaded package, relative to the packages folder.
UPLOADED_PACKAGE = re.compile(r"\.uploads/[0-9a-f]{64}\Z")
MAX_FILES = 256
UNCOMPRESSED_FACTOR = 4  # total uncompressed size may be this many times the compressed limit
_CHUNK = 64 * 1024
_DRIVE = re.compile(r"[A-Za-z]:")
_BAD_NAME_ERRORS = (errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ)


def check_archive(data: bytes, max_bytes: int) -> list[tuple[zipfile.ZipInfo, str, bool]]:
    """Validate the archive's directory; return ``(info, normalised path, is_dir)`` per entry."""
    if len(data) > max_bytes:
        raise PackageTooLarge("too_large", f"package archive is {len(data)} bytes; the limit is {max_bytes}")
    try:
        infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise PackageRejected("not_a_zip", f"package body is not a zip archive ({exc})") from None
    if len(infos) > MAX_FILES:
        raise PackageTooLarge("too_many_files", f"package archive has {len(infos)} entries; the limit is {MAX_FILES}")
    entries: list[tuple[zipfile.ZipInfo, str, bool]] = []
    seen: set[str] = set()
    for info in infos:
        path, is_dir = _entry_path(info)
        if path in seen or path.casefold() in seen:
            raise PackageRejected(
                "duplicate_entry", f"package archive repeats the entry {printable(path)!r}", entry=info.filename
            )
        seen.update({path, path.casefold()})
        entries.append((info, path, is_dir))
    paths = {p for _, p, d in entries if not d}
    for _, path, _ in entries:  # a file may not also be used as a folder
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in paths:
                raise PackageRejected(
                    "duplicate_entry", f"{'/'.join(parts[:i])!r} is both a file and a folder", entry=path
                )
    if "cryptlet.json" not in paths:
        raise PackageRejected("missing_manifest", "package archive has no cryptlet.json at its root")
    return entries


def _entry_path(info: zipfile.ZipInfo) -> tuple[str, bool]:
    name = info.filename
    if not name or "\x00" in name or "\\" in name:
        raise PackageRejected("bad_name", f"package entry name {printable(name)!r} is malformed", entry=name)
    if name.startswith("/") or _DRIVE.match(name):
        raise PackageRejected("absolute_path", f"package entry {printable(name)!r} is an absolute path", entry=name)
    is_dir = name.endswith("/")
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        raise PackageRejected(
            "path_traversal", f"package entry {printable(name)!r} leaves the package folder", entry=name
        )
    if any(part in ("", ".") for part in parts):
        raise PackageRejected("bad_name", f"package entry name {printable(name)!r} is malformed", entry=name)
    check_path("/".join(parts))
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_IFMT(mode):  # Unix file type given: only regular files and folders
        if stat.S_ISLNK(mode):
            raise PackageRejected("symlink", f"package entry {printable(name)!r} is a symbolic link", entry=name)
        if stat.S_ISDIR(mode):
            is_dir = True
        elif not stat.S_ISREG(mode):
            raise PackageRejected(
                "special_file", f"package entry {printable(name)!r} is not a regular file or folder", entry=name
            )
        elif is_dir:
            raise PackageRejected(
                "special_file", f"package entry {printable(name)!r} is a file named like a folder", entry=name
            )
    if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise PackageRejected(
            "unsupported_entry",
            f"package entry {printable(name)!r} is encrypted or uses an unsupported compression "
            "(stored and deflated only)",
            entry=name,
        )
    return "/".join(parts), is_dir


def private_uploads_folder(uploads_dir: Path) -> None:
    """Create the uploads folder, or tighten an existing one of ours, to ``0700``: regions (other uids)
    must not read other cryptlets' uploads (docs/isolation.md)."""
    uploads_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = uploads_dir.stat()
    if info.st_uid == os.geteuid() and info.st_mode & 0o777 != 0o700:
        os.chmod(uploads_dir, 0o700)


class StagedUpload:
    """An accepted archive extracted into a private ``.tmp-<random>`` folder and measured; not yet in
    place. :meth:`commit` moves it to ``<uploads>/<name>``; :meth:`close` drops what is left."""

    def __init__(self, path: Path, digest: bytes) -> None:
        self.path = path
        self.digest = digest

    @property
    def package(self) -> str:
        """The package reference it will have: ``.uploads/<digest hex>``."""
        return f"{UPLOADS_FOLDER}/{self.digest.hex()}"

    def commit(self, name: str | None = None) -> tuple[Path, bool]:
        """Move the folder to ``<uploads>/<name>`` (default: the digest in hex); return it and whether
        this call put it there (``False``: the same package was there already, and is used as it is)."""
        target = self.path.parent / (name or self.digest.hex())
        for attempt in range(5):  # a concurrent discard may be removing the target: try again
            try:
                self.path.rename(target)
                return target, True
            except OSError:
                if _measures(target, target.name):
                    return target, False
            time.sleep(0.05 * (attempt + 1))
        raise FabricError(f"the uploads folder holds another package under {target.name}; it was left in place")

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> StagedUpload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _measures(folder: Path, digest_hex: str) -> bool:
    """Whether ``folder`` is a package measuring ``digest_hex`` (under any digest algorithm)."""
    try:
        return folder.is_dir() and measure_package(folder).algorithm_of(bytes.fromhex(digest_hex)) is not None
    except (OSError, ValueError, InvalidInput):
        return False


def stage_package(data: bytes, uploads_dir: Path, max_bytes: int, measure: Callable[[Path], bytes]) -> StagedUpload:
    """Check an uploaded archive and extract it into a private folder of ``uploads_dir``; measure it."""
    entries = check_archive(data, max_bytes)
    private_uploads_folder(uploads_dir)
    work = uploads_dir / f".tmp-{secrets.token_hex(8)}"
    work.mkdir(mode=0o755)
    try:
        _write(zipfile.ZipFile(io.BytesIO(data)), entries, work, max_bytes * UNCOMPRESSED_FACTOR)
        return StagedUpload(work, measure(work))  # refuses anything that is not a regular file or folder
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def extract_package(
    data: bytes, uploads_dir: Path, max_bytes: int, measure: Callable[[Path], bytes], *, name: str | None = None
) -> tuple[Path, bool]:
    """Check and extract a package archive into ``<uploads_dir>/<name>`` (default: its digest in hex);
    return the folder and whether this call created it. With ``name``, the package must measure that
    digest under one of the digest algorithms (else :class:`PackageRejected`, reason ``digest_mismatch``)."""
    with stage_package(data, uploads_dir, max_bytes, measure) as staged:
        if name is not None and name != staged.digest.hex() and not _measures(staged.path, name):
            raise PackageRejected("digest_mismatch", f"the package archive does not measure {name}")
        return staged.commit(name)


def _write(archive: zipfile.ZipFile, entries: list[tuple[zipfile.ZipInfo, str, bool]], root: Path, limit: int) -> None:
    total = 0
    for info, path, is_dir in entries:
        target = root.joinpath(*path.split("/"))
        try:
            if is_dir:
                target.mkdir(mode=0o755, parents=True, exist_ok=True)
                continue
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno not in _BAD_NAME_ERRORS:
                raise
            raise PackageRejected(
                "bad_name", f"package entry {printable(path, 80)!r} cannot be created here ({exc.strerror})", entry=path
            ) from None
        with os.fdopen(fd, "wb") as out, archive.open(info) as member:
            try:
                while chunk := member.read(_CHUNK):
                    total += len(chunk)
                    if total > limit:
                        raise PackageTooLarge(
                            "too_large_uncompressed", f"package unpacks to more than {limit} bytes", entry=path
                        )
                    out.write(chunk)
            except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
                raise PackageRejected("not_a_zip", f"package entry {path!r} is corrupt ({exc})", entry=path) from None


def zip_package(folder: Path) -> bytes:
    """A deterministic zip of a package folder: the measured files, sorted, fixed times and modes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for rel in package_files(folder):  # refuses links and special files; skips __pycache__
            info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system, info.external_attr = 3, (stat.S_IFREG | 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, (Path(folder) / rel).read_bytes())
    return buffer.getvalue()
