"""MarketWatcher: the replay source against the committed CSVs (read here independently), the
market-open flag from the data's trading days, the replay clock, the HTTP JSON source through the
host's egress-checked fetch (a local http.server), in real regions and through the dev host."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
import time
from decimal import Decimal
from pathlib import Path

import pytest

from cryptlet_sdk import MAX_EVENTS
from shared.envelope import Domain, Envelope, verify_envelope
from shared.errors import RegionError
from shared.isolation.callout import HostCallOuts
from shared.isolation.process import ProcessProvider
from shared.packages.digest import package_digest
from tests.helpers import QuietHandler, http_server

ROOT = Path(__file__).resolve().parents[3]
WATCHER = ROOT / "cryptlet_packages" / "market_watcher"
REGISTERED_PACKAGE = "market_watcher"  # the sample `registered` (tests/e2e/conftest.py) registers
REGISTRATION = {"stream": "registry", "sequence": 1, "entry_hash": "0x" + "aa" * 32}
BLOCK = 1 + MAX_EVENTS


def csv_series() -> dict[str, list[tuple[str, str]]]:
    """symbol -> [(ISO date, price text)] straight from the package's CSV files."""
    series: dict[str, list[tuple[str, str]]] = {}
    with open(WATCHER / "data" / "sp500_daily.csv", newline="") as file:
        series["SPX"] = [(row["date"], row["close"]) for row in csv.DictReader(file)]
    with open(WATCHER / "data" / "stocks.csv", newline="") as file:
        for row in csv.DictReader(file):
            day = dt.datetime.strptime(row["date"], "%b %d %Y").date().isoformat()
            series.setdefault(row["symbol"], []).append((day, row["price"]))
    return {symbol: sorted(rows) for symbol, rows in series.items()}


SERIES = csv_series()
TRADING_DAYS = {day for day, _ in SERIES["SPX"]}


def e8(price: str) -> int:
    return int((Decimal(price) * 10**8).to_integral_value())


class Regions:
    """One provider; regions of the package with a given egress list; envelopes checked."""

    def __init__(self) -> None:
        self.provider = ProcessProvider(os.urandom(32), timeout=15)
        self.regions: dict[tuple, tuple] = {}
        self.sequence = 0

    def call(self, method: str, args: dict, *, package: Path = WATCHER, egress: tuple = ()) -> dict:
        key = (package, egress)
        if key not in self.regions:
            region = self.provider.create_region(
                package, package_digest(package), domain=Domain(), call_out=HostCallOuts(package.name, egress=egress)
            )
            address = region.call("generate_key")["address"]
            region.call("bind", registration=REGISTRATION)
            self.regions[key] = (region, address)
        region, address = self.regions[key]
        self.sequence += BLOCK
        reply = region.call(
            "invoke",
            method=method,
            args=args,
            sequence=self.sequence,
            sequences=BLOCK,
            request_id="0x" + os.urandom(32).hex(),
        )
        for document in [reply["envelope"], *reply.get("events", [])]:
            assert verify_envelope(Envelope.from_dict(document), address) == address
        return reply

    def close(self) -> None:
        for region, _ in self.regions.values():
            region.close()
        self.provider.close()


@pytest.fixture(scope="module")
def regions():
    regions = Regions()
    yield regions
    regions.close()


@pytest.fixture(scope="module")
def provider_server():
    """A JSON price provider on 127.0.0.1: /q/<SYMBOL> -> {"data": {"price", "time", "market_open"}}."""

    class Quotes(QuietHandler):
        def do_GET(self) -> None:
            symbol = self.path.rsplit("/", 1)[-1]
            prices = {"OIL": "41.0700", "GOLD": "1923.5"}
            if symbol not in prices:
                self.send_error(404)
                return
            body = (
                '{"data": {"price": %s, "time": 1700000000, "market_open": %s}}'
                % (prices[symbol], "true" if symbol == "GOLD" else "false")
            ).encode()
            self.send_json(200, body)

    with http_server(Quotes) as address:
        yield address


# -- replay: the CSV's values -------------------------------------------------------------------
def test_the_committed_dataset_is_what_the_readme_says():
    assert sorted(SERIES) == ["AAPL", "AMZN", "GOOG", "IBM", "MSFT", "SPX"]
    assert (SERIES["SPX"][0], SERIES["SPX"][-1]) == (("2007-01-03", "1416.599976"), ("2010-12-31", "1257.640015"))
    assert len(SERIES["SPX"]) == 1008 and SERIES["MSFT"][0] == ("2000-01-01", "39.81")
    notice = (WATCHER / "README.md").read_text()
    assert "vega-datasets" in notice and "BSD-3-Clause" in notice


@pytest.mark.parametrize("symbol", sorted(SERIES))
def test_replay_quotes_equal_the_csv(regions, symbol):
    rows = SERIES[symbol]
    picks = [rows[0], rows[len(rows) // 3], rows[len(rows) // 2], rows[-1]]
    for day, price in picks:
        payload = regions.call("quote", {"symbol": symbol.lower(), "date": day})["envelope"]["payload"]
        assert payload == {"ticker": symbol, "price": price, "price_e8": e8(price), "as_of": day, "feed": "replay"}
    # between observations: the last price at or before the date (a datetime's date part counts)
    (day, price), (following, _) = rows[len(rows) // 2], rows[len(rows) // 2 + 1]
    before = (dt.date.fromisoformat(following) - dt.timedelta(days=1)).isoformat()
    payload = regions.call("quote", {"symbol": symbol, "date": before + "T16:00:00-05:00"})["envelope"]["payload"]
    assert (payload["price"], payload["as_of"]) == (price, day)


def test_quote_emits_a_signed_price_event(regions):
    reply = regions.call("quote", {"symbol": "IBM", "date": "2009-03-15"})
    [event] = reply["events"]
    assert event["topic"] == "market_watcher.PriceQuoted"
    price = dict(SERIES["IBM"])["2009-03-01"]  # the monthly value at or before the 15th
    assert (
        event["payload"]
        == {"ticker": "IBM", "price": price, "price_e8": e8(price), "as_of": "2009-03-01", "feed": "replay"}
        == reply["envelope"]["payload"]
    )


@pytest.mark.parametrize(
    "args, detail",
    [
        ({"symbol": "SPX", "date": "2006-12-29"}, "no price at or before 2006-12-29"),
        ({"symbol": "TSLA", "date": "2008-01-02"}, "replay has no symbol 'TSLA'"),
        ({"symbol": "SPX", "date": "yesterday"}, "date must be an ISO date"),
        ({"symbol": "SPX"}, "replay needs date"),
        ({"symbol": "SPX", "source": "carrier-pigeon", "date": "2008-01-02"}, "source must be one of"),
    ],
)
def test_replay_refusals_are_bad_arguments(regions, args, detail):
    with pytest.raises(RegionError) as caught:
        regions.call("quote", args)
    assert caught.value.extra["region_code"] == "bad_arguments" and detail in caught.value.detail


# -- MarketEvent ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "day, market_open",
    [
        ("2008-09-15", True),  # a Monday the market traded
        ("2008-09-13", False),  # a Saturday
        ("2008-07-04", False),  # Independence Day
        ("2008-11-27", False),  # Thanksgiving
    ],
)
def test_market_event_prices_and_market_open_from_the_trading_days(regions, day, market_open):
    symbols = ["SPX", "AAPL", "GOOG"]
    reply = regions.call("market_event", {"symbols": symbols, "date": day})
    payload = reply["envelope"]["payload"]
    expected = [max(r for r in SERIES[s] if r[0] <= day) for s in symbols]
    assert payload == {
        "day": day,
        "market_open": market_open,
        "tickers": symbols,
        "prices": [p for _, p in expected],
        "prices_e8": [e8(p) for _, p in expected],
        "as_of": [d for d, _ in expected],
        "feed": "replay",
    }
    assert (day in TRADING_DAYS) == market_open
    [event] = reply["events"]
    assert event["topic"] == "market_watcher.MarketEvent"
    assert event["payload"] == {k: v for k, v in payload.items() if k != "prices"}


def test_market_open_is_refused_outside_the_daily_data(regions):
    with pytest.raises(RegionError) as caught:
        regions.call("market_event", {"symbols": ["MSFT"], "date": "2003-05-01"})
    assert "market_open is known only from 2007-01-03 to 2010-12-31" in caught.value.detail


# -- the replay clock --------------------------------------------------------------------------------
def test_replay_clock_steps_one_trading_day_per_step(regions):
    start = "2008-09-11"  # Thursday; +1 Friday 12th, +2 Monday 15th, +3 Tuesday 16th
    epoch = int(time.time() * 1000) - 3 * 1000 - 400
    payload = regions.call(
        "market_event", {"symbols": ["SPX"], "clock": {"start": start, "epoch_ms": epoch, "step_ms": 1000}}
    )["envelope"]["payload"]
    assert payload["day"] == "2008-09-16" and payload["market_open"] is True
    assert payload["prices"] == [dict(SERIES["SPX"])["2008-09-16"]]
    calendar_days = regions.call(
        "quote", {"symbol": "SPX", "clock": {"start": start, "epoch_ms": epoch, "step_ms": 1000, "unit": "day"}}
    )["envelope"]["payload"]
    assert calendar_days["as_of"] == "2008-09-12"  # 2008-09-14 is a Sunday: Friday's close
    with pytest.raises(RegionError) as caught:
        regions.call("quote", {"symbol": "SPX", "clock": {"start": start, "epoch_ms": epoch + 60_000}})
    assert "has not started yet" in caught.value.detail
    with pytest.raises(RegionError) as caught:
        regions.call("quote", {"symbol": "SPX", "clock": {"start": "2010-12-30", "epoch_ms": epoch}})
    assert "ran past the end" in caught.value.detail


# -- HTTP source through the host ------------------------------------------------------------------
FIELDS = {"price": "/data/price", "time": "/data/time", "open": "/data/market_open"}


def test_http_source_needs_the_host_to_allow_it(regions, provider_server):
    url = f"http://{provider_server}/q/{{symbol}}"
    with pytest.raises(RegionError) as caught:
        regions.call("quote", {"symbol": "OIL", "source": "http", "url": url, "fields": FIELDS})
    assert caught.value.extra["region_code"] == "cryptlet_error" and "egress_denied" in caught.value.detail
    reply = regions.call(
        "quote", {"symbol": "oil", "source": "http", "url": url, "fields": FIELDS}, egress=(provider_server,)
    )
    assert reply["envelope"]["payload"] == {
        "ticker": "OIL",
        "price": "41.0700",
        "price_e8": 4107000000,
        "as_of": "2023-11-14T22:13:20+00:00",
        "feed": "http",
    }
    event = regions.call(
        "market_event",
        {"symbols": ["GOLD", "OIL"], "source": "http", "url": url, "fields": FIELDS},
        egress=(provider_server,),
    )["events"][0]["payload"]
    assert event["tickers"] == ["GOLD", "OIL"] and event["prices_e8"] == [192350000000, 4107000000]
    assert event["market_open"] is False and event["feed"] == "http"  # open only if every provider says so
    assert event["day"] == dt.datetime.now(dt.UTC).date().isoformat()
    with pytest.raises(RegionError) as caught:  # the provider has no such symbol: HTTP 404
        regions.call(
            "quote", {"symbol": "XYZ", "source": "http", "url": url, "fields": FIELDS}, egress=(provider_server,)
        )
    assert "answered HTTP 404" in caught.value.detail
    with pytest.raises(RegionError) as caught:  # a pointer to nothing
        regions.call(
            "quote",
            {"symbol": "OIL", "source": "http", "url": url, "fields": {"price": "/price"}},
            egress=(provider_server,),
        )
    assert "nothing at /price" in caught.value.detail


def test_a_provider_configured_in_the_package(regions, provider_server, tmp_path):
    package = tmp_path / "market_watcher"
    shutil.copytree(WATCHER, package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "sources.json").write_text(
        json.dumps({"providers": {"local": {"url": f"http://{provider_server}/q/{{symbol}}", "mapping": FIELDS}}})
    )
    payload = regions.call(
        "quote", {"symbol": "GOLD", "source": "http", "provider": "local"}, package=package, egress=(provider_server,)
    )["envelope"]["payload"]
    assert (payload["price"], payload["price_e8"]) == ("1923.5", 192350000000)
    with pytest.raises(RegionError) as caught:
        regions.call("quote", {"symbol": "GOLD", "source": "http", "provider": "nope"}, package=package)
    assert "provider must be one of ['local']" in caught.value.detail


# -- through the dev host ------------------------------------------------------------------------------
def test_market_event_through_the_host_verifies(fabric_host, registered, tmp_path):
    with fabric_host.client() as http:
        response = http.post(
            "/api/cryptlets/market_watcher/invoke",
            json={"method": "market_event", "args": {"symbols": ["SPX", "MSFT"], "date": "2008-10-10"}},
        )
    assert response.status_code == 200, response.text
    document = response.json()
    [event] = document.pop("events")
    assert document["payload"]["prices"] == [dict(SERIES["SPX"])["2008-10-10"], dict(SERIES["MSFT"])["2008-10-01"]]
    assert event["topic"] == "market_watcher.MarketEvent" and event["payload"]["market_open"] is True
    for signed in (document, event):
        path = tmp_path / f"{signed['topic']}.json"
        path.write_text(json.dumps(signed))
        verified = fabric_host.cli("verify", "--allow-software-evidence", str(path))
        assert verified.returncode == 0, verified.stderr
    header = fabric_host.cli("header", "market_watcher")
    assert header.returncode == 0, header.stderr
    assert "event MarketEvent(string day, bool market_open, string[] tickers, int256[] prices_e8" in header.stdout


def test_http_source_through_the_host_after_an_admin_allows_the_provider(fabric_host, registered, provider_server):
    args = {"symbol": "OIL", "source": "http", "url": f"http://{provider_server}/q/{{symbol}}", "fields": FIELDS}
    with fabric_host.client() as http:
        denied = http.post("/api/cryptlets/market_watcher/invoke", json={"method": "quote", "args": args})
        assert denied.status_code == 502 and "egress_denied" in denied.json()["detail"]
        with fabric_host.client(fabric_host.admin_key) as admin:
            policy = admin.put("/api/cryptlets/market_watcher/policy", json={"egress": [provider_server]})
        assert policy.status_code == 200, policy.text
        allowed = http.post("/api/cryptlets/market_watcher/invoke", json={"method": "quote", "args": args})
        bad = http.post("/api/cryptlets/market_watcher/invoke", json={"method": "quote", "args": {"symbol": "SPX"}})
    assert allowed.status_code == 200, allowed.text
    document = allowed.json()
    assert verify_envelope(Envelope.from_dict(document), registered["address"]) == registered["address"]
    assert document["payload"]["price"] == "41.0700" and document["payload"]["feed"] == "http"
    assert bad.status_code == 400 and bad.json()["field"] == "args"
