"""Entities as Python classes: the :class:`ValueEntity`, :class:`EventSourcedEntity` and
:class:`CrdtEntity` base classes, the :func:`command` decorator, :func:`subscribe` for their
``subscriptions``, and :func:`model`, which reads an entity class once (its state fields or
crdt type, commands, handler signatures, event types and topics) into the tables the glue runs
on, checking everything that can be checked before the first command."""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import (
    Any,
    ClassVar,
    Generic,
    TypeVar,
    get_args,
    get_origin,
    overload,
)

from . import _codec
from ._context import Context
from ._crdt import Crdt
from ._errors import EntityError
from ._protocol import CRDT, EVENT_SOURCED, VALUE, Subscription, is_name

__all__ = ["CrdtEntity", "EventSourcedEntity", "ValueEntity", "command", "model", "subscribe"]

F = TypeVar("F", bound=Callable[..., Any])
H = TypeVar("H", bound=Crdt)

#: The attribute :func:`command` sets on a handler: the command name, or "" for the default.
_MARK = "__cella_command__"
#: The attribute holding an entity class's compiled :class:`Model`.
_MODEL = "__cella_model__"
#: Parameter names that receive the context rather than the payload.
_CONTEXT_NAMES = ("ctx", "context")


class ValueEntity:
    """Base class of an entity whose state is persisted whole.

    Subclass it with a ``@dataclass`` whose fields are the state (every field needs a default:
    a new entity is ``YourClass()``). Command handlers are methods marked with :func:`command`
    that mutate ``self`` and return the reply. After each successful command the SDK encodes
    the state and persists it if it differs from the state the command started from, so
    read-only commands persist nothing.

    ``ephemeral = True`` in the class body keeps the state in memory only: on its partition's
    leader, never written to disk, gone after a restart or a leadership change (a new entity
    again). An ephemeral entity has no effects and no forward.
    """

    __slots__ = ()

    #: The topics entities of this type subscribe to, made by :func:`subscribe` (assign it in
    #: the class body without a type annotation, so it is not a state field).
    subscriptions: ClassVar[Sequence[Subscription]] = ()
    #: Keep the state in memory only (assign it without a type annotation).
    ephemeral: ClassVar[bool] = False


class EventSourcedEntity:
    """Base class of an entity whose changes are events.

    Subclass it with a ``@dataclass`` whose fields are the state (every field needs a default).
    Command handlers are methods marked with :func:`command` that validate the command against
    ``self``, emit events with ``ctx.emit(event)`` and return the reply; they must not change
    ``self``. :meth:`apply` folds one event into the state; the SDK calls it for each emitted
    event once the handler has returned, and again whenever the host rebuilds the state.
    """

    __slots__ = ()

    #: The event classes (dataclasses): a sequence, each stored as ``{"<name>": {fields}}`` with
    #: the class name in lower camel case (``ItemAdded`` → ``itemAdded``), or a mapping from
    #: name to class. Empty: events are plain JSON values, handed to ``apply`` as parsed.
    event_types: ClassVar[Sequence[type] | Mapping[str, type]] = ()
    #: Ask the host to snapshot the state every this many events (0 = the host's default).
    snapshot_every: ClassVar[int] = 0
    #: The topics entities of this type subscribe to, made by :func:`subscribe`.
    subscriptions: ClassVar[Sequence[Subscription]] = ()
    #: The topic every persisted event is published to (``None``: none), as the message
    #: ``{"type": T, "key": K, "seq": S, "index": I, "event": E}`` (S the journal entry's
    #: sequence number, I the event's index in it, E the event as JSON).
    events_topic: ClassVar[str | None] = None

    def apply(self, event: Any) -> Any:
        """Folds one event into the state: mutate ``self`` and return ``None``, or return the
        new state (e.g. ``dataclasses.replace(self, ...)``). Must be pure and must not fail."""
        raise NotImplementedError


class CrdtEntity(Generic[H]):
    """Base class of an entity whose data is a CRDT owned by the host: served by every node
    without consensus and replicated between nodes, so concurrent changes on different nodes
    merge instead of conflicting.

    The type parameter is the handle of the data's crdt type, which the class declares:
    ``class Likes(cella.CrdtEntity[cella.GCounter])``. Command handlers are methods marked with
    :func:`command` that read and change the data through ``self.data``, a typed handle (see
    :mod:`cella._crdt`); the operations they record are applied by the host as this node's
    replica. The class has no state fields (it is not a dataclass), and a crdt entity has no
    effects and no forward. A handler may take a :class:`~cella.CrdtContext` to set the
    command's write consistency.

    ``ephemeral = True`` keeps the data in memory only: each node's replica is rebuilt from the
    other nodes' after a restart.
    """

    __slots__ = ("_cella_data",)

    #: Keep the data in memory only (assign it without a type annotation).
    ephemeral: ClassVar[bool] = False

    @property
    def data(self) -> H:
        """The handle of the entity's data, for this command."""
        data: H | None = getattr(self, "_cella_data", None)
        if data is None:
            raise EntityError("self.data is only there while a command runs")
        return data


@overload
def command(func: F) -> F: ...


@overload
def command(name: str, /) -> Callable[[F], F]: ...


@overload
def command(*, name: str | None = None) -> Callable[[F], F]: ...


def command(func: Any = None, *, name: str | None = None) -> Any:
    """Marks a method as a command handler.

    ``@command`` names the command after the method with ``_`` replaced by ``-``
    (``add_item`` → ``add-item``; a trailing ``_`` that keeps a name off a keyword or builtin is
    dropped: ``list_`` → ``list``); ``@command("name")`` or ``@command(name="name")`` names it
    explicitly. See :mod:`cella` for the handler's parameters.
    """
    if callable(func):
        setattr(func, _MARK, name or "")
        return func
    given = func if func is not None else name
    if given is not None and (not isinstance(given, str) or not given):
        raise TypeError(f"a command name must be a non-empty string, not {given!r}")

    def mark(handler: F) -> F:
        setattr(handler, _MARK, given or "")
        return handler

    return mark


def subscribe(
    topic: str, command: str, *, key: str | None = None, fixed_key: str | None = None
) -> Subscription:
    """A subscription, for an entity class's ``subscriptions``: entities of the type receive
    every message of ``topic`` as the command ``command`` (one of theirs; the payload is the
    message, and ``ctx.message`` says which topic and offset), each message exactly once per
    receiving entity, in topic order. Which entity receives a message is given by exactly one
    of

    - ``key``: a JSON pointer (RFC 6901) into the message, ``"/to"`` for ``{"to": "k1"}``; a
      string or number there names one entity, an array of them one entity per element; a
      message without a usable key there is not delivered;
    - ``fixed_key``: always this one entity (e.g. an aggregate of the whole topic)::

        subscriptions = [
            cella.subscribe("orders", command="order-placed", key="/customerId"),
            cella.subscribe("prices", command="price-changed", fixed_key="all"),
        ]
    """
    where = f"cella.subscribe({topic!r:.60})"
    if not is_name(topic):
        raise TypeError(f"{where}: the topic must be a name (1-256 bytes, no `/`)")
    if not is_name(command):
        raise TypeError(f"{where}: {command!r} cannot name a command")
    if (key is None) == (fixed_key is None):
        raise TypeError(f"{where}: give exactly one of key= (a JSON pointer) and fixed_key=")
    if key is not None and (not isinstance(key, str) or (key and not key.startswith("/"))):
        raise TypeError(
            f"{where}: key= is a JSON pointer into the message (empty or starting with `/`, "
            f"like `/to`), not {key!r}"
        )
    if fixed_key is not None and not is_name(fixed_key):
        raise TypeError(f"{where}: fixed_key= must be an entity key (1-256 bytes, no `/`)")
    return Subscription(topic=topic, command=command, key=key, fixed_key=fixed_key)


@dataclass(frozen=True)
class Handler:
    """One command: how to call its method."""

    name: str
    method: str
    #: ``(parameter name, is the context, passed by keyword)`` after ``self``.
    params: tuple[tuple[str, bool, bool], ...]
    #: ``None`` when the handler takes no payload.
    decode: _codec.Decoder | None
    default: Any


@dataclass(frozen=True)
class Model:
    """Everything the glue needs to know about an entity class."""

    cls: type
    kind: str
    handlers: dict[str, Handler]
    snapshot_every: int
    decode_state: _codec.Decoder
    #: Event-sourced with ``event_types``: name → decoder of the fields, and class → name.
    event_decoders: dict[str, _codec.Decoder]
    event_names: dict[type, str]
    subscriptions: list[Subscription]
    events_topic: str | None
    ephemeral: bool = False
    #: crdt entities: the handle class of the data's type.
    crdt: type[Crdt] | None = None

    @property
    def commands(self) -> list[str]:
        return list(self.handlers)


def model(cls: type) -> Model:
    """The compiled model of the entity class ``cls`` (computed once per class).

    Raises ``TypeError`` describing what is wrong with the class.
    """
    known = cls.__dict__.get(_MODEL)
    if isinstance(known, Model):
        return known
    compiled = _compile(cls)
    setattr(cls, _MODEL, compiled)
    return compiled


def _compile(cls: type) -> Model:
    if not isinstance(cls, type):
        raise TypeError(f"an entity is a class, not {cls!r}")
    name = cls.__qualname__
    is_value = issubclass(cls, ValueEntity)
    is_event_sourced = issubclass(cls, EventSourcedEntity)
    is_crdt = issubclass(cls, CrdtEntity)
    if is_value + is_event_sourced + is_crdt != 1:
        raise TypeError(
            f"{name} must subclass exactly one of cella.ValueEntity, cella.EventSourcedEntity "
            "and cella.CrdtEntity"
        )
    ephemeral = getattr(cls, "ephemeral", False)
    if not isinstance(ephemeral, bool):
        raise TypeError(f"{name}.ephemeral must be True or False, not {ephemeral!r:.40}")
    if ephemeral and is_event_sourced:
        raise TypeError(f"{name}.ephemeral: an event-sourced entity is always durable")
    if is_crdt:
        return _compile_crdt(cls, ephemeral)
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{name} must be a @dataclass: its fields are the entity's state")
    for f in dataclasses.fields(cls):
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise TypeError(
                f"field `{f.name}` of {name} needs a default: a new entity is `{name}()`"
            )
    decode_state = _codec.decoder(cls, f"the state of {name}")
    handlers = _handlers(cls)
    if not handlers:
        raise TypeError(f"{name} has no commands; mark its handlers with @cella.command")

    event_decoders: dict[str, _codec.Decoder] = {}
    event_names: dict[type, str] = {}
    snapshot_every = 0
    if is_event_sourced:
        if getattr(cls, "apply", None) is EventSourcedEntity.apply:
            raise TypeError(f"{name} must define apply(self, event)")
        snapshot_every = getattr(cls, "snapshot_every", 0)
        if not _codec._is_int(snapshot_every) or not 0 <= snapshot_every < 2**32:
            raise TypeError(f"{name}.snapshot_every must be an integer in 0..2^32")
        event_decoders, event_names = _event_types(cls)
    events_topic = getattr(cls, "events_topic", None)
    if events_topic is not None:
        if not is_event_sourced:
            raise TypeError(f"{name}.events_topic: a value entity has no events")
        if not is_name(events_topic):
            raise TypeError(f"{name}.events_topic must be a topic name (1-256 bytes, no `/`)")
    return Model(
        cls=cls,
        kind=VALUE if is_value else EVENT_SOURCED,
        handlers=handlers,
        snapshot_every=snapshot_every,
        decode_state=decode_state,
        event_decoders=event_decoders,
        event_names=event_names,
        subscriptions=_subscriptions(cls, handlers),
        events_topic=events_topic,
        ephemeral=ephemeral,
    )


def _compile_crdt(cls: type, ephemeral: bool) -> Model:
    name = cls.__qualname__
    handle = _crdt_handle(cls)
    if dataclasses.is_dataclass(cls) and dataclasses.fields(cls):
        raise TypeError(
            f"{name}: a crdt entity has no state fields; its data is self.data, a {handle.TYPE}"
        )
    for attr in ("subscriptions", "events_topic", "event_types", "snapshot_every"):
        if attr in vars(cls):
            raise TypeError(f"{name}.{attr}: not for a crdt entity")
    handlers = _handlers(cls)
    if not handlers:
        raise TypeError(f"{name} has no commands; mark its handlers with @cella.command")
    return Model(
        cls=cls,
        kind=CRDT,
        handlers=handlers,
        snapshot_every=0,
        decode_state=_codec._identity,
        event_decoders={},
        event_names={},
        subscriptions=[],
        events_topic=None,
        ephemeral=ephemeral,
        crdt=handle,
    )


def _crdt_handle(cls: type) -> type[Crdt]:
    """The handle class ``cls`` names as ``CrdtEntity[...]``'s parameter."""
    for klass in cls.__mro__:
        for base in vars(klass).get("__orig_bases__", ()):
            if get_origin(base) is CrdtEntity:
                (handle,) = get_args(base)
                if isinstance(handle, type) and issubclass(handle, Crdt) and handle.TYPE:
                    return handle
                raise TypeError(
                    f"{cls.__qualname__}: CrdtEntity[{getattr(handle, '__name__', handle)}] "
                    "does not name a crdt type: use one of cella.GCounter, cella.PNCounter, "
                    "cella.GSet, cella.ORSet, cella.LWWRegister, cella.Flag, cella.ORMap, "
                    "cella.Vote"
                )
    raise TypeError(
        f"{cls.__qualname__} must name its crdt type: class {cls.__name__}"
        "(cella.CrdtEntity[cella.GCounter]) (or another handle type)"
    )


_COMMAND_NAME = re.compile(r"^[^/\x00-\x1f\x7f]{1,256}$")


def _handlers(cls: type) -> dict[str, Handler]:
    """The handlers of ``cls`` in declaration order, base classes first."""
    methods: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            if hasattr(value, _MARK) or (
                isinstance(value, (staticmethod, classmethod)) and hasattr(value.__func__, _MARK)
            ):
                methods[attr] = value
            elif attr in methods:
                del methods[attr]  # overridden by a method that is not a command
    handlers: dict[str, Handler] = {}
    for attr, method in methods.items():
        where = f"{cls.__qualname__}.{attr}"
        if isinstance(method, (staticmethod, classmethod)):
            raise TypeError(f"{where}: a command handler is a plain method (it gets the state)")
        name = getattr(method, _MARK) or _default_name(attr)
        if not _COMMAND_NAME.match(name):
            raise TypeError(f"{where}: {name!r} cannot name a command (no `/`, 1-256 bytes)")
        if name in handlers:
            raise TypeError(f"{where}: command `{name}` is also handled by {handlers[name].method}")
        handlers[name] = _handler(name, attr, method, where)
    return handlers


def _default_name(attr: str) -> str:
    """``add_item`` → ``add-item``; a trailing ``_`` (``list_``, ``import_``) is dropped."""
    return (attr.rstrip("_") or attr).replace("_", "-")


def _handler(name: str, attr: str, method: Callable[..., Any], where: str) -> Handler:
    signature = inspect.signature(method)
    hints = _codec.type_hints(method, where)
    params: list[tuple[str, bool, bool]] = []
    decode: _codec.Decoder | None = None
    default: Any = inspect.Parameter.empty
    parameters = list(signature.parameters.values())
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise TypeError(f"{where}: a command handler is a method: its first parameter is self")
    for p in parameters[1:]:
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise TypeError(f"{where}: *args and **kwargs are not allowed in a command handler")
        hint = hints.get(p.name, Any)
        is_context = p.name in _CONTEXT_NAMES or (
            isinstance(hint, type) and issubclass(hint, Context)
        )
        if is_context:
            if any(c for _, c, _ in params):
                raise TypeError(f"{where}: only one parameter may receive the context")
        else:
            if decode is not None:
                raise TypeError(
                    f"{where}: a command has one payload parameter (and optionally `ctx`); "
                    f"`{p.name}` is a second one"
                )
            decode = _codec.decoder(hint, f"{where}, parameter `{p.name}`")
            default = p.default
        params.append((p.name, is_context, p.kind is inspect.Parameter.KEYWORD_ONLY))
    return Handler(name=name, method=attr, params=tuple(params), decode=decode, default=default)


def _subscriptions(cls: type, handlers: dict[str, Handler]) -> list[Subscription]:
    declared = getattr(cls, "subscriptions", ())
    if isinstance(declared, (str, Subscription)) or not isinstance(declared, Sequence):
        raise TypeError(f"{cls.__qualname__}.subscriptions must be a list of cella.subscribe(...)")
    for subscription in declared:
        if not isinstance(subscription, Subscription):
            raise TypeError(
                f"{cls.__qualname__}.subscriptions: {subscription!r:.60} is not made by "
                "cella.subscribe(...)"
            )
        if subscription.command not in handlers:
            raise TypeError(
                f"{cls.__qualname__}.subscriptions: the subscription to topic "
                f"`{subscription.topic}` names the command `{subscription.command}`, which "
                f"{cls.__qualname__} does not have"
            )
    return list(declared)


def _lower_camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _event_types(cls: type) -> tuple[dict[str, _codec.Decoder], dict[type, str]]:
    declared = getattr(cls, "event_types", ())
    if isinstance(declared, Mapping):
        pairs = list(declared.items())
    elif isinstance(declared, (list, tuple)):
        pairs = [(_lower_camel(getattr(t, "__name__", "")), t) for t in declared]
    else:
        raise TypeError(f"{cls.__qualname__}.event_types must be a sequence or a mapping")
    decoders: dict[str, _codec.Decoder] = {}
    names: dict[type, str] = {}
    for event_name, event_type in pairs:
        if not (isinstance(event_type, type) and dataclasses.is_dataclass(event_type)):
            raise TypeError(f"{cls.__qualname__}.event_types: {event_type!r} is not a dataclass")
        if not isinstance(event_name, str) or not event_name:
            raise TypeError(f"{cls.__qualname__}.event_types: {event_name!r} is not a name")
        if event_name in decoders or event_type in names:
            raise TypeError(f"{cls.__qualname__}.event_types: `{event_name}` is declared twice")
        decoders[event_name] = _codec.decoder(event_type, f"event {event_type.__qualname__}")
        names[event_type] = event_name
    return decoders, names
