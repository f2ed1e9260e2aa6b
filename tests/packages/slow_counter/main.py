"""Test contract cryptlet: ``count`` sleeps ``sleep_s`` seconds (the host can be killed meanwhile),
then adds one to ``count`` in the fabric-kept state."""
import time

from cryptlet_sdk import ContractCryptlet, method


class SlowCounter(ContractCryptlet):
    @method
    def count(self, sleep_s: int = 0) -> dict:
        time.sleep(min(max(int(sleep_s), 0), 8))
        n = self.state.get("count", 0) + 1
        self.state["count"] = n
        return {"count": n}
