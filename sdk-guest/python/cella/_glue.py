"""The generic glue: the ``entity`` interface (describe, handle, apply, render-state,
render-event) for any entity class (value, event-sourced or crdt), over the plain-Python
protocol types of :mod:`cella._protocol`. The component adapter wraps it; the test kit calls it
directly, so tests run exactly this code.

Failures of a command are raised as :class:`~cella.Failure` (the WIT ``failure``); the string
errors of ``apply`` and the renderers as :class:`~cella._protocol.GuestError`. Any other
exception comes from the entity's own code and propagates (a component traps on it)."""

from __future__ import annotations

import inspect
import json
from typing import Any

from . import _codec
from ._context import Context, CrdtContext, EventContext
from ._crdt import Recorder
from ._crdt_model import empty_view
from ._entity import Handler, Model
from ._errors import BadRequest, EntityError, UnknownCommand
from ._protocol import CRDT, EVENT_SOURCED, Descriptor, GuestError, HostContext, Outcome

__all__ = ["Glue"]

_NO_EVENTS = "a value entity has no events"
_NO_CRDT_EVENTS = "a crdt entity has no events"
_EPHEMERAL = "an ephemeral entity has no effects or forward (they need a durable journal)"


class Glue:
    """The ``entity`` interface of one entity class."""

    __slots__ = ("model", "_descriptor")

    def __init__(self, model: Model) -> None:
        self.model = model
        self._descriptor = Descriptor(
            kind=model.kind,
            commands=model.commands,
            snapshot_every=model.snapshot_every,
            subscriptions=list(model.subscriptions),
            events_topic=model.events_topic,
            ephemeral=model.ephemeral,
            crdt=model.crdt.TYPE if model.crdt is not None else None,
        )

    @property
    def event_sourced(self) -> bool:
        return self.model.kind == EVENT_SOURCED

    @property
    def crdt(self) -> bool:
        return self.model.kind == CRDT

    def describe(self) -> Descriptor:
        return self._descriptor

    def handle(self, host: HostContext, state: bytes | None, payload: str) -> Outcome:
        handler = self.model.handlers.get(host.command)
        if handler is None:
            raise UnknownCommand(host.command)
        argument = _decode_payload(handler, payload)
        if self.crdt:
            return self._handle_crdt(host, handler, argument, state)
        entity = self._state(state)
        if self.event_sourced:
            return self._handle_event_sourced(host, handler, argument, entity, state)
        # Compare with the state as this build encodes it, so that a read-only command never
        # persists (even if the stored bytes were written by another version of the module).
        before = _encode("state", entity)
        context = Context(host, _EPHEMERAL if self.model.ephemeral else None)
        reply = _run(handler, entity, argument, context)
        effects, forward = context._finish()
        reply_text = _encode("reply", reply)
        after = _encode("state", entity)
        return Outcome(
            events=[],
            state=after.encode() if after != before else None,
            reply=reply_text,
            forward=forward,
            effects=effects,
        )

    def _handle_event_sourced(
        self,
        host: HostContext,
        handler: Handler,
        argument: Any,
        entity: Any,
        state: bytes | None,
    ) -> Outcome:
        context = EventContext(host)
        reply = _run(handler, entity, argument, context)
        effects, forward = context._finish()
        reply_text = _encode("reply", reply)
        events: list[bytes] = []
        new_state: bytes | None = None
        if context._events:
            # Fold into a fresh copy of the state, with the events as a replay will see them:
            # what the handler did to `self` does not count.
            folded = self._state(state)
            for event in context._events:
                data = self._event_json(event)
                events.append(_text("event", data).encode())
                folded = self._apply(folded, self._event_value(data, EntityError))
            new_state = _encode("state", folded).encode()
        return Outcome(
            events=events,
            state=new_state,
            reply=reply_text,
            forward=forward,
            effects=effects,
        )

    def _handle_crdt(
        self, host: HostContext, handler: Handler, argument: Any, state: bytes | None
    ) -> Outcome:
        handle = self.model.crdt
        assert handle is not None
        view = None if state is None else _parse("value", state, EntityError)
        recorder = Recorder(handle.TYPE, empty_view(handle.TYPE) if view is None else view)
        entity = self.model.cls()
        entity._cella_data = handle(recorder)
        context = CrdtContext(host)
        reply = _run(handler, entity, argument, context)
        context._finish()
        return Outcome(
            reply=_encode("reply", reply),
            crdt_ops=list(recorder.ops),
            consistency=context._consistency,
        )

    def apply(self, state: bytes | None, event: bytes) -> bytes:
        if not self.event_sourced:
            raise GuestError(_NO_CRDT_EVENTS if self.crdt else _NO_EVENTS)
        entity = self._state(state, GuestError)
        data = _parse("event", event, GuestError)
        folded = self._apply(entity, self._event_value(data, GuestError), GuestError)
        return _encode("state", folded, GuestError).encode()

    def apply_all(self, state: bytes | None, events: list[bytes]) -> bytes:
        """The optional ``fold`` export: the state decoded once, every event applied, encoded
        once — the state ``apply`` per event gives (``handle`` folds a command's events so)."""
        if not self.event_sourced:
            raise GuestError(_NO_CRDT_EVENTS if self.crdt else _NO_EVENTS)
        entity = self._state(state, GuestError)
        for event in events:
            data = _parse("event", event, GuestError)
            entity = self._apply(entity, self._event_value(data, GuestError), GuestError)
        return _encode("state", entity, GuestError).encode()

    def render_state(self, state: bytes) -> str:
        if self.crdt:
            return _text("value", _parse("value", state, GuestError), GuestError)
        entity = self._state(state, GuestError)
        return _encode("state", entity, GuestError)

    def render_event(self, event: bytes) -> str:
        if not self.event_sourced:
            raise GuestError(_NO_CRDT_EVENTS if self.crdt else _NO_EVENTS)
        data = _parse("event", event, GuestError)
        value = self._event_value(data, GuestError)
        return _text("event", self._event_json(value, GuestError), GuestError)

    # -----------------------------------------------------------------------------------------

    def _state(self, state: bytes | None, error: type = EntityError) -> Any:
        """The entity: ``cls()`` when there is no state yet, else the decoded state."""
        if state is None:
            return self.model.cls()
        data = _parse("state", state, error)
        try:
            return self.model.decode_state(data)
        except _codec.DecodeError as e:
            raise error(f"cannot decode the state: {e}") from None

    def _apply(self, entity: Any, event: Any, error: type = EntityError) -> Any:
        """Folds ``event`` into ``entity`` with the entity's ``apply``: the new state."""
        returned = entity.apply(event)
        if returned is None:
            return entity
        if not isinstance(returned, self.model.cls):
            raise error(
                f"apply returned a {type(returned).__name__}; return None (having changed "
                f"self) or a {self.model.cls.__name__}"
            )
        return returned

    def _event_json(self, event: Any, error: type = EntityError) -> Any:
        """An emitted event as JSON data (``{"<name>": {fields}}`` for an event class)."""
        names = self.model.event_names
        if names:
            name = names.get(type(event))
            if name is None:
                known = ", ".join(t.__name__ for t in names)
                raise error(
                    f"emitted a {type(event).__name__}, which is not one of the event_types "
                    f"({known})"
                )
            return {name: _to_json("event", event, error)}
        if _is_dataclass_instance(event):
            raise error(
                f"emitted a {type(event).__name__}: declare the event classes in event_types"
            )
        return _to_json("event", event, error)

    def _event_value(self, data: Any, error: type) -> Any:
        """Event JSON data as ``apply`` gets it: an event class instance, or the data itself."""
        decoders = self.model.event_decoders
        if not decoders:
            return data
        if not isinstance(data, dict) or len(data) != 1:
            raise error("cannot decode the event: expected an object with one key, the event name")
        ((name, fields),) = data.items()
        decode = decoders.get(name)
        if decode is None:
            raise error(f"cannot decode the event: unknown event `{name}`")
        try:
            return decode(fields)
        except _codec.DecodeError as e:
            raise error(f"cannot decode the event `{name}`: {e}") from None


def _is_dataclass_instance(value: Any) -> bool:
    return hasattr(type(value), "__dataclass_fields__")


def _decode_payload(handler: Handler, payload: str) -> Any:
    """The handler's payload argument, decoded from the JSON text ``payload`` (empty = null)."""
    name = handler.name
    if not payload or payload.isspace():
        value = None
    else:
        try:
            value = json.loads(payload, parse_constant=_not_json)
        except (ValueError, RecursionError) as e:
            raise BadRequest(f"command `{name}`: the payload is not valid JSON: {e}") from None
    if handler.decode is None:
        if value is not None:
            raise BadRequest(
                f"command `{name}`: takes no payload (send null or nothing), got "
                f"{_codec._excerpt(value)}"
            )
        return None
    if value is None and handler.default is not inspect.Parameter.empty:
        return handler.default
    try:
        return handler.decode(value)
    except _codec.DecodeError as e:
        raise BadRequest(f"command `{name}`: {e}") from None


def _not_json(constant: str) -> Any:
    """Refuses ``NaN`` and ``Infinity``, which Python's parser accepts but JSON does not have."""
    raise ValueError(f"{constant} is not JSON")


def _run(handler: Handler, entity: Any, argument: Any, context: Context) -> Any:
    """Calls the handler with the payload and the context where its parameters want them; a
    :class:`Failure` it raises is the command's failure."""
    args: list[Any] = []
    kwargs = {}
    for name, is_context, keyword in handler.params:
        value = context if is_context else argument
        if keyword:
            kwargs[name] = value
        else:
            args.append(value)
    return getattr(entity, handler.method)(*args, **kwargs)


def _parse(what: str, data: bytes, error: type) -> Any:
    try:
        return json.loads(data)
    except ValueError as e:
        raise error(f"cannot decode the {what}: {e}") from None


def _to_json(what: str, value: Any, error: type = EntityError) -> Any:
    try:
        return _codec.to_json(value)
    except (_codec.EncodeError, RecursionError) as e:
        raise error(f"cannot encode the {what}: {e}") from None


def _text(what: str, data: Any, error: type = EntityError) -> str:
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as e:
        raise error(f"cannot encode the {what}: {e}") from None


def _encode(what: str, value: Any, error: type = EntityError) -> str:
    """``value`` as compact JSON text; a value with no JSON form is an entity error."""
    return _text(what, _to_json(what, value, error), error)
