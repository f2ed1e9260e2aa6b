"""Test cryptlet for the event engine: ``tick`` echoes what it was given (a webhook's event, a label)
with the region's clock; ``refuse`` always rejects its arguments (a 4xx the engine delivers as failed)."""
from cryptlet_sdk import UtilityCryptlet, method


class Ticker(UtilityCryptlet):
    @method
    def tick(self, label: str = "", event=None) -> dict:
        return {"label": label, "event": event, "now_ms": self.context.now_ms()}

    @method
    def refuse(self, label: str = "", event=None) -> dict:
        raise ValueError("this method refuses every call")
