"""Signed invocations through the dev host over HTTP: throughput, latency, fabric overhead, signing cost.

    .venv/bin/python bench/invoke.py [--concurrency 32] [--count 6000] [--seconds 20]

Starts its own Azurite and the dev host (a subprocess serving the real ``function_app.py`` on a
free port), registers ``customer_validator`` and then, with ``--concurrency`` keep-alive
connections (a minimal HTTP/1.1 client on asyncio streams, so the client's own CPU stays small):

- ``invocations_per_s``, ``p50_ms``, ``p99_ms``: ``POST /api/cryptlets/customer_validator/invoke``
  (``validate``; each call returns an EIP-712 signed envelope), at most ``--count`` calls or
  ``--seconds`` seconds;
- ``bare_per_s``, ``bare_p50_ms``: ``GET /api/ping`` (a function that returns a constant) on the
  same host, same run, same concurrency;
- ``overhead_p50_ms``: invoke p50 minus ping p50 with ONE caller (the latency the fabric adds to a
  call: catalog lookup, region round trip, cryptlet, signature); ``overhead_p50_ms_c32``: the same
  difference at ``--concurrency`` (includes queueing behind the slower calls);
- ``sign_ratio``: envelopes signed per second through the container's path
  (``shared.envelope.signed_document``: build a ``validate`` envelope, its EIP-712 digest, sign,
  render the document) / raw ``coincurve`` ``sign_recoverable`` on 32-byte digests, same key,
  both in this process.

The last line printed is one JSON object. Everything started is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import coincurve
import httpx

from cryptlet_cli.demo import DevHostProcess
from devhost.azurite import Azurite
from devhost.ports import free_port, wait_for_port
from shared.envelope import Domain, Envelope, signed_document
from shared.settings import SETTINGS

CUSTOMER = {
    "name": "Ada Example",
    "email": "ada@example.com",
    "country": "GB",
    "birth_date": "1990-12-10",
    "credit_score": 742,
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Connection:
    """One HTTP/1.1 keep-alive connection; ``request`` returns (status, body)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    def close(self) -> None:
        self.writer.close()


def build_request(method: str, path: str, port: int, key: str | None, body: bytes = b"") -> bytes:
    headers = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: keep-alive"]
    if key:
        headers.append(f"x-functions-key: {key}")
    if body:
        headers += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


async def drive(port: int, requests: list[bytes], concurrency: int, seconds: float) -> tuple[list[float], float]:
    """Send ``requests`` over ``concurrency`` connections; (latencies in ms, wall seconds)."""
    connections = [await Connection.open(port) for _ in range(concurrency)]
    latencies: list[float] = []
    pending = iter(requests)
    deadline = time.perf_counter() + seconds

    async def worker(conn: Connection) -> None:
        for raw in pending:
            if time.perf_counter() > deadline:
                return
            start = time.perf_counter()
            status, body = await conn.request(raw)
            if status != 200:
                raise SystemExit(f"unexpected HTTP {status}: {body[:300]!r}")
            latencies.append((time.perf_counter() - start) * 1000)

    start = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        for conn in connections:
            conn.close()
    return latencies, time.perf_counter() - start


def invoke_requests(port: int, key: str, count: int) -> list[bytes]:
    requests = []
    for _ in range(count):
        body = json.dumps({"method": "validate", "args": {"customer": CUSTOMER, "salt": "0x" + secrets.token_hex(32)}})
        requests.append(build_request("POST", "/api/cryptlets/customer_validator/invoke", port, key, body.encode()))
    return requests


def signing_rates(seconds: float = 1.0) -> tuple[float, float]:
    """(fabric envelopes signed per second, raw coincurve signatures per second), same process."""
    key = coincurve.PrivateKey()
    digests = [os.urandom(32) for _ in range(256)]
    payload = {"approved": True, "failed_rules": [], "commitment": "0x" + "ab" * 32, "rules_version": "1"}
    base = Envelope(
        cryptlet="0x" + "11" * 20,
        name="customer_validator",
        digest=b"\x22" * 32,
        topic="customer_validator.validate",
        request_id=b"\x33" * 32,
        sequence=1,
        timestamp_ms=0,
        payload=payload,
        domain=Domain(),
        registration={"stream": "registry", "sequence": 1, "entry_hash": "0x" + "44" * 32},
        evidence={"kind": "process", "hash": "0x" + "55" * 32},
    )

    def rate(fn) -> float:
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for i in range(256):
                fn(i)
            done += 256
        return done / (time.perf_counter() - start)

    from dataclasses import replace

    raw = rate(lambda i: key.sign_recoverable(digests[i], hasher=None))
    fabric = rate(lambda i: signed_document(replace(base, sequence=i + 1, timestamp_ms=i), key))
    raw = (raw + rate(lambda i: key.sign_recoverable(digests[i], hasher=None))) / 2  # bracket the fabric run
    return fabric, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--count", type=int, default=6000, help="most invocations in the timed run (default 6000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="most seconds per timed run (default 20)")
    parser.add_argument("--sequential", type=int, default=300, help="one-caller calls for the overhead (default 300)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-invoke-"))
    azurite = Azurite(work / "azurite")
    host: DevHostProcess | None = None
    try:
        azurite.start()
        key = secrets.token_urlsafe(24)
        env = dict(
            os.environ,
            AzureWebJobsStorage=azurite.connection_string,
            FABRIC_SEALING_SECRET=base64.b64encode(os.urandom(32)).decode(),
            DEVHOST_FUNCTION_KEY=key,
            DEVHOST_MASTER_KEY=secrets.token_urlsafe(24),  # admin routes (policy) need one to start
            FABRIC_TABLE_PREFIX="bench" + secrets.token_hex(4),
        )
        for name, (default, _) in SETTINGS.items():
            if default is not None:
                env.setdefault(name, default)
        port = free_port()
        host = DevHostProcess(port, env)
        wait_for_port(port, 60, host.process)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"x-functions-key": key}, timeout=60) as client:
            response = client.post("/api/cryptlets", json={"package": "customer_validator"})
            response.raise_for_status()

        ping = build_request("GET", "/api/ping", port, None)
        # warm up: regions started, connections and caches hot
        asyncio.run(drive(port, invoke_requests(port, key, 200), args.concurrency, 30))
        asyncio.run(drive(port, [ping] * 500, args.concurrency, 30))

        seq_ping, _ = asyncio.run(drive(port, [ping] * args.sequential, 1, 30))
        seq_invoke, _ = asyncio.run(drive(port, invoke_requests(port, key, args.sequential), 1, 30))
        bare, bare_wall = asyncio.run(drive(port, [ping] * args.count, args.concurrency, args.seconds))
        calls, wall = asyncio.run(drive(port, invoke_requests(port, key, args.count), args.concurrency, args.seconds))
        fabric_rate, raw_rate = signing_rates()
    finally:
        if host is not None:
            host.stop()
        azurite.stop()
        shutil.rmtree(work, ignore_errors=True)

    p50, bare_p50 = statistics.median(calls), statistics.median(bare)
    result = {
        "invocations": len(calls),
        "concurrency": args.concurrency,
        "invocations_per_s": round(len(calls) / wall, 1),
        "p50_ms": round(p50, 2),
        "p99_ms": round(percentile(calls, 0.99), 2),
        "bare_per_s": round(len(bare) / bare_wall, 1),
        "bare_p50_ms": round(bare_p50, 2),
        "overhead_p50_ms": round(statistics.median(seq_invoke) - statistics.median(seq_ping), 2),
        "sequential_invoke_p50_ms": round(statistics.median(seq_invoke), 2),
        "sequential_bare_p50_ms": round(statistics.median(seq_ping), 2),
        "overhead_p50_ms_c32": round(p50 - bare_p50, 2),
        "fabric_signs_per_s": round(fabric_rate),
        "raw_signs_per_s": round(raw_rate),
        "sign_ratio": round(fabric_rate / raw_rate, 3),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
