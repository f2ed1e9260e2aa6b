"""The Monte Carlo option pricer (a long job) and the progress call-out: in a real region (the
price within 3 standard errors of Black-Scholes, deterministic with its seed, progress reported
to 1.0), the call-out's checks on the host, the job store on real Azurite, and through the dev host
(an asynchronous request whose progress `GET /api/requests/{id}/progress` shows)."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import pytest

from cryptlet_sdk import MAX_EVENTS
from shared.envelope import Domain, Envelope, verify_envelope
from shared.errors import Conflict, InvalidInput, NotFound, RegionError
from shared.host.progress import JobStore
from shared.isolation.callout import HostCallOuts
from shared.isolation.process import ProcessProvider
from shared.packages.digest import package_digest
from shared.storage import table_client
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[3]
PRICER = ROOT / "cryptlet_packages" / "option_pricer"
REGISTERED_PACKAGE = "option_pricer"  # the sample `registered` (tests/e2e/conftest.py) registers
REGISTRATION = {"stream": "registry", "sequence": 1, "entry_hash": "0x" + "aa" * 32}
BLOCK = 1 + MAX_EVENTS
REQUEST = "0x" + "ab" * 32
TERMS = {"spot": "100", "strike": "105", "rate": "0.05", "volatility": "0.2", "maturity_years": "1"}


def black_scholes(spot: float, strike: float, rate: float, volatility: float, years: float, kind: str) -> float:
    def cdf(x: float) -> float:
        return 0.5 * (1 + math.erf(x / math.sqrt(2)))

    d1 = (math.log(spot / strike) + (rate + volatility**2 / 2) * years) / (volatility * math.sqrt(years))
    d2 = d1 - volatility * math.sqrt(years)
    if kind == "call":
        return spot * cdf(d1) - strike * math.exp(-rate * years) * cdf(d2)
    return strike * math.exp(-rate * years) * cdf(-d2) - spot * cdf(-d1)


def closed_form(terms: dict, kind: str) -> float:
    return black_scholes(*(float(terms[k]) for k in ("spot", "strike", "rate", "volatility", "maturity_years")), kind)


# -- in a real region --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pricer():
    provider = ProcessProvider(os.urandom(32), timeout=60)
    reports: list[tuple[str, str, float, str]] = []
    region = provider.create_region(
        PRICER,
        package_digest(PRICER),
        domain=Domain(),
        call_out=HostCallOuts("option_pricer", progress=lambda *r: reports.append(r)),
    )
    address = region.call("generate_key")["address"]
    region.call("bind", registration=REGISTRATION)
    yield region, address, reports
    region.close()
    provider.close()


def price(pricer, request: int, sequence: int, **args) -> tuple[dict, list]:
    region, address, reports = pricer
    reports.clear()
    request_id = "0x" + f"{request:02x}" * 32
    reply = region.call(
        "invoke",
        method="price_european",
        args={**TERMS, "seed": 7, "paths": 40_000, **args},
        sequence=sequence,
        sequences=BLOCK,
        request_id=request_id,
    )
    envelope = Envelope.from_dict(reply["envelope"])
    assert verify_envelope(envelope, address) == address
    [event] = reply["events"]
    assert verify_envelope(Envelope.from_dict(event), address) == address
    assert event["topic"] == "option_pricer.OptionPriced" and event["request_id"] == request_id
    assert all(r[:2] == ("option_pricer", request_id) for r in reports)
    return envelope.payload, [r[2:] for r in reports]


@pytest.mark.parametrize("kind", ["call", "put"])
def test_price_is_within_three_standard_errors_of_black_scholes(pricer, kind):
    payload, progress = price(pricer, 1 if kind == "call" else 2, 10 if kind == "call" else 40, kind=kind)
    exact = closed_form(TERMS, kind)
    estimate, std_error = float(payload["price"]), float(payload["std_error"])
    assert 0 < std_error < 0.2
    assert abs(estimate - exact) < 3 * std_error, (estimate, exact, std_error)
    assert payload["price_e8"] == round(estimate * 1e8) or abs(payload["price_e8"] - estimate * 1e8) <= 1
    assert (payload["path_count"], payload["rng_seed"], payload["option"], payload["terms"]) == (40_000, 7, kind, TERMS)
    fractions = [f for f, _ in progress]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and len(fractions) == 21  # start + 20 chunks
    assert fractions == sorted(fractions)
    assert progress[-1][1] == "40000/40000 paths"


def test_same_seed_same_price_other_seed_other_price(pricer):
    first, _ = price(pricer, 3, 70, paths=5000, seed=11)
    again, _ = price(pricer, 4, 100, paths=5000, seed=11)
    other, _ = price(pricer, 5, 130, paths=5000, seed=12)
    assert first == again
    assert other["price"] != first["price"]


@pytest.mark.parametrize(
    "args, detail",
    [
        ({"paths": 1}, "paths must be an integer"),
        ({"spot": "-1"}, "spot must be positive"),
        ({"volatility": "abc"}, "volatility must be a number"),
        ({"kind": "straddle"}, "kind must be call or put"),
    ],
)
def test_bad_arguments_are_refused(pricer, args, detail):
    with pytest.raises(RegionError) as caught:
        price(pricer, 6, 160, **args)
    assert caught.value.extra["region_code"] == "bad_arguments" and detail in caught.value.detail


NODE_PROGRAM = r"""'use strict';
const { serve } = require('./cryptlet');
serve({
  async run(args, ctx) {
    await ctx.progress(0.5, 'half way');
    let refused = null;
    await ctx.progress(2).catch((err) => { refused = err.message; });
    await ctx.progress(1);
    return { refused };
  },
});
"""


def test_node_sdk_reports_progress(tmp_path):
    package = tmp_path / "node_progress"
    package.mkdir()
    (package / "cryptlet.json").write_text(
        json.dumps(
            {
                "name": "node_progress",
                "version": "1.0.0",
                "kind": "utility",
                "runtime": "exec",
                "interpreter": "node",
                "entry": "main.js",
                "interface": {"methods": {"run": {}}},
            }
        )
    )
    (package / "main.js").write_text(NODE_PROGRAM)
    shutil.copy(ROOT / "cryptlet_sdk" / "js" / "cryptlet.js", package / "cryptlet.js")
    reports: list = []
    provider = ProcessProvider(os.urandom(32), timeout=20)
    try:
        region = provider.create_region(
            package,
            package_digest(package),
            domain=Domain(),
            call_out=HostCallOuts("node_progress", progress=lambda *r: reports.append(r)),
        )
        try:
            region.call("generate_key")
            region.call("bind", registration=REGISTRATION)
            reply = region.call("invoke", method="run", args={}, sequence=1, sequences=BLOCK, request_id=REQUEST)
        finally:
            region.close()
    finally:
        provider.close()
    assert "progress fraction must be a number from 0 to 1" in reply["envelope"]["payload"]["refused"]
    assert reports == [("node_progress", REQUEST, 0.5, "half way"), ("node_progress", REQUEST, 1.0, "")]


# -- the job store on real Azurite ------------------------------------------------------------------
def test_job_store_is_monotonic_and_owned_by_one_cryptlet(storage, unique_name):
    jobs = JobStore(table_client(storage, unique_name))
    with pytest.raises(NotFound):
        jobs.progress(REQUEST)
    assert jobs.get(REQUEST) is None
    jobs.report("pricer", REQUEST, 0.25, "a quarter")
    first = jobs.get(REQUEST)
    assert (first["cryptlet"], first["fraction"], first["message"]) == ("pricer", 0.25, "a quarter")
    jobs.report("pricer", REQUEST, 0.1, "a retry starting over")  # dropped: never backwards
    assert jobs.get(REQUEST)["fraction"] == 0.25
    time.sleep(0.01)
    jobs.report("pricer", REQUEST, 1.0, "done")
    done = jobs.progress(REQUEST)
    assert (done["fraction"], done["message"], done["reported"]) == (1.0, "done", True)
    assert done["started_at"] == first["started_at"] and done["updated_at"] > first["updated_at"]
    with pytest.raises(Conflict) as caught:
        jobs.report("intruder", REQUEST, 1.0, "mine now")
    assert caught.value.field == "request_id"
    other = "0x" + "cd" * 32
    assert jobs.progress(other, known=lambda _: None)["reported"] is False
    with pytest.raises(InvalidInput):
        jobs.get("0x1234")


# -- through the dev host ---------------------------------------------------------------------------
def test_sync_call_in_the_registration_region_records_progress(fabric_host, registered):
    """The first call runs in the region that generated the key at registration: it reports too."""
    request_id = "0x" + os.urandom(32).hex()
    with fabric_host.client() as http:
        response = http.post(
            "/api/cryptlets/option_pricer/invoke",
            json={"method": "price_european", "args": {**TERMS, "paths": 2000, "seed": 1}, "request_id": request_id},
        )
        assert response.status_code == 200, response.text
        progress = http.get(f"/api/requests/{request_id}/progress").json()
    assert progress["fraction"] == 1.0 and progress["cryptlet"] == "option_pricer"
    assert progress["message"] == "2000/2000 paths"


def test_async_request_progress_grows_to_one(fabric_host, registered):
    address = registered["address"]
    with fabric_host.client() as http:
        accepted = http.post(
            "/api/cryptlets/option_pricer/requests",
            json={"method": "price_european", "args": {**TERMS, "paths": 600_000, "seed": 2024, "kind": "put"}},
        )
        assert accepted.status_code == 202, accepted.text
        request_id = accepted.json()["request_id"]
        seen: list[float] = []

        def finished():
            progress = http.get(f"/api/requests/{request_id}/progress")
            assert progress.status_code == 200, progress.text
            seen.append(progress.json()["fraction"])
            return http.get(f"/api/requests/{request_id}").json()["status"] not in ("pending", "running")

        wait_for(finished, timeout=60)
        final = http.get(f"/api/requests/{request_id}/progress").json()
        result = http.get(f"/api/requests/{request_id}").json()
    assert result["status"] == "done", result
    envelope = result["envelope"]
    assert verify_envelope(Envelope.from_dict(envelope), address) == address
    assert [e["topic"] for e in envelope["events"]] == ["option_pricer.OptionPriced"]
    assert verify_envelope(Envelope.from_dict(envelope["events"][0]), address) == address
    payload = envelope["payload"]
    assert abs(float(payload["price"]) - closed_form(TERMS, "put")) < 3 * float(payload["std_error"])
    assert seen == sorted(seen)  # never backwards
    assert any(0 < f < 1 for f in seen), seen  # seen while running, not only at the end
    assert (final["fraction"], final["reported"], final["cryptlet"]) == (1.0, True, "option_pricer")
    assert final["request_id"] == request_id and final["message"] == "600000/600000 paths"


def test_progress_of_unknown_and_malformed_requests(fabric_host, registered):
    with fabric_host.client() as http:
        missing = http.get("/api/requests/0x" + "00" * 32 + "/progress")
        malformed = http.get("/api/requests/nothex/progress")
    with fabric_host.client(None) as anonymous:
        keyless = anonymous.get("/api/requests/0x" + "00" * 32 + "/progress")
    assert missing.status_code == 404 and missing.json()["field"] == "request_id"
    assert malformed.status_code == 400 and malformed.json()["field"] == "request_id"
    assert keyless.status_code == 401
