"""The TCK's value model (``tck-value``, see tests/tck/SPEC.md): ``process`` runs a list of
actions (update, fail, forward, call, publish, schedule) against the state
``{"value": "<string>"}``; ``get`` replies the state; ``context`` replies the command context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cella
from cella import BadRequest, Context, reject

Action = tuple[str, Any]


@dataclass
class TckValue(cella.ValueEntity):
    value: str = ""

    @cella.command
    def process(self, payload: Any, ctx: Context) -> dict[str, Any]:
        for action, argument in parse_actions(payload, "update"):
            if action == "update":
                self.value = argument
            else:
                run_common(action, argument, ctx)
        return {"value": self.value}

    @cella.command
    def get(self) -> dict[str, Any]:
        return {"value": self.value}

    @cella.command
    def context(self, ctx: Context) -> dict[str, Any]:
        return context_reply(ctx)


def context_reply(ctx: Context) -> dict[str, Any]:
    """The command context as the TCK expects it."""
    return {
        "entityType": ctx.entity_type,
        "key": ctx.key,
        "command": ctx.command,
        "commandId": ctx.command_id,
        "sequence": ctx.sequence,
        "timestampMs": ctx.timestamp_ms,
        "randomSeed": ctx.random_seed,
    }


def run_common(action: str, argument: Any, ctx: Context) -> None:
    """Runs an action both models share: fail, forward, call, publish, schedule."""
    if action == "fail":
        reject(argument)
    elif action == "forward":
        ctx.forward(argument["type"], argument["key"], argument["command"], argument["payload"])
    elif action == "call":
        ctx.call(argument["type"], argument["key"], argument["command"], argument["payload"])
    elif action == "publish":
        ctx.publish(argument["topic"], argument["payload"])
    elif action == "schedule":
        ctx.schedule(
            argument["name"], argument["delayMs"], argument["command"], argument["payload"]
        )


#: The fields of each action with an object argument: name → (required string fields, integer
#: fields). Every such action also takes a JSON `payload` (null when missing).
OBJECT_ACTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "forward": (("type", "key", "command"), ()),
    "call": (("type", "key", "command"), ()),
    "publish": (("topic",), ()),
    "schedule": (("name", "command"), ("delayMs",)),
}


def parse_actions(payload: Any, change: str) -> list[Action]:
    """Checks the whole payload ``{"actions": [...]}`` before anything runs. ``change`` is the
    state-changing action of the model (``update`` or ``emit``); anything else is a bad
    request."""
    if not isinstance(payload, dict) or not isinstance(payload.get("actions"), list):
        raise BadRequest('command `process`: expected {"actions": [...]}')
    actions: list[Action] = []
    for i, action in enumerate(payload["actions"]):
        where = f"command `process`: action {i}"
        if not isinstance(action, dict) or len(action) != 1:
            raise BadRequest(f"{where}: expected an object with one key")
        ((name, argument),) = action.items()
        if name in (change, "fail"):
            if not isinstance(argument, str):
                raise BadRequest(f"{where}: `{name}` takes a string")
        elif name in OBJECT_ACTIONS:
            strings, integers = OBJECT_ACTIONS[name]
            if not isinstance(argument, dict):
                raise BadRequest(f"{where}: `{name}` takes an object")
            for field in strings:
                if not isinstance(argument.get(field), str):
                    raise BadRequest(f"{where}: `{name}.{field}` must be a string")
            for field in integers:
                number = argument.get(field)
                if (
                    not isinstance(number, int)
                    or isinstance(number, bool)
                    or not (0 <= number <= cella.UINT64_MAX)
                ):
                    raise BadRequest(f"{where}: `{name}.{field}` must be an unsigned integer")
            argument = {**argument, "payload": argument.get("payload")}
        else:
            raise BadRequest(f"{where}: unknown action `{name}`")
        actions.append((name, argument))
    return actions


Entity = cella.export(TckValue)
