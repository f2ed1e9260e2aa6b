"""Monte Carlo pricing of a European option under Black-Scholes dynamics: a long job with progress.

``price_european`` simulates ``paths`` terminal prices of geometric Brownian motion,
``S_T = S_0 * exp((r - sigma^2 / 2) T + sigma sqrt(T) Z)`` with ``Z ~ N(0, 1)`` drawn by
``random.Random(seed)`` (pure Python: the package imports only the standard library and
``cryptlet_sdk``), and returns the discounted mean payoff, its standard error and the path count.
The paths run in chunks; after each one the cryptlet reports its progress to the host
(``self.context.progress``), which ``GET /api/requests/{request_id}/progress`` shows while the call
runs. The same arguments and seed give the same result on the same Python version.
"""

from __future__ import annotations

import math
import random
from decimal import Decimal, InvalidOperation
from typing import Any

from cryptlet_sdk import UtilityCryptlet, method

MAX_PATHS = 2_000_000
MAX_CHUNKS = 20
#: Results are also given as integers scaled by 10**8 (``price_e8``, ``std_error_e8``) for contracts.
SCALE = 10**8


def _number(value: Any, field: str, *, positive: bool = True, allow_zero: bool = False) -> float:
    """A decimal argument: a JSON number or decimal text (``"0.05"``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{field} must be a number or decimal text")
    try:
        number = float(Decimal(str(value)))
    except InvalidOperation:
        raise ValueError(f"{field} must be a number or decimal text, not {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{field} must be finite")
    if positive and (number < 0 or (number == 0 and not allow_zero)):
        raise ValueError(f"{field} must be {'non-negative' if allow_zero else 'positive'}")
    return number


def _decimal(value: float) -> str:
    return f"{value:.8f}"


class OptionPricer(UtilityCryptlet):
    """Prices European calls and puts by Monte Carlo, reporting progress as it goes."""

    @method
    def price_european(
        self,
        spot: Any,
        strike: Any,
        rate: Any,
        volatility: Any,
        maturity_years: Any,
        paths: int,
        seed: int,
        kind: str = "call",
    ) -> dict[str, Any]:
        s0 = _number(spot, "spot")
        k = _number(strike, "strike")
        r = _number(rate, "rate", positive=False)
        sigma = _number(volatility, "volatility", allow_zero=True)
        t = _number(maturity_years, "maturity_years")
        if kind not in ("call", "put"):
            raise ValueError("kind must be call or put")
        if isinstance(paths, bool) or not isinstance(paths, int) or not 2 <= paths <= MAX_PATHS:
            raise ValueError(f"paths must be an integer from 2 to {MAX_PATHS}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise ValueError("seed must be an integer from 0 to 2^64 - 1")

        rng = random.Random(seed)
        drift = (r - 0.5 * sigma * sigma) * t
        diffusion = sigma * math.sqrt(t)
        call = kind == "call"
        chunks = min(MAX_CHUNKS, paths)
        total = total_sq = 0.0
        done = 0
        self.context.progress(0.0, f"0/{paths} paths")
        for chunk in range(chunks):
            size = paths * (chunk + 1) // chunks - done
            gauss = rng.gauss
            for _ in range(size):
                terminal = s0 * math.exp(drift + diffusion * gauss(0.0, 1.0))
                payoff = terminal - k if call else k - terminal
                if payoff > 0:
                    total += payoff
                    total_sq += payoff * payoff
            done += size
            self.context.progress(done / paths, f"{done}/{paths} paths")
        discount = math.exp(-r * t)
        mean = total / paths
        variance = max(total_sq / paths - mean * mean, 0.0) * paths / (paths - 1)
        price = discount * mean
        std_error = discount * math.sqrt(variance / paths)
        terms = {
            "spot": str(spot),
            "strike": str(strike),
            "rate": str(rate),
            "volatility": str(volatility),
            "maturity_years": str(maturity_years),
        }
        result = {
            "price": _decimal(price),
            "std_error": _decimal(std_error),
            "price_e8": round(price * SCALE),
            "std_error_e8": round(std_error * SCALE),
            "path_count": paths,
            "rng_seed": seed,
            "option": kind,
            "terms": terms,
        }
        self.context.emit(
            "OptionPriced",
            option=kind,
            price_e8=result["price_e8"],
            std_error_e8=result["std_error_e8"],
            path_count=paths,
            rng_seed=seed,
        )
        return result
