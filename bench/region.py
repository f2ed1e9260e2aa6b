"""Region cold start and warm call-in latency of the ``process`` isolation provider.

    .venv/bin/python bench/region.py [--cold N] [--warm N]

cold start = spawn (fork from the warm zygote, confine) + load (snapshot, measure, import the
cryptlet) + unseal (the registered sealed key) + attest (software evidence over
SHA-256(public key || nonce)), timed from the host, one fresh region each time. warm call =
one ``invoke`` round trip (``customer_validator.validate``: the cryptlet runs, the container
signs an EIP-712 envelope) on a warm region. Also reported: the zygote's own start (once per
provider) and, for comparison, starting a fresh interpreter that imports the container (what a
region cost before the zygote). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.attestation import cryptlet_report_data
from shared.encoding import from_hex
from shared.envelope import Domain
from shared.isolation.process import ProcessProvider
from shared.packages.digest import package_digest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "cryptlet_packages" / "customer_validator"
CUSTOMER = {
    "name": "Ada Example",
    "email": "ada@example.com",
    "country": "GB",
    "birth_date": "1990-12-10",
    "credit_score": 742,
}
REGISTRATION = {"stream": "registry", "sequence": 1, "entry_hash": "0x" + "aa" * 32}


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fresh_interpreter_ms(runs: int) -> float:
    """Median time to start ``python -I -B`` and import the container (the pre-zygote region start)."""
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); import shared.isolation.runtime"
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-B", "-c", code], check=True)
        times.append(time.perf_counter() - start)
    return ms(statistics.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=30, help="cold starts to time (default 30)")
    parser.add_argument("--warm", type=int, default=2000, help="warm calls to time (default 2000)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-region-"))
    package = work / "customer_validator"
    shutil.copytree(SAMPLE, package, ignore=shutil.ignore_patterns("__pycache__"))
    digest = package_digest(package)
    provider = ProcessProvider(os.urandom(32))
    try:
        start = time.perf_counter()
        isolation = provider.isolation()  # starts the zygote
        zygote_ms = ms(time.perf_counter() - start)

        first = provider.create_region(package, digest, domain=Domain())
        key = first.call("generate_key")
        first.close()
        public_key = from_hex(key["public_key"], length=65)

        spawn_load, unseal, attest, cold = [], [], [], []
        for _ in range(args.cold):
            t0 = time.perf_counter()
            region = provider.create_region(package, digest, domain=Domain())
            t1 = time.perf_counter()
            region.call("unseal", address=key["address"], sealed_key=key["sealed_key"])
            t2 = time.perf_counter()
            region.evidence(cryptlet_report_data(public_key, os.urandom(32)))
            t3 = time.perf_counter()
            region.close()
            spawn_load.append(t1 - t0)
            unseal.append(t2 - t1)
            attest.append(t3 - t2)
            cold.append(t3 - t0)

        region = provider.create_region(package, digest, domain=Domain())
        region.call("unseal", address=key["address"], sealed_key=key["sealed_key"])
        region.call("bind", registration=REGISTRATION)
        warm = []
        for sequence in range(1, args.warm + 1):
            salt = "0x" + os.urandom(32).hex()
            t0 = time.perf_counter()
            region.call(
                "invoke",
                method="validate",
                args={"customer": CUSTOMER, "salt": salt},
                sequence=sequence,
                request_id="0x" + "00" * 32,
            )
            warm.append(time.perf_counter() - t0)
        region.close()
    finally:
        provider.close()
        shutil.rmtree(work, ignore_errors=True)

    interpreter_ms = fresh_interpreter_ms(5)
    result = {
        "benchmark": "region",
        "cold_start_ms": ms(statistics.median(cold)),
        "cold_start_p95_ms": ms(percentile(cold, 0.95)),
        "spawn_load_ms": ms(statistics.median(spawn_load)),
        "unseal_ms": ms(statistics.median(unseal)),
        "attest_ms": ms(statistics.median(attest)),
        "warm_call_ms": ms(statistics.median(warm)),
        "warm_call_p99_ms": ms(percentile(warm, 0.99)),
        "zygote_start_ms": zygote_ms,
        "fresh_interpreter_import_ms": interpreter_ms,
        "cold_starts": args.cold,
        "warm_calls": args.warm,
        "uid_isolation": isolation["uid_isolation"],
        "own_netns": isolation["own_netns"],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(
        f"cold start (spawn+load+unseal+attest): median {result['cold_start_ms']} ms, p95 "
        f"{result['cold_start_p95_ms']} ms  [spawn+load {result['spawn_load_ms']}, unseal {result['unseal_ms']}, "
        f"attest {result['attest_ms']}]"
    )
    print(
        f"warm call-in (invoke validate, signed envelope): median {result['warm_call_ms']} ms, p99 "
        f"{result['warm_call_p99_ms']} ms"
    )
    print(
        f"zygote start (once per provider): {zygote_ms} ms; a fresh interpreter importing the container: "
        f"{interpreter_ms} ms"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
