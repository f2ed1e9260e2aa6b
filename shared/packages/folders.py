"""Where packages live on a host: the packages folder, uploads extracted by digest, and the package
store from which any host restores an upload another host received."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from shared.errors import InvalidInput, NotFound
from shared.packages.names import NAME, NAME_RULE
from shared.packages.store import PackageStore
from shared.packages.upload import UPLOADED_PACKAGE, UPLOADS_FOLDER, StagedUpload, private_uploads_folder, stage_package

#: A package folder name (the cryptlet name rule; ``\Z``: no trailing newline).
PACKAGE_NAME = NAME


class PackageFolders:
    """Resolves package references to folders and keeps uploads (extracted here, zipped in the store)."""

    def __init__(
        self,
        packages_dir: Path,
        uploads_dir: Path | None = None,
        *,
        store: PackageStore | None = None,
        max_bytes: int = 0,
        measure: Callable[[Path], bytes] | None = None,
    ) -> None:
        self.packages_dir = Path(packages_dir)
        self.uploads_dir = Path(uploads_dir) if uploads_dir is not None else self.packages_dir / UPLOADS_FOLDER
        self.store = store
        self.max_bytes = max_bytes
        self.measure = measure
        if self.uploads_dir.is_dir():  # one made before uploads were kept private: tighten it
            private_uploads_folder(self.uploads_dir)

    def resolve(self, package: object) -> Path:
        """The folder of a package name (or of an uploaded package's ``.uploads/<digest>``)."""
        if not isinstance(package, str) or not (PACKAGE_NAME.match(package) or UPLOADED_PACKAGE.match(package)):
            raise InvalidInput(
                f"package must be a package folder name ({NAME_RULE}) or .uploads/<digest>", field="package"
            )
        uploaded = UPLOADED_PACKAGE.match(package) is not None
        path = self.uploads_dir / package.split("/", 1)[1] if uploaded else self.packages_dir / package
        if not path.is_dir():
            if uploaded and self.store is not None and self.measure is not None:
                # uploaded on another host: extract it here from the package store (same checks)
                return self.store.restore(package.split("/", 1)[1], self.uploads_dir, self.max_bytes, self.measure)
            raise NotFound(f"no package {package!r} in the packages folder", field="package")
        return path

    def stage_upload(self, data: bytes) -> StagedUpload:
        """Check an uploaded zip and extract it into a private folder, measured but not yet in place."""
        if self.measure is None:
            raise InvalidInput("this host does not accept uploads", field="$")
        return stage_package(data, self.uploads_dir, self.max_bytes, self.measure)

    def commit_upload(self, staged: StagedUpload, data: bytes) -> Path:
        """Put a staged upload in place (``.uploads/<digest>``) and keep its zip in the store, so every
        host can restore it. Call it only while holding the cryptlet's name (see :meth:`discard_upload`)."""
        folder, _ = staged.commit()
        if self.store is not None:
            self.store.put(folder.name, data)
        return folder

    def check_kept(self, package: str) -> None:
        """For an earlier upload (``.uploads/<digest>``): raise :class:`NotFound` unless its zip is still
        in the store (a failed registration may have discarded it)."""
        if UPLOADED_PACKAGE.match(package) and self.store is not None and not self.store.exists(package[-64:]):
            raise NotFound(f"uploaded package {package!r} is not kept (its registration failed)", field="package")

    def discard_upload(self, package: str) -> None:
        """Drop an upload (its folder here and its stored zip). Only a registration that failed while it
        held the cryptlet's name, for a package no ledger entry registered, calls this: every other
        registration of the same package needs that name too, so none is using the upload."""
        digest_hex = package.split("/", 1)[1]
        shutil.rmtree(self.uploads_dir / digest_hex, ignore_errors=True)
        if self.store is not None:
            self.store.delete(digest_hex)
