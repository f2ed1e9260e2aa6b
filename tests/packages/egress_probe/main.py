"""Test cryptlet: HTTP through the host's ``fetch`` call-out, and a direct connection attempt."""
import socket

import fabric_host


class Probe:
    def fetch(self, url: str, method: str = "GET", body: str | None = None) -> dict:
        """Fetch ``url`` through the host; refusals propagate as the call's error."""
        reply = fabric_host.fetch(url, method=method, body=body, headers={"X-Probe": "egress_probe"})
        return {"status": reply["status"], "url": reply["url"], "body": reply["body"].decode("utf-8", "replace"),
                "content_type": reply["headers"].get("content-type", "")}

    def try_fetch(self, url: str) -> dict:
        """Fetch ``url``; a refusal is returned as its code and message."""
        try:
            return {"status": fabric_host.fetch(url)["status"]}
        except fabric_host.CallOutError as exc:
            return {"error": exc.code, "message": str(exc)}

    def connect(self, host: str, port: int) -> dict:
        """Open a TCP connection directly (no call-out)."""
        try:
            socket.create_connection((host, port), timeout=1).close()
        except OSError as exc:
            return {"connected": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"connected": True}
