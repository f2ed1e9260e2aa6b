"""Test contract cryptlet for the event engine.

``count`` adds one to a counter in the fabric-kept state (so a test can see how many times the
fabric really invoked it); ``observe`` replays a fixed price sequence, one value per call, then
stays at the last value: deterministic input for threshold triggers.
"""
from cryptlet_sdk import ContractCryptlet, method

PRICES = [38.0, 41.0, 42.0, 39.8, 39.0, 40.5, 39.2, 38.0, 42.0]


class Counter(ContractCryptlet):
    @method
    def count(self, label: str = "", event=None) -> dict:
        n = self.state.get("count", 0) + 1
        self.state["count"] = n
        return {"count": n, "label": label}

    @method
    def observe(self) -> dict:
        i = self.state.get("i", 0)
        self.state["i"] = i + 1
        return {"i": i, "price": PRICES[min(i, len(PRICES) - 1)]}
