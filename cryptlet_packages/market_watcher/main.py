"""MarketWatcher: market prices from pluggable sources, signed as quotes and as the paper's MarketEvent.

Sources (see README.md in this folder):

* ``replay`` (default): historical prices shipped with the package (``data/``, from the npm package
  vega-datasets 2.8.0, BSD-3-Clause): ``SPX`` — daily S&P 500 closes 2007-01-03 .. 2010-12-31 — and
  ``AAPL``, ``AMZN``, ``GOOG``, ``IBM``, ``MSFT`` — monthly prices 2000-01 .. 2010-03. A quote at a
  date is the last price at or before it. ``date`` names it, or ``clock`` maps the host clock
  onto history (the replay clock) so a schedule steps through the past.
* ``http``: a JSON price provider reached through the host's ``fetch`` (egress allow-list applies):
  ``url`` (``{symbol}`` is replaced) or a ``provider`` named in ``sources.json``; ``fields`` gives
  JSON pointers (RFC 6901) to the price, its time and (for ``market_event``) the market-open flag.

Only the standard library and ``cryptlet_sdk`` are imported: a package never imports host code.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import json
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import quote as url_quote

from cryptlet_sdk import UtilityCryptlet, method

HERE = Path(__file__).resolve().parent
#: Prices are also given as integers scaled by 10**PRICE_DECIMALS (``price_e8``) for contracts.
PRICE_DECIMALS = 8
DAILY_SYMBOL = "SPX"
SOURCES = ("replay", "http")
DEFAULT_MAPPING = {"price": "/price", "time": "/time", "open": "/market_open"}
MAX_SYMBOLS = 8
SYMBOL = re.compile(r"^[A-Za-z0-9.-]{1,16}$")


class Series:
    """One symbol's history: sorted ISO dates and the price text exactly as in the CSV."""

    def __init__(self, symbol: str, frequency: str) -> None:
        self.symbol = symbol
        self.frequency = frequency
        self.dates: list[str] = []
        self.prices: list[str] = []

    def at(self, day: str) -> tuple[str, str]:
        """(date, price) of the last observation at or before ``day``."""
        index = bisect.bisect_right(self.dates, day) - 1
        if index < 0:
            raise ValueError(f"{self.symbol} has no price at or before {day} (replay data starts {self.dates[0]})")
        return self.dates[index], self.prices[index]


def _load() -> dict[str, Series]:
    series: dict[str, Series] = {DAILY_SYMBOL: Series(DAILY_SYMBOL, "daily")}
    with open(HERE / "data" / "sp500_daily.csv", newline="") as file:
        for row in csv.DictReader(file):
            series[DAILY_SYMBOL].dates.append(row["date"])
            series[DAILY_SYMBOL].prices.append(row["close"])
    with open(HERE / "data" / "stocks.csv", newline="") as file:
        for row in csv.DictReader(file):  # "MSFT,Jan 1 2000,39.81": monthly observations
            day = dt.datetime.strptime(row["date"], "%b %d %Y").date().isoformat()
            found = series.setdefault(row["symbol"], Series(row["symbol"], "monthly"))
            found.dates.append(day)
            found.prices.append(row["price"])
    for found in series.values():
        pairs = sorted(zip(found.dates, found.prices, strict=False))
        found.dates, found.prices = [d for d, _ in pairs], [p for _, p in pairs]
    return series


def _config() -> dict[str, Any]:
    path = HERE / "sources.json"
    return json.loads(path.read_text()) if path.exists() else {}


def scaled(price: str) -> int:
    """``price`` (decimal text) as an integer scaled by 10**8, rounded half-even."""
    try:
        value = Decimal(price)
    except InvalidOperation:
        raise ValueError(f"price {price!r} is not a decimal number") from None
    if not value.is_finite():
        raise ValueError(f"price {price!r} is not a finite number")
    return int((value * (10**PRICE_DECIMALS)).to_integral_value())


def _day(text: Any, field: str) -> str:
    """An ISO date (``2008-09-15``; a datetime's date part is taken) -> ``YYYY-MM-DD``."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"{field} must be an ISO date such as 2008-09-15")
    try:
        return dt.date.fromisoformat(text[:10]).isoformat()
    except ValueError:
        raise ValueError(f"{field} must be an ISO date such as 2008-09-15, not {text!r}") from None


def pointer(document: Any, path: str) -> Any:
    """Resolve a JSON pointer (RFC 6901: ``/data/0/price``); ``KeyError`` naming it if absent."""
    if path == "":
        return document
    if not path.startswith("/"):
        raise ValueError(f"JSON pointer {path!r} must start with /")
    node = document
    for raw in path[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        elif isinstance(node, dict) and token in node:
            node = node[token]
        else:
            raise LookupError(f"the provider's reply has nothing at {path}")
    return node


class MarketWatcher(UtilityCryptlet):
    """Quotes and market events from the replay data or an HTTP JSON provider."""

    def setup(self) -> None:
        self.series = _load()
        self.calendar = self.series[DAILY_SYMBOL].dates  # the S&P 500 closes on every NYSE trading day
        self.config = _config()

    # -- methods ------------------------------------------------------------------------------------
    @method
    def quote(
        self,
        symbol: str,
        source: str = "replay",
        date: str = "",
        clock: Any = None,
        url: str = "",
        provider: str = "",
        fields: Any = None,
    ) -> dict[str, Any]:
        """The price of ``symbol``: from the replay data (last at or before ``date`` / the replay clock)
        or from an HTTP JSON provider. Emits ``PriceQuoted``."""
        symbol = _symbol(symbol)
        if _source(source) == "replay":
            day = self._replay_day(date, clock)
            as_of, price = self._series(symbol).at(day)
        else:
            price, as_of, _ = self._http(symbol, url, provider, fields)
        result = {"ticker": symbol, "price": price, "price_e8": scaled(price), "as_of": as_of, "feed": source}
        self.context.emit("PriceQuoted", **result)
        return result

    @method
    def market_event(
        self,
        symbols: Any,
        source: str = "replay",
        date: str = "",
        clock: Any = None,
        url: str = "",
        provider: str = "",
        fields: Any = None,
    ) -> dict[str, Any]:
        """The paper's MarketEvent: several prices in one signed value, with whether the market was
        open on the event's day. Emits ``MarketEvent``."""
        if not isinstance(symbols, list) or not 1 <= len(symbols) <= MAX_SYMBOLS:
            raise ValueError(f"symbols must be a list of 1 to {MAX_SYMBOLS} symbols")
        names = [_symbol(s) for s in symbols]
        if len(set(names)) != len(names):
            raise ValueError("symbols must not repeat")
        prices: list[str] = []
        as_of: list[str] = []
        if _source(source) == "replay":
            day = self._replay_day(date, clock)
            market_open = self._trading_day(day)
            for name in names:
                when, price = self._series(name).at(day)
                prices.append(price)
                as_of.append(when)
        else:
            day = self.context.now().date().isoformat()
            opens = []
            for name in names:
                price, when, is_open = self._http(name, url, provider, fields, want_open=True)
                prices.append(price)
                as_of.append(when)
                opens.append(is_open)
            market_open = all(opens)
        result = {
            "day": day,
            "market_open": market_open,
            "tickers": names,
            "prices": prices,
            "prices_e8": [scaled(p) for p in prices],
            "as_of": as_of,
            "feed": source,
        }
        self.context.emit("MarketEvent", **{k: v for k, v in result.items() if k != "prices"})
        return result

    @method
    def replay_range(self) -> dict[str, Any]:
        """What the replay source holds: each symbol's frequency and first and last date."""
        return {
            "symbols": {
                s.symbol: {
                    "frequency": s.frequency,
                    "first": s.dates[0],
                    "last": s.dates[-1],
                    "observations": len(s.dates),
                }
                for s in self.series.values()
            },
            "calendar": {"first": self.calendar[0], "last": self.calendar[-1]},
        }

    # -- replay -------------------------------------------------------------------------------------
    def _series(self, symbol: str) -> Series:
        if symbol not in self.series:
            raise ValueError(f"replay has no symbol {symbol!r} (it has {', '.join(sorted(self.series))})")
        return self.series[symbol]

    def _trading_day(self, day: str) -> bool:
        if not self.calendar[0] <= day <= self.calendar[-1]:
            raise ValueError(
                f"market_open is known only from {self.calendar[0]} to {self.calendar[-1]} "
                "(the daily S&P 500 data's trading days)"
            )
        index = bisect.bisect_left(self.calendar, day)
        return index < len(self.calendar) and self.calendar[index] == day

    def _replay_day(self, date: str, clock: Any) -> str:
        """The historical date a replay call is about: ``date``, or the replay clock's date now."""
        if date and clock:
            raise ValueError("give either date or clock, not both")
        if date:
            return _day(date, "date")
        if not clock:
            raise ValueError("replay needs date (an ISO date) or clock")
        return self._clock_day(clock)

    def _clock_day(self, clock: Any) -> str:
        """Replay clock: ``{"start": date, "epoch_ms": unix ms, "step_ms": 1000, "unit": "trading_day"}``.

        ``steps = floor((host now - epoch_ms) / step_ms)``; the date is ``steps`` trading days (unit
        ``trading_day``: days of the daily S&P 500 data, starting at the first one at or after
        ``start``) or calendar days (unit ``day``) after ``start``. So a schedule firing every
        ``step_ms`` from ``epoch_ms`` on steps through history one day per fire.
        """
        if not isinstance(clock, dict) or set(clock) - {"start", "epoch_ms", "step_ms", "unit"}:
            raise ValueError("clock must be {start, epoch_ms, step_ms?, unit?}")
        start = _day(clock.get("start"), "clock.start")
        epoch_ms, step_ms = clock.get("epoch_ms"), clock.get("step_ms", 1000)
        unit = clock.get("unit", "trading_day")
        if isinstance(epoch_ms, bool) or not isinstance(epoch_ms, int) or epoch_ms < 0:
            raise ValueError("clock.epoch_ms must be unix milliseconds")
        if isinstance(step_ms, bool) or not isinstance(step_ms, int) or step_ms <= 0:
            raise ValueError("clock.step_ms must be a positive number of milliseconds")
        if unit not in ("trading_day", "day"):
            raise ValueError("clock.unit must be trading_day or day")
        elapsed = self.context.now_ms() - epoch_ms
        if elapsed < 0:
            raise ValueError("the replay clock has not started yet (epoch_ms is in the future)")
        steps = elapsed // step_ms
        if unit == "day":
            return (dt.date.fromisoformat(start) + dt.timedelta(days=steps)).isoformat()
        first = bisect.bisect_left(self.calendar, start)
        if first + steps >= len(self.calendar):
            raise ValueError(f"the replay clock ran past the end of the daily data ({self.calendar[-1]})")
        return self.calendar[first + steps]

    # -- http ---------------------------------------------------------------------------------------
    def _http(
        self, symbol: str, url: str, provider: str, fields: Any, want_open: bool = False
    ) -> tuple[str, str, bool]:
        """(price text, as-of, market open) from a JSON provider, fetched through the host."""
        template, paths = url, dict(DEFAULT_MAPPING)
        if provider:
            known = self.config.get("providers") or {}
            if url or provider not in known:
                raise ValueError(f"provider must be one of {sorted(known)} (and then no url)")
            template = known[provider]["url"]
            paths.update(known[provider].get("mapping") or {})
        if not isinstance(template, str) or not template.startswith(("http://", "https://")):
            raise ValueError("the http source needs url (http:// or https://, {symbol} is replaced) or provider")
        if fields is not None:
            if (
                not isinstance(fields, dict)
                or set(fields) - set(DEFAULT_MAPPING)
                or not all(isinstance(v, str) for v in fields.values())
            ):
                raise ValueError("fields must be {price?, time?, open?}: JSON pointers")
            paths.update(fields)
        response = self.context.fetch(
            template.replace("{symbol}", url_quote(symbol, safe="")),
            headers={"Accept": "application/json"},
            timeout_s=5,
        )
        response.raise_for_status()
        try:
            document = json.loads(response.body, parse_float=Decimal)  # exact decimal text, no float rounding
        except ValueError:
            raise LookupError("the provider did not answer JSON") from None
        raw = pointer(document, paths["price"])
        if isinstance(raw, bool) or not isinstance(raw, (int, Decimal, str)):
            raise LookupError(f"the provider's price at {paths['price']} is not a number")
        price = str(raw)
        try:
            scaled(price)
        except ValueError as exc:
            raise LookupError(f"the provider's price at {paths['price']}: {exc}") from None
        as_of = self.context.now().isoformat(timespec="seconds")
        if paths.get("time"):
            try:
                as_of = _timestamp(pointer(document, paths["time"]))
            except LookupError:
                pass  # no time in the reply: the host clock at the fetch
        is_open = True
        if want_open:
            value = pointer(document, paths["open"])
            if not isinstance(value, bool):
                raise LookupError(f"the provider's market-open flag at {paths['open']} is not a boolean")
            is_open = value
        return price, as_of, is_open


def _timestamp(value: Any) -> str:
    """A provider's time (ISO text, unix seconds or unix milliseconds) as ISO 8601 UTC."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise LookupError("the provider's time is neither ISO text nor a unix time")
    seconds = float(value) / 1000 if value > 10**11 else float(value)
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).isoformat(timespec="seconds")


def _symbol(symbol: Any) -> str:
    if not isinstance(symbol, str) or not SYMBOL.match(symbol):
        raise ValueError(f"symbol must be 1-16 letters, digits, '.' or '-', not {symbol!r}")
    return symbol.upper()


def _source(source: Any) -> str:
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}")
    return source
