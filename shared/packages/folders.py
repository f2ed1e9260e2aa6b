"""Where packages live on a host: the packages folder, uploads extracted by digest, and the package
store from which any host restores an upload another host received."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

from shared.errors import InvalidInput, NotFound
from shared.packages.store import PackageStore
from shared.packages.upload import UPLOADED_PACKAGE, UPLOADS_FOLDER, extract_package, private_uploads_folder

PACKAGE_NAME = re.compile(r"^[a-z][a-z0-9_]{1,62}$")


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
                "package must be a package folder name (lowercase letters, digits, underscores)", field="package"
            )
        uploaded = UPLOADED_PACKAGE.match(package) is not None
        path = self.uploads_dir / package.split("/", 1)[1] if uploaded else self.packages_dir / package
        if not path.is_dir():
            if uploaded and self.store is not None and self.measure is not None:
                # uploaded on another host: extract it here from the package store (same checks)
                return self.store.restore(package.split("/", 1)[1], self.uploads_dir, self.max_bytes, self.measure)
            raise NotFound(f"no package {package!r} in the packages folder", field="package")
        return path

    def accept_upload(self, data: bytes) -> tuple[str, bool]:
        """Check and extract an uploaded zip, keep it in the store; ``(package reference, created here)``."""
        if self.measure is None:
            raise InvalidInput("this host does not accept uploads", field="$")
        folder, created = extract_package(data, self.uploads_dir, self.max_bytes, self.measure)
        if self.store is not None:
            self.store.put(folder.name, data)  # before the catalog row: every host can restore it
        return f"{UPLOADS_FOLDER}/{folder.name}", created

    def discard_upload(self, package: str) -> None:
        """Drop an upload this host extracted (and its stored zip) after its registration failed."""
        digest_hex = package.split("/", 1)[1]
        shutil.rmtree(self.uploads_dir / digest_hex, ignore_errors=True)
        if self.store is not None:
            self.store.delete(digest_hex)
