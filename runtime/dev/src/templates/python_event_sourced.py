"""`{{name}}`: a Cella event-sourced entity, made with `cella new --lang python`. A ledger:
`deposit` and `withdraw` (an amount) record events and reply the new balance, `balance` replies
it. A withdrawal larger than the balance is rejected. The state is the fold of the events.

Build it with `cella build` (componentize-py makes target/{{name}}.wasm), test it with
`python3 -m unittest`, then try
`curl -X POST localhost:8080/v1/entities/{{name}}/alice/deposit -d 10` on a node it is deployed
to.
"""

from dataclasses import dataclass

import cella
from cella import EventContext, reject, uint64


@dataclass
class Deposited:
    """Event `{"deposited": {"amount": N}}`."""

    amount: int


@dataclass
class Withdrawn:
    """Event `{"withdrawn": {"amount": N}}`."""

    amount: int


@dataclass
class Ledger(cella.EventSourcedEntity):
    """The state: rebuilt by folding the events with `apply`."""

    balance: int = 0

    event_types = (Deposited, Withdrawn)

    @cella.command
    def deposit(self, amount: uint64, ctx: EventContext) -> dict:
        if amount == 0:
            reject("a deposit must be positive")
        if self.balance + amount > cella.UINT64_MAX:
            reject(f"depositing {amount} would overflow the balance")
        ctx.emit(Deposited(amount))
        return {"balance": self.balance + amount}

    @cella.command
    def withdraw(self, amount: uint64, ctx: EventContext) -> dict:
        if amount == 0:
            reject("a withdrawal must be positive")
        if amount > self.balance:
            reject(f"cannot withdraw {amount}: the balance is {self.balance}")
        ctx.emit(Withdrawn(amount))
        return {"balance": self.balance - amount}

    @cella.command("balance")
    def get_balance(self) -> dict:
        return {"balance": self.balance}

    def apply(self, event: Deposited | Withdrawn) -> None:
        match event:
            case Deposited(amount=amount):
                self.balance = min(self.balance + amount, cella.UINT64_MAX)
            case Withdrawn(amount=amount):
                self.balance = max(self.balance - amount, 0)


# The component's export: componentize-py looks for the class named `Entity`.
Entity = cella.export(Ledger)
