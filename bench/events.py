"""Event engine: fire lateness (scheduled instant -> delivery observed) and delivery throughput.

Starts its own Azurite, the dev host (a subprocess serving the real ``function_app.py``: the
scheduler timer and the fire queue worker) and a callback receiver on 127.0.0.1; registers the test
cryptlet ``event_ticker`` (tests/packages); creates ``--subscriptions`` interval subscriptions (1 s,
aligned to whole seconds, callback target) written straight into the subscriptions table, and
lets them run ``--seconds``. Lateness is the receiver's wall clock when a delivery arrives minus
the fire's scheduled instant (its sequence); every delivery's fabric signature is checked.

Then a burst phase: ``--burst`` HMAC-signed webhook calls spread over the same subscriptions'
webhook twins, delivered as fast as the engine can (``burst_deliveries_per_s``).

Prints a few lines, then one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from cryptlet_cli.demo import DevHostProcess  # noqa: E402
from devhost.azurite import Azurite  # noqa: E402
from devhost.ports import free_port, wait_for_port  # noqa: E402
from shared.encoding import from_hex  # noqa: E402
from shared.errors import Conflict  # noqa: E402
from shared.events import webhooks  # noqa: E402
from shared.events.delivery import signer_of  # noqa: E402
from shared.events.subscriptions import Subscription, SubscriptionStore, new_id  # noqa: E402
from shared.settings import SETTINGS  # noqa: E402
from shared.storage import table_client  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Receiver:
    def __init__(self) -> None:
        self.records: list[tuple[str, int, int, bytes, str]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                arrived = time.time_ns() // 1_000_000
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw)
                with outer.lock:
                    outer.records.append(
                        (
                            body["subscription"],
                            body["sequence"],
                            arrived,
                            raw,
                            self.headers.get("X-Fabric-Signature", ""),
                        )
                    )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--burst", type=int, default=1000)
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-events-"))
    packages = work / "packages"
    shutil.copytree(ROOT / "cryptlet_packages", packages, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        ROOT / "tests" / "packages" / "event_ticker",
        packages / "event_ticker",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    azurite = Azurite(work / "azurite")
    host: DevHostProcess | None = None
    receiver = Receiver()
    secret = os.urandom(32)
    try:
        azurite.start()
        key = secrets.token_urlsafe(24)
        env = {name: default for name, (default, _) in SETTINGS.items() if default is not None}
        env.update(os.environ)
        env.update(
            AzureWebJobsStorage=azurite.connection_string,
            FABRIC_SEALING_SECRET=base64.b64encode(secret).decode(),
            DEVHOST_FUNCTION_KEY=key,
            DEVHOST_MASTER_KEY=secrets.token_urlsafe(24),
            FABRIC_PACKAGES_DIR=str(packages),
            FABRIC_TABLE_PREFIX="bench",
            FABRIC_FIRE_QUEUE="bench-fires",
            FABRIC_CALLBACK_ALLOW="127.0.0.1",  # the callback receiver is on loopback
        )
        port = free_port()
        host = DevHostProcess(port, env, stdout=sys.stderr)  # the JSON stays stdout's last line
        wait_for_port(port, 60, host.process)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"x-functions-key": key}, timeout=60) as client:
            client.post("/api/cryptlets", json={"package": "event_ticker"}).raise_for_status()
            client.post("/api/cryptlets/event_ticker/invoke", json={"method": "tick"}).raise_for_status()  # warm
            delivery_address = client.get("/api/attestation").json()["delivery_address"]
        store = SubscriptionStore(table_client(azurite.connection_string, "benchsubscriptions"))
        now = time.time_ns() // 1_000_000
        start = (now // 1000 + 3) * 1000
        end = start + options.seconds * 1000
        interval_ids = []
        for i in range(options.subscriptions):
            subscription = Subscription(
                id=new_id(),
                subscriber="bench",
                cryptlet="event_ticker",
                method="tick",
                args={"label": f"s{i}"},
                trigger={"type": "interval", "seconds": 1, "start": iso(start)},
                target={"type": "callback", "url": f"{receiver.url}/i"},
                deadline_ms=end + 60_000,
                created_ms=now,
            )
            store.create(subscription)
            interval_ids.append(subscription.id)
        print(f"{options.subscriptions} interval subscriptions (1 s) from {iso(start)} for {options.seconds} s")
        time.sleep(max(0, end - time.time_ns() // 1_000_000) / 1000 + 2)
        for sid in interval_ids:  # stop them (the tick writes the rows too: retry on Conflict)
            for _ in range(50):
                subscription, etag = store.get(sid)
                try:
                    store.update(subscription, etag, status="cancelled")
                    break
                except Conflict:
                    time.sleep(0.05)
        with receiver.lock:
            records = [r for r in receiver.records if r[0] in set(interval_ids) and start <= r[1] < end]
        expected = options.subscriptions * options.seconds
        unique = {(r[0], r[1]) for r in records}
        lateness = [r[2] - r[1] for r in records]
        bad = sum(1 for r in records if signer_of(json.loads(r[3]), from_hex(r[4], length=65)) != delivery_address)
        interval_rate = len(unique) / options.seconds
        print(
            f"interval: {len(unique)}/{expected} fires delivered, {len(records) - len(unique)} duplicates, "
            f"{bad} bad signatures; lateness p50 {statistics.median(lateness):.0f} ms, "
            f"p99 {percentile(lateness, 0.99):.0f} ms, max {max(lateness)} ms"
        )

        # burst: webhook fires as fast as the engine delivers them
        hooks = []
        for _ in range(options.subscriptions):
            sid = new_id()
            plain, sealed = webhooks.issue_secret(secret, sid)
            store.create(
                Subscription(
                    id=sid,
                    subscriber="bench",
                    cryptlet="event_ticker",
                    method="tick",
                    args={},
                    trigger={"type": "webhook"},
                    target={"type": "callback", "url": f"{receiver.url}/w"},
                    deadline_ms=time.time_ns() // 1_000_000 + 3_600_000,
                    created_ms=time.time_ns() // 1_000_000,
                    webhook_secret_sealed=sealed,
                )
            )
            hooks.append((sid, plain))
        hook_ids = {h[0] for h in hooks}

        def fire(n: int, client: httpx.Client) -> None:
            sid, plain = hooks[n % len(hooks)]
            body = json.dumps({"n": n}).encode()
            response = client.post(
                f"/api/webhooks/{sid}",
                content=body,
                headers={"X-Webhook-Signature": webhooks.sign(plain, body, int(time.time()))},
            )
            response.raise_for_status()

        began = time.monotonic()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client, ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: fire(n, client), range(options.burst)))
        accepted_s = time.monotonic() - began
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with receiver.lock:
                got = {(r[0], r[1]) for r in receiver.records if r[0] in hook_ids}
            if len(got) >= options.burst:
                break
            time.sleep(0.1)
        burst_s = time.monotonic() - began
        print(
            f"burst: {options.burst} webhook calls accepted in {accepted_s:.1f} s, {len(got)} delivered "
            f"in {burst_s:.1f} s ({len(got) / burst_s:.0f}/s)"
        )
        print(
            json.dumps(
                {
                    "fire_lateness_p50_ms": round(statistics.median(lateness), 1),
                    "fire_lateness_p99_ms": round(percentile(lateness, 0.99), 1),
                    "fire_lateness_max_ms": max(lateness),
                    "deliveries_per_s": round(interval_rate, 2),
                    "burst_deliveries_per_s": round(len(got) / burst_s, 1),
                    "fires_expected": expected,
                    "fires_delivered": len(unique),
                    "duplicate_deliveries": len(records) - len(unique),
                    "bad_signatures": bad,
                    "burst_calls": options.burst,
                    "burst_delivered": len(got),
                    "subscriptions": options.subscriptions,
                    "seconds": options.seconds,
                }
            )
        )
    finally:
        if host is not None:
            host.stop()
        azurite.stop()
        receiver.server.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
