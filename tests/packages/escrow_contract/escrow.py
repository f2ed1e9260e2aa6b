"""Test contract cryptlet: balances per party in the fabric-kept state, events on each change."""
from cryptlet_sdk import ContractCryptlet, method


class Escrow(ContractCryptlet):
    @method
    def deposit(self, party: str, amount: int) -> dict:
        if not isinstance(amount, int) or amount <= 0:
            raise ValueError("amount must be a positive integer")
        balance = self.state.get(party, 0) + amount
        self.state[party] = balance
        self.context.emit("Deposited", party=party, amount=amount)
        self.context.log(f"deposit by {party}")
        return {"balance": balance}

    @method
    def release(self, party: str) -> dict:
        amount = self.state.get(party, 0)
        self.state.delete(party)
        self.context.emit("Released", party=party, amount=amount)
        return {"released": amount}

    @method
    def balance(self, party: str) -> dict:
        return {"balance": self.snapshot().get(party, 0)}

    @method
    def emit_many(self, count: int) -> dict:
        for _ in range(count):
            self.context.emit("Released", party="x", amount=0)
        return {}

    def not_a_method(self) -> None:
        """Not in the interface: never callable through the fabric."""
