"""The handler's view of the world: :class:`Context` (the journaled, host-chosen facts of a
command and the effects it asks for), :class:`EventContext` (a ``Context`` that also collects
events) and :class:`CrdtContext` (a ``Context`` that carries the write consistency of a crdt
entity's command)."""

from __future__ import annotations

from typing import Any, Literal, NoReturn

from . import _codec
from ._errors import EntityError
from ._protocol import (
    CONSISTENCIES,
    Broadcast,
    Call,
    Cancel,
    Effect,
    HostContext,
    Publication,
    ReplyRoute,
    Timer,
    TopicMessage,
)

__all__ = ["Consistency", "Context", "CrdtContext", "EventContext"]

#: A write consistency: how many nodes hold a crdt change before the command is answered.
Consistency = Literal["local", "majority", "all"]

_MASK = (1 << 64) - 1


class Context:
    """Everything a handler may know beyond its state and command, and the effects it asks for.

    All values are chosen by the host and journaled with the command, so a replay sees the same
    ones: use :attr:`timestamp_ms` instead of a clock and :meth:`random_u64` / :meth:`random`
    instead of the ``random`` module.

    Effects (:meth:`call`, :meth:`publish`, :meth:`broadcast`, :meth:`schedule`,
    :meth:`cancel`) run after the command's change is durable, and only if the command
    succeeds; the host carries each out exactly once. Payloads are JSON values or dataclasses.
    Misuse (a payload that is not JSON-serializable, a second :meth:`forward`) raises
    :class:`~cella.EntityError` and fails the command even if the handler catches it (the
    command is ``rejected`` with a message starting with ``entity error:``).
    """

    __slots__ = (
        "_entity_type",
        "_key",
        "_command_id",
        "_command",
        "_timestamp_ms",
        "_sequence",
        "_random_seed",
        "_correlation",
        "_timer",
        "_message",
        "_rng",
        "_effects",
        "_forward",
        "_error",
        "_no_effects",
    )

    def __init__(self, host: HostContext, no_effects: str | None = None) -> None:
        self._entity_type: str = host.entity_type
        self._key: str = host.key
        self._command_id: str = host.command_id
        self._command: str = host.command
        self._timestamp_ms: int = host.timestamp_ms
        self._sequence: int = host.sequence
        self._random_seed: int = host.random_seed
        self._correlation: str | None = getattr(host, "correlation", None)
        self._timer: str | None = getattr(host, "timer", None)
        message = getattr(host, "message", None)
        self._message: TopicMessage | None = (
            None if message is None else TopicMessage(topic=message.topic, offset=message.offset)
        )
        self._rng: int = host.random_seed
        self._effects: list[Effect] = []
        self._forward: Call | None = None
        self._error: EntityError | None = None
        #: Why this entity cannot have effects or a forward (``None``: it can).
        self._no_effects = no_effects

    @property
    def entity_type(self) -> str:
        """The entity's type (the name it is deployed under)."""
        return self._entity_type

    @property
    def key(self) -> str:
        """The entity's key."""
        return self._key

    @property
    def command_id(self) -> str:
        """The command's unique id, stable across replays and retries (usable as an idempotency
        key for effects)."""
        return self._command_id

    @property
    def command(self) -> str:
        """The command's name."""
        return self._command

    @property
    def timestamp_ms(self) -> int:
        """The time of the command chosen by the host, in milliseconds since the Unix epoch."""
        return self._timestamp_ms

    @property
    def sequence(self) -> int:
        """The entity's journal sequence number before this command (0 for a new entity)."""
        return self._sequence

    @property
    def random_seed(self) -> int:
        """The command's journaled random seed (an unsigned 64-bit integer)."""
        return self._random_seed

    @property
    def correlation(self) -> str | None:
        """The correlation of the call this command answers, when the command is the reply route
        of a :meth:`call` (its payload is then the call's outcome: see :class:`~cella.CallReply`);
        else ``None``."""
        return self._correlation

    @property
    def timer(self) -> str | None:
        """The name of the timer that fired this command (see :meth:`schedule`); else
        ``None``."""
        return self._timer

    @property
    def message(self) -> TopicMessage | None:
        """Where the message this command delivers comes from (its ``topic`` and ``offset``),
        when the command is the subscriber of a topic (see :func:`~cella.subscribe`; the
        payload is then the message); else ``None``."""
        return self._message

    def random_u64(self) -> int:
        """The next number of a deterministic pseudo-random sequence (splitmix64) seeded by the
        host's journaled seed: the same command sees the same numbers on every replay. The same
        sequence as the Rust SDK's ``Context::random_u64``."""
        self._rng = (self._rng + 0x9E3779B97F4A7C15) & _MASK
        z = self._rng
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def random(self) -> float:
        """The next number of the same sequence as a float in ``[0, 1)``."""
        return (self.random_u64() >> 11) * (1.0 / (1 << 53))

    def call(
        self,
        entity_type: str,
        key: str,
        command: str,
        payload: Any = None,
        *,
        reply_to: str | None = None,
        correlation: str = "",
    ) -> None:
        """Sends ``command`` with ``payload`` to the entity ``entity_type``/``key`` after this
        command commits; the host delivers it exactly once.

        Without ``reply_to`` the call is fire-and-forget: its reply is not seen by this entity.
        With ``reply_to="<command>"`` its outcome comes back to this entity as that command,
        with ``correlation`` as :attr:`correlation` in its context and the outcome as payload,
        ``{"ok": <reply>}`` or ``{"error": {"code": ..., "message": ...}}`` (type the reply
        route's payload with :class:`~cella.CallReply`). A rejection or failure of the call
        comes back this way too, as data."""
        self._effects_allowed("call")
        call = self._call(entity_type, key, command, payload)
        if reply_to is not None:
            self._string("reply_to command", reply_to)
            self._string("correlation", correlation)
            route = ReplyRoute(command=reply_to, correlation=correlation)
            call = Call(call.entity_type, call.key, call.command, call.payload, reply_to=route)
        elif correlation:
            self._fail(f"a correlation ({correlation!r:.40}) needs a reply_to command")
        self._effects.append(call)

    def publish(self, topic: str, payload: Any = None) -> None:
        """Publishes ``payload`` to ``topic`` after this command commits: the host appends it
        to the topic's durable log exactly once, from where it reaches the topic's subscribers
        (see :func:`~cella.subscribe`) and followers."""
        self._effects_allowed("publish")
        self._string("topic", topic)
        text = self._payload(f"publication to `{topic}`", payload)
        self._effects.append(Publication(topic=topic, payload=text))

    def broadcast(self, entity_type: str, command: str, payload: Any = None) -> None:
        """Sends ``command`` with ``payload`` to every entity of ``entity_type`` that exists
        (has state or events) when the host carries it out, after this command commits: each
        receives it exactly once, across all partitions and nodes. Replies are not seen."""
        self._effects_allowed("broadcast")
        self._string("entity type", entity_type)
        self._string("command", command)
        text = self._payload(f"broadcast of `{command}` to {entity_type}", payload)
        self._effects.append(Broadcast(entity_type=entity_type, command=command, payload=text))

    def schedule(
        self,
        name: str,
        delay_ms: int,
        command: str,
        payload: Any = None,
        *,
        every_ms: int | None = None,
    ) -> None:
        """Sends ``command`` with ``payload`` to this same entity ``delay_ms`` milliseconds after
        this command commits, and then every ``every_ms`` milliseconds until cancelled when
        ``every_ms`` is given. ``name`` identifies the timer: a timer of the same name replaces
        it, :meth:`cancel` cancels it, and the command it fires sees it as :attr:`timer`. Timers
        are durable."""
        self._effects_allowed("schedule")
        self._string("timer name", name)
        self._string("command", command)
        if not _codec._is_int(delay_ms) or not 0 <= delay_ms <= _codec.UINT64_MAX:
            self._fail(
                f"the delay of timer `{name}` must be an integer in 0..2^64, not {delay_ms!r}"
            )
        if every_ms is not None and (
            not _codec._is_int(every_ms) or not 0 <= every_ms <= _codec.UINT64_MAX
        ):
            self._fail(
                f"the period of timer `{name}` must be an integer in 0..2^64, not {every_ms!r}"
            )
        text = self._payload(f"timer `{name}`", payload)
        self._effects.append(
            Timer(name=name, delay_ms=delay_ms, command=command, payload=text, every_ms=every_ms)
        )

    def cancel(self, name: str) -> None:
        """Cancels this entity's timer ``name`` after this command commits (nothing happens if
        there is none)."""
        self._effects_allowed("cancel")
        self._string("timer name", name)
        self._effects.append(Cancel(name=name))

    def forward(self, entity_type: str, key: str, command: str, payload: Any = None) -> None:
        """Hands this command on to the entity ``entity_type``/``key`` as ``command`` with
        ``payload``: its reply becomes this command's reply (the handler's own reply is
        ignored). At most once per command."""
        self._effects_allowed("forward")
        if self._forward is not None:
            self._fail("forward called more than once")
        self._forward = self._call(entity_type, key, command, payload)

    def _effects_allowed(self, method: str) -> None:
        if self._no_effects is not None:
            self._fail(f"ctx.{method}: {self._no_effects}")

    def _call(self, entity_type: str, key: str, command: str, payload: Any) -> Call:
        self._string("entity type", entity_type)
        self._string("key", key)
        self._string("command", command)
        text = self._payload(f"command `{command}` to {entity_type}/{key}", payload)
        return Call(entity_type=entity_type, key=key, command=command, payload=text)

    def _string(self, what: str, value: Any) -> None:
        if not isinstance(value, str):
            self._fail(f"the {what} must be a string, not {type(value).__name__} {value!r:.40}")

    def _payload(self, what: str, payload: Any) -> str:
        try:
            return _codec.dumps(payload)
        except (_codec.EncodeError, ValueError, RecursionError) as e:
            self._fail(f"cannot serialize the payload of the {what}: {e}")

    def _fail(self, message: str) -> NoReturn:
        error = EntityError(message)
        # The first error is the one worth reporting.
        if self._error is None:
            self._error = error
        raise error

    def _finish(self) -> tuple[list[Effect], Call | None]:
        """The requested effects and forward; raises the first misuse of the context."""
        if self._error is not None:
            raise self._error
        return self._effects, self._forward


class EventContext(Context):
    """The :class:`Context` of an event-sourced handler, which also collects events."""

    __slots__ = ("_events",)

    def __init__(self, host: HostContext) -> None:
        super().__init__(host)
        self._events: list[Any] = []

    def emit(self, event: Any) -> None:
        """Emits an event: an instance of one of the entity's ``event_types`` (or a plain JSON
        value if it declares none). Events are persisted in emission order if the handler
        returns, and discarded if it raises. The handler's ``self`` does not change: the SDK
        folds the events into the state with ``apply`` after the handler returns."""
        self._events.append(event)

    @property
    def emitted(self) -> tuple[Any, ...]:
        """The events emitted so far by this command."""
        return tuple(self._events)


class CrdtContext(Context):
    """The :class:`Context` of a crdt entity's handler, which sets the command's write
    consistency. A crdt entity has no effects and no forward: those methods fail the command
    with an :class:`~cella.EntityError`."""

    __slots__ = ("_consistency",)

    def __init__(self, host: HostContext) -> None:
        super().__init__(
            host, "a crdt entity has no effects or forward (they need a durable journal)"
        )
        self._consistency: str = "local"

    @property
    def consistency(self) -> Consistency:
        """How many nodes must hold this command's operations before it is answered:
        ``"local"`` (this node, the default; the others get them by gossip), ``"majority"``
        (more than half of the cluster's nodes) or ``"all"``. A request may ask for more with
        ``?consistency=``; the stronger one applies. Setting another value fails the command
        with an :class:`~cella.EntityError`."""
        consistency: Consistency = self._consistency  # type: ignore[assignment]
        return consistency

    @consistency.setter
    def consistency(self, value: Consistency) -> None:
        if value not in CONSISTENCIES:
            allowed = ", ".join(CONSISTENCIES)
            self._fail(f"the consistency must be one of {allowed}, not {value!r:.40}")
        self._consistency = value
