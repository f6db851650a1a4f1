"""The ``cella:entity@0.2.0`` protocol in plain Python: what the SDK's glue takes and returns.
The component adapter converts these to and from the generated WIT bindings; the test kit uses
them directly, so unit tests run the same code as a component without building one."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Call",
    "Cancel",
    "Descriptor",
    "Effect",
    "GuestError",
    "HostContext",
    "Outcome",
    "Publication",
    "ReplyRoute",
    "Timer",
]

#: The ``entity-kind`` names.
VALUE = "value"
EVENT_SOURCED = "event-sourced"


@dataclass(frozen=True)
class Descriptor:
    """What the entity declares about itself (``describe``)."""

    kind: str
    commands: list[str]
    snapshot_every: int = 0


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


Effect = Call | Publication | Timer | Cancel


@dataclass
class Outcome:
    """What a successful handler produced (the WIT ``outcome``)."""

    events: list[bytes] = field(default_factory=list)
    state: bytes | None = None
    reply: str = "null"
    forward: Call | None = None
    effects: list[Effect] = field(default_factory=list)


class GuestError(Exception):
    """The string error of ``apply``, ``render-state`` and ``render-event``."""
