"""A small HTTP client for the fabric's API; errors become :class:`FabricError`."""

from __future__ import annotations

from typing import Any

import httpx

from shared.errors import FabricError
from shared.ledger.chain import LedgerEntry
from shared.redact import redact_url


class ApiError(FabricError):
    """The fabric answered with a problem document, or could not be reached."""

    def __init__(self, status: int, title: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail, field=field)
        self.status = status
        self.title = title


class FabricClient:
    """Calls the fabric's HTTP API with a function key."""

    def __init__(self, url: str, key: str | None = None, timeout: float = 30.0) -> None:
        headers = {"x-functions-key": key} if key else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, f"/api/{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(
                0, "Fabric unreachable", f"cannot reach the fabric at {redact_url(self.url)} ({type(exc).__name__})"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            problem = body if isinstance(body, dict) else {}
            raise ApiError(
                response.status_code,
                problem.get("title", f"HTTP {response.status_code}"),
                problem.get("detail", response.text[:200]),
                problem.get("field"),
            )
        return body

    def register(self, package: str) -> dict[str, Any]:
        return self.request("POST", "cryptlets", json={"package": package})

    def register_zip(self, archive: bytes) -> dict[str, Any]:
        """Upload a package zip (``cryptlet.json`` at its root) and register it."""
        return self.request("POST", "cryptlets", content=archive, headers={"content-type": "application/zip"})

    def list(self) -> list[dict[str, Any]]:
        return self.request("GET", "cryptlets")["cryptlets"]

    def get(self, name: str) -> dict[str, Any]:
        return self.request("GET", f"cryptlets/{name}")

    def invoke(self, name: str, method: str, args: dict[str, Any], request_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"method": method, "args": args}
        if request_id:
            body["request_id"] = request_id
        return self.request("POST", f"cryptlets/{name}/invoke", json=body)

    def ledger_entry(self, sequence: int) -> LedgerEntry:
        return LedgerEntry.from_dict(self.request("GET", f"ledger/entries/{sequence}"))

    def attestation(self) -> dict[str, Any]:
        return self.request("GET", "attestation")

    def health(self) -> dict[str, Any]:
        return self.request("GET", "health")

    def close(self) -> None:
        self.http.close()
