"""The Cella Python SDK: write an entity as a Python class and build it into a
``cella:entity@0.2.0`` component with componentize-py.

Entities
========

An entity is business logic only. The host owns the state, the journal and replication: for
every command it hands the guest the current state and the command, and the guest answers with
data. There are three kinds:

- a :class:`ValueEntity` mutates its state in place; the SDK persists the whole new state when
  (and only when) the command changed it;
- an :class:`EventSourcedEntity` validates a command against its state and emits events; the
  host persists the events and the state is the fold of ``apply`` over them;
- a :class:`CrdtEntity` reads a replicated data type owned by the host and records operations
  on it through typed handles (see CRDT entities).

An entity class is a ``@dataclass`` whose fields are the state; a new entity (a key with no
state yet) is ``YourClass()``, so every field needs a default. Command handlers are methods
marked with :func:`command`::

    from dataclasses import dataclass

    import cella
    from cella import int64, reject


    @dataclass
    class Counter(cella.ValueEntity):
        total: int64 = 0

        @cella.command
        def add(self, n: int64) -> int:
            if not cella.INT64_MIN <= self.total + n <= cella.INT64_MAX:
                reject(f"adding {n} overflows")
            self.total += n
            return self.total

        @cella.command
        def get(self) -> int:
            return self.total


    Entity = cella.export(Counter)

Commands
========

The command name is the method name with ``_`` replaced by ``-`` (``add_item`` → ``add-item``;
a trailing ``_``, as in ``list_``, is dropped), or the name given to ``@command("name")``. The
descriptor lists the commands in declaration order. After ``self`` a handler takes:

- at most one *payload* parameter: the command's JSON payload, decoded and checked against the
  parameter's type hint (``int``, ``str``, ``float``, ``bool``, ``list[T]``, ``dict[str, T]``,
  ``Optional[T]``, ``Literal``, dataclasses and more: see :mod:`cella._codec`; no hint or
  ``Any`` takes the JSON value as parsed). A payload that does not fit is a ``bad-request``
  naming the command and where it went wrong. A handler without a payload parameter takes the
  payload ``null`` (an empty request body); a payload parameter with a default gets the default
  for ``null``. :data:`int64` and :data:`uint64` are ``int`` hints limited to the 64-bit
  ranges (Python's ``int`` is unbounded: check arithmetic that must not overflow yourself);
- optionally the :class:`Context` (:class:`EventContext` for event-sourced entities): the
  parameter named ``ctx`` or ``context``, or annotated with the context class.

The handler returns the reply: any JSON value (dict, list, str, int, float, bool, ``None``),
dataclass instances included (encoded as objects of their fields).

JSON
====

State, events, replies and effect payloads are JSON. A dataclass is a JSON object with a key
per field (those its constructor takes), in declaration order, named like the field unless
:func:`json_name` says otherwise: ``product_id: Annotated[str, cella.json_name("productId")]``.
Missing keys take the field's default (a missing field without one is a bad request), unknown
keys are ignored. State is stored as compact JSON text.

Events of an event-sourced entity are either

- instances of the event dataclasses listed in the entity's ``event_types``, stored externally
  tagged, ``{"itemAdded": {"item": ...}}`` (the class name in lower camel case, or the key of
  ``event_types`` given as a mapping ``{"itemAdded": ItemAdded}``); ``apply`` gets instances;
- or, when ``event_types`` is empty, plain JSON values, handed to ``apply`` as parsed.

Either way ``apply`` sees an emitted event exactly as a replay will: the SDK encodes each event
and decodes it again before folding it.

Effects
=======

The context also collects effects, which the host carries out after the command's change is
durable, exactly once, and only if the command succeeds:

- ``ctx.call(type, key, command, payload)`` sends a command to another entity,
  fire-and-forget; ``ctx.call(..., reply_to="credited", correlation="t1")`` has the outcome come
  back to this entity as the command ``credited``, whose context has
  ``ctx.correlation == "t1"`` and whose payload is ``{"ok": <reply>}`` or
  ``{"error": {"code": C, "message": M}}`` (a rejection or failure of the call is data too):
  annotate that payload with :class:`CallReply` (or ``CallReply[T]``);
- ``ctx.publish(topic, payload)`` publishes a message to a topic (see Topics);
- ``ctx.broadcast(type, command, payload)`` sends a command to every entity of a type that
  exists when the host carries it out, each exactly once (replies are not seen);
- ``ctx.schedule(name, delay_ms, command, payload)`` sends ``command`` to this entity after
  ``delay_ms``, and then every ``every_ms`` until cancelled with ``every_ms=`` (a timer of the
  same name replaces it); ``ctx.cancel(name)`` cancels it; a command a timer fired has
  ``ctx.timer == name``;
- ``ctx.forward(type, key, command, payload)`` hands the command on: the target's reply becomes
  the caller's.

Topics
======

A topic is a durable, ordered log of JSON messages, written by ``ctx.publish``, by
``POST /v1/topics/<topic>`` and by event-sourced entities' ``events_topic``. An entity class
subscribes to topics with its ``subscriptions`` (a class attribute, without a type annotation)
made by :func:`subscribe`: each message reaches the entity its key names, exactly once, in topic
order, as a command whose payload is the message and whose context has ``ctx.message``
(:class:`TopicMessage`: ``topic`` and ``offset``)::

    @dataclass
    class Inbox(cella.ValueEntity):
        lines: list[str] = field(default_factory=list)

        # {"to": "alice", "text": "hi"} reaches the entity `alice`; an array of keys reaches
        # each of them.
        subscriptions = [cella.subscribe("news", command="on-news", key="/to")]

        @cella.command
        def on_news(self, message: Any, ctx: Context) -> None:
            assert ctx.message is not None
            self.lines.append(f"{ctx.message.offset}: {message['text']}")

``fixed_key="all"`` instead of ``key=`` sends every message to the one entity ``all``. An
event-sourced class's ``events_topic = "cart-events"`` has the host publish each persisted
event there as ``{"type": T, "key": K, "seq": S, "index": I, "event": E}``. The class is
checked at import: a subscription naming a command the entity does not have, or an
``events_topic`` on a value entity, fails the build.

Ephemeral entities
==================

``ephemeral = True`` in a value entity's class body (without a type annotation, so it is not a
state field) has the host keep its state in memory only: on its partition's leader, never
written to disk, and gone after a restart or a change of leader (the entity starts again from
``YourClass()``). Handlers are written exactly as for a durable value entity; an ephemeral
entity has no effects and no forward (those need the journal's outbox: the context's effect
methods fail the command). Event-sourced entities are always durable. In the test kit,
:meth:`~cella.testing.TestKit.restart` drops an ephemeral entity's state.

CRDT entities
=============

A :class:`CrdtEntity`'s data is a CRDT (a conflict-free replicated data type) owned by the
host: every node serves it without consensus and the nodes' replicas merge, so concurrent
changes never conflict. The class names the data's type as its parameter and has no state
fields; handlers read and change the data through ``self.data``, a typed handle::

    class Likes(cella.CrdtEntity[cella.ORMap]):
        @cella.command
        def like(self, who: str, ctx: cella.CrdtContext) -> int:
            count = self.data.g_counter(who)
            count.increment()
            self.data.or_set("likers").add(who)
            ctx.consistency = "majority"  # answer once most nodes hold the change
            return count.value

The handles, one per crdt type (the type's JSON view in brackets):

- :class:`GCounter` (a number): ``increment(n=1)``, ``value``; :class:`PNCounter` also
  ``decrement(n=1)``; amounts are integers in 0..2^64;
- :class:`GSet` (an array): ``add(x)``, ``elements``, ``x in s``, ``len(s)``, iteration;
  :class:`ORSet` (add-wins) also ``remove(x)`` and ``clear()``. Elements are JSON values (or
  dataclasses), one per canonical JSON text (object keys sorted, no whitespace), read sorted by
  that text as the host keeps them;
- :class:`LWWRegister` (its value, ``None`` before the first write): ``set(x)``, ``value``; the
  host stamps a write with the command's timestamp and the latest write wins;
- :class:`Flag` (a boolean, enable-wins): ``enable()``, ``disable()``, ``clear()`` (off),
  ``enabled``;
- :class:`ORMap` (an object of its keys' views, add-wins keys): ``keys()``, ``key in m``,
  ``len(m)``, ``value``, ``delete(key)``, ``clear()``, and the handle of a key's data:
  ``g_counter(key)``, ``pn_counter``, ``g_set``, ``or_set``, ``register``, ``flag``, ``map``,
  ``vote``, or ``at(key, cella.GCounter)``. Handles nest (``m.map("a").flag("b")``); the first
  operation through a handle creates the key's data with the handle's type (so a map can hold
  a g-counter or a g-set). A key's type is fixed once created: an operation through a handle
  of another type fails the command on the host (HTTP 500 ``entity_failed``, nothing
  applied). A deleted key's data stays in the host's state, unread, and comes back merged with
  new operations when the key is written again;
- :class:`Vote` (``{"votes_for": N, "voters": N, "majority": bool}``, one vote per node):
  ``vote(b)``, ``votes_for``, ``voters``, ``majority``.

Reads reflect the command's own operations: a counter's value includes its increments, a
set's elements its adds and removes, a register's value its write, a flag, a map's keys their
creation and deletion. A vote reads as of the command's start (the view does not say which vote
was this node's). The host applies the recorded operations in order as this node's replica
only if the command succeeds.

The handler's context is a :class:`CrdtContext`; its ``consistency`` (``"local"``, the default,
``"majority"`` or ``"all"``) says how many nodes must hold the change before the reply (a
request may ask for more with ``?consistency=``; the stronger applies). A crdt entity has no
effects and no forward. ``ephemeral = True`` in the class body keeps the data in memory only
(each node's replica is rebuilt from the other nodes' after a restart).
:class:`cella.testing.CrdtTestKit` runs a crdt entity's commands against a single replica's
model of its value.

Failures
========

- A command name the entity does not have is ``unknown-command``.
- A payload that is not JSON or does not fit the handler's type hint is ``bad-request``; a
  handler may also raise :class:`BadRequest` itself.
- :func:`reject` (or ``raise Rejected(message)``) refuses the command: ``rejected`` with the
  message, shown to the caller.
- Misuse of the context (a second ``forward``, a payload that is not JSON-serializable, a timer
  delay that is not a ``u64``), and a state, event or reply that does not encode or decode, are
  ``rejected`` with a message starting with ``entity error:`` (:class:`EntityError`).
- Any other exception escaping the entity's code is a bug: its traceback is printed to stderr
  (the host attaches the tail of the guest's output to the failure) and the component traps, so
  the command fails with HTTP 500 ``entity_failed``. In the test kit the exception propagates.

Whatever the failure, nothing is persisted, no effect runs and no crdt operation is applied.

Determinism
===========

Handlers must be deterministic: the host replays and retries commands, and ``apply`` runs again
whenever the state is rebuilt. A component's clocks read zero and its ``random`` module is a
fixed sequence; there are no files and no network. Everything non-deterministic comes through
the :class:`Context`, which the host journals: use :attr:`Context.timestamp_ms` instead of a
clock and :meth:`Context.random_u64` / :meth:`Context.random` instead of ``random``.
``print`` works: the host keeps the last few KiB of an instance's output (stdout and stderr)
and attaches them to the failure when the instance traps.

Building and testing
====================

``componentize-py -d WIT_DIR -w folding-entity-world componentize app -p . -p SDK_DIR -o app.wasm``
builds the module ``app`` (``cella build`` does this for a directory holding ``app.py``). The
entity class is checked when the module is imported, so a mistake fails the build.
:class:`cella.testing.TestKit` runs commands against an entity in plain Python, through the
same code as the component, so ``python3 -m unittest`` needs no component.
"""

from ._codec import INT64_MAX, INT64_MIN, UINT64_MAX, int64, json_name, uint64
from ._component import export
from ._context import Consistency, Context, CrdtContext, EventContext
from ._crdt import Crdt, Flag, GCounter, GSet, LWWRegister, ORMap, ORSet, PNCounter, Vote
from ._entity import CrdtEntity, EventSourcedEntity, ValueEntity, command, subscribe
from ._errors import (
    BadRequest,
    EntityError,
    Failure,
    Rejected,
    UnknownCommand,
    reject,
)
from ._protocol import Subscription, TopicMessage
from ._reply import CallError, CallReply

__version__ = "0.1.0"

__all__ = [
    "BadRequest",
    "CallError",
    "CallReply",
    "Consistency",
    "Context",
    "Crdt",
    "CrdtContext",
    "CrdtEntity",
    "EntityError",
    "EventContext",
    "EventSourcedEntity",
    "Failure",
    "Flag",
    "GCounter",
    "GSet",
    "INT64_MAX",
    "INT64_MIN",
    "LWWRegister",
    "ORMap",
    "ORSet",
    "PNCounter",
    "Rejected",
    "Subscription",
    "TopicMessage",
    "UINT64_MAX",
    "UnknownCommand",
    "ValueEntity",
    "Vote",
    "command",
    "export",
    "int64",
    "json_name",
    "reject",
    "subscribe",
    "uint64",
]
