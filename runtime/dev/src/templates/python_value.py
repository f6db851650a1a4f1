"""`{{name}}`: a Cella value entity, made with `cella new --lang python`. Its state is a running
total: `add` (an integer) adds to it and replies the new total, `get` replies it.

Build it with `cella build` (componentize-py makes target/{{name}}.wasm), test it with
`python3 -m unittest`, then try
`curl -X POST localhost:8080/v1/entities/{{name}}/alice/add -d 5` on a node it is deployed to.
"""

from dataclasses import dataclass

import cella
from cella import int64, reject


@dataclass
class Counter(cella.ValueEntity):
    """The state: persisted whole (as JSON) after every command that changes it."""

    total: int64 = 0

    @cella.command
    def add(self, n: int64) -> int:
        total = self.total + n
        if not cella.INT64_MIN <= total <= cella.INT64_MAX:
            reject(f"adding {n} would overflow the total")
        self.total = total
        return total

    @cella.command
    def get(self) -> int:
        return self.total


# The component's export: componentize-py looks for the class named `Entity`.
Entity = cella.export(Counter)
