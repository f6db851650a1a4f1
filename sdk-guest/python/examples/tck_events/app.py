"""The TCK's event-sourced model (``tck-events``, see tests/tck/SPEC.md): ``process`` runs a
list of actions (emit, fail, forward, call, publish, schedule, cancel, broadcast) against the
state ``{"value": "<string>"}``, whose events are ``{"appended": "<string>"}``; ``get`` replies
the state; ``context`` replies the command context; ``on-message`` is the subscriber of topic
``tck-news`` (the one entity ``all``), emitting ``T@O:S;`` for each message. Its events are
published to ``tck-events-log``. The isolation actions (remember, which emits ``[G]`` for a
module-level global G; spin; crash) show whether the global survives from one command to
another (it must not); ``apply`` never reads G."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cella
from cella import BadRequest, Context, EventContext, reject

Action = tuple[str, Any]

#: The module-level global G of the isolation actions: what the last ``remember`` of this
#: module instance set.
remembered = ""


@dataclass
class TckEvents(cella.EventSourcedEntity):
    value: str = ""

    subscriptions = [cella.subscribe("tck-news", command="on-message", fixed_key="all")]
    events_topic = "tck-events-log"

    @cella.command
    def process(self, payload: Any, ctx: EventContext) -> dict[str, Any]:
        working = self.value
        for action, argument in parse_actions(payload, ("emit",)):
            if action == "emit":
                ctx.emit({"appended": argument})
                working += argument
            elif action == "remember":
                seen = remember(argument)
                ctx.emit({"appended": seen})
                working += seen
            else:
                run_common(action, argument, ctx)
        return {"value": working}

    @cella.command
    def get(self) -> dict[str, Any]:
        return {"value": self.value}

    @cella.command
    def context(self, ctx: EventContext) -> dict[str, Any]:
        return context_reply(ctx)

    @cella.command
    def on_message(self, message: Any, ctx: EventContext) -> dict[str, Any]:
        entry = message_entry(message, ctx)
        ctx.emit({"appended": entry})
        return {"value": self.value + entry}

    def apply(self, event: Any) -> None:
        match event:
            case {"appended": str(text)}:
                self.value += text
            case _:
                raise ValueError(f"unknown event {event!r}")


def message_entry(message: Any, ctx: Context) -> str:
    """``T@O:S;`` for the message ``{"to": ..., "text": S}`` of topic T at offset O."""
    delivered = ctx.message
    if delivered is None:
        raise BadRequest("command `on-message`: not the delivery of a topic message")
    if not isinstance(message, dict) or not isinstance(message.get("text"), str):
        raise BadRequest('command `on-message`: expected {"to": ..., "text": <string>}')
    return f"{delivered.topic}@{delivered.offset}:{message['text']};"


def remember(text: str) -> str:
    """The ``remember`` action: ``[G]`` for the global's content G before; then sets G to
    ``text``."""
    global remembered
    seen = f"[{remembered}]"
    remembered = text
    return seen


def spin(forever: bool) -> None:
    """The ``spin`` action: with ``True``, a busy loop that never ends (the node's deadline
    stops it); with ``False``, nothing."""
    turns = 0
    while forever:
        turns += 1


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
    """Runs an action both models share: fail, forward, call, publish, schedule, cancel,
    broadcast, spin, crash."""
    if action == "fail":
        reject(argument)
    elif action == "spin":
        spin(argument)
    elif action == "crash":
        raise RuntimeError(argument)
    elif action == "forward":
        ctx.forward(argument["type"], argument["key"], argument["command"], argument["payload"])
    elif action == "call":
        route = argument.get("replyTo")
        if route is None:
            ctx.call(argument["type"], argument["key"], argument["command"], argument["payload"])
        else:
            ctx.call(
                argument["type"],
                argument["key"],
                argument["command"],
                argument["payload"],
                reply_to=route["command"],
                correlation=route["correlation"],
            )
    elif action == "publish":
        ctx.publish(argument["topic"], argument["payload"])
    elif action == "schedule":
        ctx.schedule(
            argument["name"],
            argument["delayMs"],
            argument["command"],
            argument["payload"],
            every_ms=argument.get("everyMs"),
        )
    elif action == "cancel":
        ctx.cancel(argument)
    elif action == "broadcast":
        ctx.broadcast(argument["type"], argument["command"], argument["payload"])


#: The fields of each action with an object argument: name → (required string fields, integer
#: fields, optional integer fields). Every such action also takes a JSON `payload` (null when
#: missing); `forward` and `call` take an optional `replyTo` (`call` only uses it).
OBJECT_ACTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "forward": (("type", "key", "command"), (), ()),
    "call": (("type", "key", "command"), (), ()),
    "publish": (("topic",), (), ()),
    "schedule": (("name", "command"), ("delayMs",), ("everyMs",)),
    "broadcast": (("type", "command"), (), ()),
}

#: The actions whose argument is a string, besides the model's state-changing ones.
STRING_ACTIONS = ("fail", "cancel", "remember", "crash")


def is_u64(number: Any) -> bool:
    return (
        isinstance(number, int) and not isinstance(number, bool) and 0 <= number <= cella.UINT64_MAX
    )


def is_reply_route(route: Any) -> bool:
    """Whether ``route`` is a ``replyTo`` argument: null (none) or a command and a correlation."""
    return route is None or (
        isinstance(route, dict)
        and isinstance(route.get("command"), str)
        and isinstance(route.get("correlation"), str)
    )


def parse_actions(payload: Any, changes: tuple[str, ...]) -> list[Action]:
    """Checks the whole payload ``{"actions": [...]}`` before anything runs. ``changes`` are the
    state-changing actions of the model (``update`` and ``append``, or ``emit``); anything else
    is a bad request."""
    if not isinstance(payload, dict) or not isinstance(payload.get("actions"), list):
        raise BadRequest('command `process`: expected {"actions": [...]}')
    actions: list[Action] = []
    for i, action in enumerate(payload["actions"]):
        where = f"command `process`: action {i}"
        if not isinstance(action, dict) or len(action) != 1:
            raise BadRequest(f"{where}: expected an object with one key")
        ((name, argument),) = action.items()
        if name in changes or name in STRING_ACTIONS:
            if not isinstance(argument, str):
                raise BadRequest(f"{where}: `{name}` takes a string")
        elif name == "spin":
            if not isinstance(argument, bool):
                raise BadRequest(f"{where}: `spin` takes a boolean")
        elif name in OBJECT_ACTIONS:
            strings, integers, optional_integers = OBJECT_ACTIONS[name]
            if not isinstance(argument, dict):
                raise BadRequest(f"{where}: `{name}` takes an object")
            for field in strings:
                if not isinstance(argument.get(field), str):
                    raise BadRequest(f"{where}: `{name}.{field}` must be a string")
            for field in integers:
                if not is_u64(argument.get(field)):
                    raise BadRequest(f"{where}: `{name}.{field}` must be an unsigned integer")
            for field in optional_integers:
                number = argument.get(field)
                if number is not None and not is_u64(number):
                    raise BadRequest(f"{where}: `{name}.{field}` must be an unsigned integer")
            route = argument.get("replyTo")
            if name in ("forward", "call") and not is_reply_route(route):
                raise BadRequest(
                    f"{where}: `{name}.replyTo` must be "
                    '{"command": <string>, "correlation": <string>} (or be left out)'
                )
            argument = {**argument, "payload": argument.get("payload")}
        else:
            raise BadRequest(f"{where}: unknown action `{name}`")
        actions.append((name, argument))
    return actions


Entity = cella.export(TckEvents)
