"""Uploaded packages shared by every host: each accepted upload zip is kept in blob storage
(container ``<prefix>packages``, blob ``<digest hex>.zip``), so any host can restore
``.uploads/<digest>`` when it must start a region for a package another host received.

A restored archive goes through the same checks as an upload (:func:`extract_package`), and it
must measure the digest it is stored under (with the algorithm of that digest: uploads registered
before ``cfpkg-v2`` are stored under their ``cfpkg-v1`` digest): a blob changed in storage is
refused. A blob is deleted only by a registration that failed while holding the cryptlet's name
(:mod:`shared.host.registry`), never while a registration of it can be running or after one succeeded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared.errors import NotFound, VerificationError
from shared.packages.upload import PackageRejected, extract_package
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

    def exists(self, digest_hex: str) -> bool:
        """Whether the zip of package ``digest_hex`` is kept."""
        with storage_errors("package store"):
            return bool(self.container.get_blob_client(f"{digest_hex}.zip").exists())

    def delete(self, digest_hex: str) -> None:
        """Drop the zip of package ``digest_hex`` (nothing if there is none)."""
        try:
            self.container.delete_blob(f"{digest_hex}.zip")
        except ResourceNotFoundError:
            pass
        except AzureError:
            pass  # best effort: the registration it belonged to failed anyway

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
        try:
            folder, _ = extract_package(data, uploads_dir, max_bytes, measure, name=digest_hex)
        except PackageRejected as exc:
            if exc.extra.get("reason") != "digest_mismatch":
                raise
            raise VerificationError(
                "package_store_mismatch",
                f"the stored package {digest_hex} measures another digest: it was changed in storage; refusing it",
            ) from None
        return folder
