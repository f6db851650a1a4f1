"""The ``cella:entity@0.2.0`` protocol in plain Python: what the SDK's glue takes and returns.
The component adapter converts these to and from the generated WIT bindings; the test kit uses
them directly, so unit tests run the same code as a component without building one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Broadcast",
    "Call",
    "Cancel",
    "CrdtOp",
    "Descriptor",
    "Effect",
    "GuestError",
    "HostContext",
    "Outcome",
    "Publication",
    "ReplyRoute",
    "Subscription",
    "Timer",
    "TopicMessage",
]

#: The ``entity-kind`` names.
VALUE = "value"
EVENT_SOURCED = "event-sourced"
CRDT = "crdt"

#: The ``crdt-type`` names, in the WIT's order.
CRDT_TYPES = (
    "g-counter",
    "pn-counter",
    "g-set",
    "or-set",
    "lww-register",
    "flag",
    "or-map",
    "vote",
)
#: The ``consistency`` names, weakest first.
CONSISTENCIES = ("local", "majority", "all")
#: The ``crdt-action`` names.
CRDT_ACTIONS = (
    "increment",
    "decrement",
    "add",
    "remove",
    "set",
    "enable",
    "disable",
    "vote",
    "delete",
    "clear",
)


@dataclass(frozen=True)
class Subscription:
    """Entities of the type receive the messages of ``topic`` as the command ``command`` (the
    payload is the message). Which entity receives a message is said by exactly one of ``key``,
    a JSON pointer (RFC 6901) into the message naming the entity (a string or number there; an
    array of them names one entity per element), and ``fixed_key``, always that one entity.
    Made by :func:`cella.subscribe`."""

    topic: str
    command: str
    key: str | None = None
    fixed_key: str | None = None

    def keys_of(self, message: Any) -> list[str]:
        """The keys of the entities that receive ``message`` (JSON data), as the host picks
        them; ``[]`` when the message has no usable key there (the host does not deliver it)."""
        if self.fixed_key is not None:
            return [self.fixed_key]
        found, at = _pointer(message, self.key or "")
        if not found:
            return []
        keys = [_key(item) for item in (at if isinstance(at, list) else [at])]
        return [] if None in keys else [key for key in keys if key is not None]


@dataclass(frozen=True)
class Descriptor:
    """What the entity declares about itself (``describe``)."""

    kind: str
    commands: list[str]
    snapshot_every: int = 0
    subscriptions: list[Subscription] = field(default_factory=list)
    #: Event-sourced: the topic every persisted event is published to.
    events_topic: str | None = None
    #: Whether the state outlives the node's process: ``False`` for ``durable``.
    ephemeral: bool = False
    #: crdt entities: the type of their data (one of :data:`CRDT_TYPES`); ``None`` otherwise.
    crdt: str | None = None


@dataclass(frozen=True)
class TopicMessage:
    """Where a message delivered to a subscriber comes from: its ``topic`` and its ``offset``
    there (1 for the first message ever published to the topic)."""

    topic: str
    offset: int


@dataclass(frozen=True)
class HostContext:
    """The host's command context (the WIT ``context`` record has the same attributes)."""

    entity_type: str
    key: str
    command_id: str
    command: str
    timestamp_ms: int
    random_seed: int
    sequence: int
    #: Set when the command is the reply route of a call: the correlation the caller gave.
    correlation: str | None = None
    #: Set when a timer fired the command: the timer's name.
    timer: str | None = None
    #: Set when the command delivers a message of a topic the type subscribes to.
    message: TopicMessage | None = None


@dataclass(frozen=True)
class ReplyRoute:
    """Where the outcome of a call goes: ``command`` on the caller, with ``correlation``."""

    command: str
    correlation: str


@dataclass(frozen=True)
class Call:
    """A command to an entity; ``payload`` is JSON text. A forward has no ``reply_to``."""

    entity_type: str
    key: str
    command: str
    payload: str
    reply_to: ReplyRoute | None = None


@dataclass(frozen=True)
class Publication:
    """A message to a topic; ``payload`` is JSON text."""

    topic: str
    payload: str


@dataclass(frozen=True)
class Timer:
    """A command to this same entity after ``delay_ms``, then every ``every_ms`` if set;
    ``payload`` is JSON text."""

    name: str
    delay_ms: int
    command: str
    payload: str
    every_ms: int | None = None


@dataclass(frozen=True)
class Cancel:
    """Cancels this entity's timer ``name``."""

    name: str


@dataclass(frozen=True)
class Broadcast:
    """``command`` with ``payload`` (JSON text) to every entity of ``entity_type`` that exists
    when the host carries it out."""

    entity_type: str
    command: str
    payload: str


Effect = Call | Publication | Timer | Cancel | Broadcast


@dataclass(frozen=True)
class CrdtOp:
    """One operation on a crdt entity's data (the WIT ``crdt-op``): ``action`` is one of
    :data:`CRDT_ACTIONS` and ``argument`` its payload: the amount (an ``int``) of ``increment``
    and ``decrement``, the JSON text of the element or value of ``add``, ``remove`` and
    ``set``, the ``bool`` of ``vote``, the key of ``delete``, ``None`` for the others.
    ``path`` is the or-map keys leading to the data (empty: the entity's own data);
    ``creates`` the type that data gets if this operation creates it."""

    path: tuple[str, ...]
    action: str
    argument: int | str | bool | None = None
    creates: str | None = None


@dataclass
class Outcome:
    """What a successful handler produced (the WIT ``outcome``)."""

    events: list[bytes] = field(default_factory=list)
    state: bytes | None = None
    reply: str = "null"
    forward: Call | None = None
    effects: list[Effect] = field(default_factory=list)
    #: crdt entities: the operations to apply, in order.
    crdt_ops: list[CrdtOp] = field(default_factory=list)
    #: crdt entities: how many nodes hold the change before the reply (a
    #: :data:`CONSISTENCIES` name).
    consistency: str = "local"


def is_name(name: Any) -> bool:
    """Whether ``name`` is a valid entity key, topic or command name for the host: 1 to 256
    bytes of UTF-8, no ``/`` and no control character."""
    return (
        isinstance(name, str)
        and 0 < len(name.encode("utf-8", "surrogatepass")) <= 256
        and not any(c == "/" or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name)
    )


def _key(value: Any) -> str | None:
    """A subscriber key from the message: a string, or a number as JSON writes it."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        value = json.dumps(value)
    return value if is_name(value) else None


def _pointer(document: Any, pointer: str) -> tuple[bool, Any]:
    """Resolves the JSON pointer ``pointer`` (RFC 6901) in ``document``: ``(found, value)``."""
    if pointer == "":
        return True, document
    if not pointer.startswith("/"):
        return False, None
    at = document
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(at, dict) and token in at:
            at = at[token]
        elif (
            isinstance(at, list)
            and token.isascii()
            and token.isdigit()
            and (token == "0" or not token.startswith("0"))
            and int(token) < len(at)
        ):
            at = at[int(token)]
        else:
            return False, None
    return True, at


class GuestError(Exception):
    """The string error of ``apply``, ``render-state`` and ``render-event``."""
