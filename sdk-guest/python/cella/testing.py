"""Unit testing of entities in plain Python: :class:`TestKit` plays the host's part for one
entity, running commands through the same glue a component runs, against an in-memory state.

::

    import unittest

    import cella
    from cella.testing import TestKit

    from app import Counter


    class CounterTest(unittest.TestCase):
        def test_add(self) -> None:
            kit = TestKit(Counter)
            self.assertEqual(kit.handle("add", 5), 5)
            self.assertEqual(kit.state.total, 5)
            with self.assertRaises(cella.BadRequest):
                kit.handle("add", "five")
            with self.assertRaisesRegex(cella.Rejected, "overflows"):
                kit.handle("add", cella.INT64_MAX)
            self.assertEqual(kit.sequence, 1)

Topics: :meth:`TestKit.deliver` runs a message of a topic the entity subscribes to through the
subscription's command (with ``ctx.message`` set), :attr:`TestKit.subscriptions` and
:attr:`TestKit.events_topic` are what the entity declares, and ``kit.last.effects`` records
:class:`Publish` and :class:`Broadcast` effects like the others.

Crdt entities: :class:`CrdtTestKit` runs their commands against a single replica's model of
the value (start it from any JSON value), records each command's operations
(``kit.last.ops``, as :class:`CrdtOp`) and consistency, and applies the operations to the
value as the host does, so commands chain::

    class Likes(cella.CrdtEntity[cella.ORMap]):
        @cella.command
        def like(self, who: str) -> int:
            self.data.g_counter(who).increment()
            return self.data.g_counter(who).value

    kit = CrdtTestKit(Likes, value={"alice": 2})
    assert kit.handle("like", "alice") == 3
    assert kit.last.ops == [CrdtOp(("alice",), "increment", 1, creates="g-counter")]
    assert kit.value == {"alice": 3}
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from . import _codec, _crdt_model
from . import _protocol as protocol
from ._entity import model
from ._glue import Glue
from ._protocol import Subscription, TopicMessage

__all__ = [
    "Broadcast",
    "Call",
    "Cancel",
    "CrdtHandled",
    "CrdtOp",
    "CrdtTestKit",
    "Effect",
    "EntityFailed",
    "Handled",
    "Publish",
    "Schedule",
    "TestKit",
    "TopicMessage",
]

E = TypeVar("E")

_MASK = (1 << 64) - 1


def _host_context(
    entity_type: str,
    key: str,
    n: int,
    command: str,
    timestamp_ms: int,
    sequence: int,
    **rest: Any,
) -> protocol.HostContext:
    """The context a test kit gives its ``n``-th command."""
    return protocol.HostContext(
        entity_type=entity_type,
        key=key,
        command_id=f"test-command-{n}",
        command=command,
        timestamp_ms=timestamp_ms,
        random_seed=(n * 0x9E3779B97F4A7C15) & _MASK,
        sequence=sequence,
        **rest,
    )


@dataclass(frozen=True)
class Call:
    """A command addressed to an entity (:meth:`~cella.Context.call` or a forward). A call
    with a reply route has ``reply_to`` (the command the outcome comes back as) and
    ``correlation``; ``None`` for both otherwise."""

    entity_type: str
    key: str
    command: str
    payload: Any
    reply_to: str | None = None
    correlation: str | None = None


@dataclass(frozen=True)
class Publish:
    """:meth:`~cella.Context.publish`."""

    topic: str
    payload: Any


@dataclass(frozen=True)
class Schedule:
    """:meth:`~cella.Context.schedule`; ``every_ms`` is ``None`` for a one-shot timer."""

    name: str
    delay_ms: int
    command: str
    payload: Any
    every_ms: int | None = None


@dataclass(frozen=True)
class Cancel:
    """:meth:`~cella.Context.cancel`."""

    name: str


@dataclass(frozen=True)
class Broadcast:
    """:meth:`~cella.Context.broadcast`."""

    entity_type: str
    command: str
    payload: Any


Effect = Call | Publish | Schedule | Cancel | Broadcast


@dataclass(frozen=True)
class Handled:
    """What the last successful command produced."""

    #: The reply, as JSON data.
    reply: Any
    #: Event-sourced: the events persisted, as JSON data.
    events: list[Any] = field(default_factory=list)
    #: Whether the command persisted anything (a new state or events).
    persisted: bool = False
    #: The effects requested, in order, payloads as JSON data.
    effects: list[Effect] = field(default_factory=list)
    #: The forward requested, if any.
    forward: Call | None = None


class TestKit(Generic[E]):
    """Runs commands against one in-memory entity the way the host does.

    The state starts empty; each command goes through the entity's glue (command lookup,
    payload decoding, rejections, state and event encoding) and whatever it persists becomes the
    next command's state. For event-sourced entities the kit also folds every persisted event
    with ``apply`` from the stored bytes, as the host does when it rebuilds a state, and checks
    that the result equals the state the handler returned.

    The context is deterministic: command ids are ``test-command-<n>``, the time is fixed (see
    :meth:`set_time`) and the random seed depends only on ``n``.

    :meth:`handle` raises :class:`~cella.Rejected`, :class:`~cella.BadRequest` or
    :class:`~cella.UnknownCommand` for a failed command (nothing changes then), and lets any
    other exception of the entity's code propagate. It raises ``AssertionError`` when the entity
    breaks the contract in a way the host would not accept (``apply`` disagreeing with the
    handler's state, stored bytes that do not render).
    """

    __test__ = False  # not a test case, whatever a test runner thinks of the name

    #: The default time of commands: 2025-01-01T00:00:00Z.
    DEFAULT_TIME_MS = 1_735_689_600_000

    def __init__(self, entity: type[E], entity_type: str = "test", key: str = "test-key") -> None:
        self._glue = Glue(model(entity))
        if self._glue.crdt:
            raise TypeError(f"{entity.__qualname__} is a crdt entity: test it with CrdtTestKit")
        self._cls = entity
        self.entity_type = entity_type
        self.key = key
        self._timestamp_ms = self.DEFAULT_TIME_MS
        self._state: bytes | None = None
        self._sequence = 0
        self._commands_run = 0
        self._events: list[Any] = []
        self._last: Handled | None = None
        self._offsets: dict[str, int] = {}

    def set_time(self, timestamp_ms: int) -> None:
        """Sets the time the next commands see (:attr:`cella.Context.timestamp_ms`)."""
        self._timestamp_ms = timestamp_ms

    @property
    def commands(self) -> list[str]:
        """The command names the entity declares, in order."""
        return list(self._glue.describe().commands)

    @property
    def ephemeral(self) -> bool:
        """Whether the entity declares its state ephemeral (in memory only)."""
        return self._glue.describe().ephemeral

    def restart(self) -> None:
        """What a restart of the node (or a change of its partition's leader) does to the
        entity: an ephemeral entity's state is gone, a durable one's stays."""
        if self.ephemeral:
            self._state = None
            self._sequence = 0

    @property
    def snapshot_every(self) -> int:
        """The snapshot interval the entity declares (0 = the host's default)."""
        return self._glue.describe().snapshot_every

    @property
    def subscriptions(self) -> list[Subscription]:
        """The subscriptions the entity declares, in order (see :func:`cella.subscribe`)."""
        return list(self._glue.describe().subscriptions)

    @property
    def events_topic(self) -> str | None:
        """The topic the entity's events are published to, if it declares one."""
        return self._glue.describe().events_topic

    def deliver(
        self, topic: str, message: Any, *, offset: int | None = None, command: str | None = None
    ) -> Any:
        """Delivers ``message`` (JSON data or dataclasses) of ``topic`` to this entity as the
        host does: runs the command of the entity's subscription to ``topic`` with the message
        as payload and ``ctx.message`` set to the topic and ``offset`` (by default one more
        than the last offset delivered of that topic by this kit, starting at 1), and returns
        its reply. ``command`` picks the subscription when there are several to the topic.
        Whether the message's key names this entity is not checked (see
        :meth:`~cella.Subscription.keys_of`). Raises ``TypeError`` when the entity has no
        such subscription."""
        chosen = [
            s
            for s in self._glue.describe().subscriptions
            if s.topic == topic and (command is None or s.command == command)
        ]
        if not chosen:
            raise TypeError(f"the entity has no subscription to topic `{topic}`")
        if len({s.command for s in chosen}) > 1:
            raise TypeError(f"the entity subscribes to `{topic}` more than once: give command=")
        if offset is None:
            offset = self._offsets.get(topic, 0) + 1
        self._offsets[topic] = offset
        return self.handle(chosen[0].command, message, message=TopicMessage(topic, offset))

    def handle(
        self,
        command: str,
        payload: Any = None,
        *,
        correlation: str | None = None,
        timer: str | None = None,
        message: TopicMessage | None = None,
    ) -> Any:
        """Runs ``command`` with ``payload`` (JSON data or dataclasses; ``None`` for none) and
        returns its reply as JSON data. Raises the command's failure.

        ``correlation`` runs the command as the reply route of a call (``ctx.correlation``; the
        payload is then the outcome, e.g. ``CallReply(ok=...)`` or
        ``CallReply(error=CallError("rejected", "..."))``); ``timer`` as fired by that timer
        (``ctx.timer``); ``message`` as the delivery of a topic message
        (``ctx.message``; :meth:`deliver` is the shorthand)."""
        self._last = None
        self._commands_run += 1
        n = self._commands_run
        host = _host_context(
            self.entity_type,
            self.key,
            n,
            command,
            self._timestamp_ms,
            self._sequence,
            correlation=correlation,
            timer=timer,
            message=message,
        )
        outcome = self._glue.handle(host, self._state, _codec.dumps(payload))
        reply = _parse("reply", outcome.reply)
        events: list[Any] = []
        if self._glue.event_sourced:
            persisted = bool(outcome.events)
            if persisted:
                events = [self._render_event(event) for event in outcome.events]
                folded = self._fold(outcome.events)
                if outcome.state is not None and _parse("state", outcome.state) != _parse(
                    "state", folded
                ):
                    raise AssertionError(
                        "the state returned by the handler differs from the fold of its events "
                        "with apply"
                    )
                self._state = outcome.state if outcome.state is not None else folded
        else:
            if outcome.events:
                raise AssertionError("a value entity returned events")
            persisted = outcome.state is not None
            if persisted:
                self._state = outcome.state
        if persisted:
            self._sequence += 1
        self._events.extend(events)
        self._last = Handled(
            reply=reply,
            events=events,
            persisted=persisted,
            effects=[_effect(effect) for effect in outcome.effects],
            forward=_call(outcome.forward) if outcome.forward is not None else None,
        )
        return reply

    def _render_event(self, event: bytes) -> Any:
        try:
            return _parse("event", self._glue.render_event(event))
        except protocol.GuestError as e:
            raise AssertionError(f"an emitted event does not render: {e}") from None

    def _fold(self, events: list[bytes]) -> bytes:
        """The stored state with ``events`` folded in by ``apply``, as the host rebuilds it."""
        folded = self._state
        for event in events:
            try:
                folded = self._glue.apply(folded, event)
            except protocol.GuestError as e:
                raise AssertionError(f"an emitted event does not fold: {e}") from None
        if folded is None:
            raise AssertionError("no events to fold")
        try:
            batch = self._glue.apply_all(self._state, events)
        except protocol.GuestError as e:
            raise AssertionError(f"the emitted events do not fold with apply_all: {e}") from None
        if _parse("state", batch) != _parse("state", folded):
            raise AssertionError("apply_all over the events differs from apply per event")
        return folded

    @property
    def last(self) -> Handled | None:
        """What the last command produced; ``None`` if it failed or none ran yet."""
        return self._last

    @property
    def sequence(self) -> int:
        """The journal sequence number: how many commands persisted something."""
        return self._sequence

    @property
    def events(self) -> list[Any]:
        """Event-sourced: every event persisted so far, as JSON data, in order."""
        return list(self._events)

    @property
    def state_json(self) -> Any:
        """The stored state as JSON data (rendered by the entity), or ``None`` if nothing was
        stored yet."""
        if self._state is None:
            return None
        try:
            return _parse("state", self._glue.render_state(self._state))
        except protocol.GuestError as e:
            raise AssertionError(f"the stored state does not render: {e}") from None

    @property
    def state(self) -> E:
        """The stored state, decoded (a new instance of the entity class if nothing was stored
        yet). Changing it changes nothing: use :meth:`set_state`."""
        if self._state is None:
            return self._cls()
        state: E = self._glue._state(self._state, AssertionError)
        return state

    def set_state(self, state: E) -> None:
        """Replaces the stored state (an instance of the entity class), e.g. to start a test
        from a given state."""
        if not isinstance(state, self._cls):
            raise TypeError(f"the state is a {self._cls.__name__}, not {type(state).__name__}")
        self._state = _codec.dumps(state).encode()


def _parse(what: str, text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except ValueError as e:
        raise AssertionError(f"the {what} is not JSON ({e}): {text!r}") from None


def _call(call: protocol.Call) -> Call:
    return Call(
        entity_type=call.entity_type,
        key=call.key,
        command=call.command,
        payload=_parse("call payload", call.payload),
        reply_to=call.reply_to.command if call.reply_to is not None else None,
        correlation=call.reply_to.correlation if call.reply_to is not None else None,
    )


def _effect(effect: protocol.Effect) -> Effect:
    if isinstance(effect, protocol.Call):
        return _call(effect)
    if isinstance(effect, protocol.Publication):
        return Publish(topic=effect.topic, payload=_parse("publication payload", effect.payload))
    if isinstance(effect, protocol.Cancel):
        return Cancel(name=effect.name)
    if isinstance(effect, protocol.Broadcast):
        return Broadcast(
            entity_type=effect.entity_type,
            command=effect.command,
            payload=_parse("broadcast payload", effect.payload),
        )
    return Schedule(
        name=effect.name,
        delay_ms=effect.delay_ms,
        command=effect.command,
        payload=_parse("timer payload", effect.payload),
        every_ms=effect.every_ms,
    )


@dataclass(frozen=True)
class CrdtOp:
    """An operation a crdt entity's command recorded: ``action`` is the WIT ``crdt-action``'s
    name and ``argument`` its payload as JSON data (the amount, the element or value, the
    vote, the deleted key; ``None`` for ``enable``, ``disable`` and ``clear``); ``path`` the
    or-map keys leading to the data and ``creates`` the type it gets if the op creates it."""

    path: tuple[str, ...]
    action: str
    argument: Any = None
    creates: str | None = None


@dataclass(frozen=True)
class CrdtHandled:
    """What the last successful command of a crdt entity produced."""

    #: The reply, as JSON data.
    reply: Any
    #: The operations recorded, in order.
    ops: list[CrdtOp] = field(default_factory=list)
    #: The write consistency the command asked for: ``local``, ``majority`` or ``all``.
    consistency: str = "local"


class EntityFailed(AssertionError):
    """The host would fail the command (HTTP 500 ``entity_failed``): one of its operations does
    not fit the data it names (a handle of another type than the data's). Nothing is applied."""


class CrdtTestKit:
    """Runs commands against one crdt entity the way the host does on a single node.

    The value is a single replica's model (see :mod:`cella._crdt_model`): it starts as
    ``value`` (a JSON view: ``None`` for the empty value of the entity's type), each command
    gets its view, and the operations of a successful command are applied to it in order —
    counters add, sets keep one element per canonical JSON text sorted by it, a register holds
    the last write, an or-map creates a key's data with the op's ``creates`` type (else the
    action's) and keeps a deleted key's data hidden, a vote counts this replica's vote on top of
    the other replicas' votes the starting value showed. An or-map's data in a starting value
    is typed by its shape: a number is a pn-counter, an array an or-set, a boolean a flag, an
    object with exactly ``votes_for``, ``voters`` and ``majority`` a vote, another object an
    or-map, anything else an lww-register.

    :meth:`handle` raises the command's failure like :class:`TestKit`, and
    :class:`EntityFailed` when an operation does not fit its data (nothing is applied then).
    """

    __test__ = False

    def __init__(
        self,
        entity: type,
        value: Any = None,
        entity_type: str = "test",
        key: str = "test-key",
    ) -> None:
        self._glue = Glue(model(entity))
        crdt = self._glue.describe().crdt
        if crdt is None:
            raise TypeError(f"{entity.__qualname__} is not a crdt entity: test it with TestKit")
        self.crdt_type: str = crdt
        self.entity_type = entity_type
        self.key = key
        self._timestamp_ms = TestKit.DEFAULT_TIME_MS
        self._commands_run = 0
        self._last: CrdtHandled | None = None
        self._data = _crdt_model.new(crdt)
        self.set_value(value)

    @property
    def commands(self) -> list[str]:
        """The command names the entity declares, in order."""
        return list(self._glue.describe().commands)

    @property
    def ephemeral(self) -> bool:
        """Whether the entity declares its data ephemeral (in memory only)."""
        return self._glue.describe().ephemeral

    def set_time(self, timestamp_ms: int) -> None:
        """Sets the time the next commands see (:attr:`cella.Context.timestamp_ms`)."""
        self._timestamp_ms = timestamp_ms

    def set_value(self, value: Any) -> None:
        """Replaces the value with the one whose JSON view is ``value`` (``None``: empty).
        Raises ``ValueError`` when it cannot be a view of the entity's type."""
        if value is None:
            self._data = _crdt_model.new(self.crdt_type)
        else:
            self._data = _crdt_model.from_view(self.crdt_type, _codec.to_json(value))

    @property
    def value(self) -> Any:
        """The value's JSON view, as the host hands it to a command."""
        return self._data.view()

    @property
    def last(self) -> CrdtHandled | None:
        """What the last command produced; ``None`` if it failed or none ran yet."""
        return self._last

    def handle(self, command: str, payload: Any = None) -> Any:
        """Runs ``command`` with ``payload`` (JSON data or dataclasses; ``None`` for none),
        applies its operations to the value and returns its reply as JSON data."""
        self._last = None
        self._commands_run += 1
        n = self._commands_run
        host = _host_context(self.entity_type, self.key, n, command, self._timestamp_ms, 0)
        view = _codec.dumps(self._data.view()).encode()
        outcome = self._glue.handle(host, view, _codec.dumps(payload))
        if outcome.events or outcome.state is not None or outcome.effects or outcome.forward:
            raise AssertionError("a crdt entity answered with events, a state or effects")
        data = copy.deepcopy(self._data)
        for op in outcome.crdt_ops:
            try:
                _crdt_model.apply(data, op)
            except _crdt_model.Mismatch as e:
                raise EntityFailed(f"the host fails command `{command}`: {e}") from None
        self._data = data
        reply = _parse("reply", outcome.reply)
        self._last = CrdtHandled(
            reply=reply,
            ops=[_crdt_op(op) for op in outcome.crdt_ops],
            consistency=outcome.consistency,
        )
        return reply


def _crdt_op(op: protocol.CrdtOp) -> CrdtOp:
    argument = op.argument
    if op.action in ("add", "remove", "set"):
        argument = _parse(f"{op.action} argument", str(argument))
    return CrdtOp(path=tuple(op.path), action=op.action, argument=argument, creates=op.creates)
