"""Example value entity: a counter. ``add`` (an integer) replies the new total; ``get`` the
total. State: ``{"total": N}``, N a signed 64-bit integer."""

from dataclasses import dataclass

import cella
from cella import int64, reject


@dataclass
class Counter(cella.ValueEntity):
    total: int64 = 0

    @cella.command
    def add(self, n: int64) -> int:
        total = self.total + n
        if not cella.INT64_MIN <= total <= cella.INT64_MAX:
            reject(f"adding {n} overflows")
        self.total = total
        return total

    @cella.command
    def get(self) -> int:
        return self.total


Entity = cella.export(Counter)
