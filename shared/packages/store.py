"""Uploaded packages shared by every host: each accepted upload zip is kept in blob storage
(container ``<prefix>packages``, blob ``<digest hex>.zip``), so any host can restore
``.uploads/<digest>`` when it must start a region for a package another host received.

A restored archive goes through the same checks as an upload (:func:`extract_package`), and its
measured digest must be the one it is stored under: a blob changed in storage is refused.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared.errors import NotFound, VerificationError
from shared.packages.upload import extract_package
from shared.storage import storage_errors


class PackageStore:
    """Upload zips by digest in one blob container."""

    def __init__(self, container: ContainerClient) -> None:
        self.container = container

    def put(self, digest_hex: str, data: bytes) -> None:
        """Keep the zip of package ``digest_hex`` (kept once: identical uploads share it)."""
        with storage_errors("package store"):
            try:
                self.container.upload_blob(f"{digest_hex}.zip", data, overwrite=False)
            except ResourceExistsError:
                pass

    def delete(self, digest_hex: str) -> None:
        try:
            self.container.delete_blob(f"{digest_hex}.zip")
        except AzureError:
            pass

    def restore(self, digest_hex: str, uploads_dir: Path, max_bytes: int, measure: Callable[[Path], bytes]) -> Path:
        """Extract package ``digest_hex`` from the store into ``uploads_dir/<digest hex>``; return the folder."""
        with storage_errors("package store"):
            try:
                data = self.container.download_blob(f"{digest_hex}.zip").readall()
            except ResourceNotFoundError:
                raise NotFound(
                    f"uploaded package {digest_hex} is in neither this host's folder nor the package store",
                    field="package",
                ) from None
        folder, created = extract_package(data, uploads_dir, max_bytes, measure)
        if folder.name != digest_hex:
            if created:
                shutil.rmtree(folder, ignore_errors=True)
            raise VerificationError(
                "package_store_mismatch",
                f"the stored package {digest_hex} measures {folder.name}: it was changed in storage; refusing it",
            )
        return folder
