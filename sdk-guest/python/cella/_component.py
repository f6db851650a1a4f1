"""The component export: :func:`export` turns an entity class into the class componentize-py
exports as the ``cella:entity/entity`` interface, converting between the generated WIT bindings
(``wit_world``, present only while componentize-py builds the component) and the glue's
plain-Python protocol types.

An exception that escapes the entity's code is left to componentize-py's runtime, which prints
its traceback to stderr (the host keeps the tail of a guest's output and attaches it to the
failure) and traps: the command fails with ``entity_failed`` and nothing is persisted."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from ._entity import model
from ._errors import Failure
from ._glue import Glue
from ._protocol import (
    CRDT,
    EVENT_SOURCED,
    VALUE,
    Broadcast,
    Call,
    Cancel,
    CrdtOp,
    GuestError,
    Publication,
    Subscription,
    Timer,
)

__all__ = ["export"]

T = TypeVar("T")


def export(entity: type) -> type:
    """Exports ``entity`` as the component's ``entity`` interface. In the app module::

        Entity = cella.export(Counter)

    componentize-py looks for the class named ``Entity`` in the app module (the name of the
    exported interface), so the assignment must use exactly that name. The optional ``fold``
    interface (many events folded in one call, for the host's replays) needs a class named
    ``Fold`` there too: this call defines it in the calling module unless it has one. The entity
    class is checked here, at import time, which componentize-py runs while building the
    component: a mistake in it fails the build. Outside a component build (in unit tests) the
    returned class is inert; test entities with :class:`cella.testing.TestKit`.
    """
    glue = Glue(model(entity))
    try:
        from componentize_py_types import Err  # type: ignore[import-not-found]
        from wit_world import exports  # type: ignore[import-not-found]
        from wit_world.imports import types as wit  # type: ignore[import-not-found]
    except ImportError:
        return type(
            "Entity",
            (),
            {
                "__doc__": f"The export of {entity.__qualname__} (inert outside a component).",
                "glue": glue,
            },
        )
    component = _component_class(glue, exports.Entity, wit, Err)
    fold_base = getattr(exports, "Fold", None)
    if fold_base is not None:
        sys._getframe(1).f_globals.setdefault("Fold", _fold_class(glue, fold_base, Err))
    return component


def _fold_class(glue: Glue, base: type, err: type) -> type:
    class Fold(base):  # type: ignore[misc]
        """The ``cella:entity/fold`` export of the entity."""

        def apply_all(self, state: bytes | None, events: list[bytes]) -> bytes:
            try:
                return glue.apply_all(state, events)
            except GuestError as e:
                raise err(str(e)) from None

    return Fold


def _component_class(glue: Glue, base: type, wit: Any, err: type) -> type:
    kinds = {
        VALUE: wit.EntityKind.VALUE,
        EVENT_SOURCED: wit.EntityKind.EVENT_SOURCED,
        CRDT: wit.EntityKind.CRDT,
    }
    # `g-counter` → CrdtType.G_COUNTER; `local` → Consistency.LOCAL.
    crdt_types = {t.name.lower().replace("_", "-"): t for t in wit.CrdtType}
    consistencies = {c.name.lower(): c for c in wit.Consistency}
    actions = {
        "increment": wit.CrdtAction_Increment,
        "decrement": wit.CrdtAction_Decrement,
        "add": wit.CrdtAction_Add,
        "remove": wit.CrdtAction_Remove,
        "set": wit.CrdtAction_Set,
        "vote": wit.CrdtAction_Vote,
        "delete": wit.CrdtAction_Delete,
    }
    bare_actions = {
        "enable": wit.CrdtAction_Enable,
        "disable": wit.CrdtAction_Disable,
        "clear": wit.CrdtAction_Clear,
    }
    failures = {
        "rejected": wit.Failure_Rejected,
        "bad-request": wit.Failure_BadRequest,
        "unknown-command": wit.Failure_UnknownCommand,
    }

    def to_call(call: Call | None) -> Any:
        if call is None:
            return None
        return wit.Call(
            target=wit.Address(entity_type=call.entity_type, key=call.key),
            command=call.command,
            payload=call.payload,
            reply_to=None
            if call.reply_to is None
            else wit.ReplyRoute(
                command=call.reply_to.command, correlation=call.reply_to.correlation
            ),
        )

    def to_effect(effect: Any) -> Any:
        if isinstance(effect, Call):
            return wit.Effect_Call(to_call(effect))
        if isinstance(effect, Publication):
            return wit.Effect_Publish(wit.Publication(topic=effect.topic, payload=effect.payload))
        if isinstance(effect, Timer):
            return wit.Effect_Schedule(
                wit.Timer(
                    name=effect.name,
                    delay_ms=effect.delay_ms,
                    command=effect.command,
                    payload=effect.payload,
                    every_ms=effect.every_ms,
                )
            )
        if isinstance(effect, Cancel):
            return wit.Effect_Cancel(effect.name)
        if isinstance(effect, Broadcast):
            return wit.Effect_Broadcast(
                wit.Broadcast(
                    entity_type=effect.entity_type, command=effect.command, payload=effect.payload
                )
            )
        raise TypeError(f"not an effect: {effect!r}")

    def to_crdt_op(op: CrdtOp) -> Any:
        bare = bare_actions.get(op.action)
        action = bare() if bare is not None else actions[op.action](op.argument)
        creates = None if op.creates is None else crdt_types[op.creates]
        return wit.CrdtOp(path=list(op.path), action=action, creates=creates)

    def to_subscription(subscription: Subscription) -> Any:
        key = (
            wit.SubscriberKey_Fixed(subscription.fixed_key)
            if subscription.fixed_key is not None
            else wit.SubscriberKey_Pointer(subscription.key or "")
        )
        return wit.Subscription(topic=subscription.topic, command=subscription.command, key=key)

    def guest_call(run: Callable[[], T]) -> T:
        """Runs a call returning ``result<_, string>``."""
        try:
            return run()
        except GuestError as e:
            raise err(str(e)) from None

    class Entity(base):  # type: ignore[misc]
        """The ``cella:entity/entity`` export of the entity."""

        def describe(self) -> Any:
            descriptor = glue.describe()
            return wit.Descriptor(
                kind=kinds[descriptor.kind],
                commands=list(descriptor.commands),
                snapshot_every=descriptor.snapshot_every,
                subscriptions=[to_subscription(s) for s in descriptor.subscriptions],
                events_topic=descriptor.events_topic,
                durability=wit.Durability.EPHEMERAL
                if descriptor.ephemeral
                else wit.Durability.DURABLE,
                crdt=None if descriptor.crdt is None else crdt_types[descriptor.crdt],
            )

        def handle(self, ctx: Any, state: bytes | None, payload: str) -> Any:
            try:
                outcome = glue.handle(ctx, state, payload)
            except Failure as failure:
                raise err(failures[failure.kind](failure.message)) from None
            return wit.Outcome(
                events=outcome.events,
                state=outcome.state,
                reply=outcome.reply,
                forward=to_call(outcome.forward),
                effects=[to_effect(effect) for effect in outcome.effects],
                crdt_ops=[to_crdt_op(op) for op in outcome.crdt_ops],
                consistency=consistencies[outcome.consistency],
            )

        def apply(self, state: bytes | None, event: bytes) -> bytes:
            return guest_call(lambda: glue.apply(state, event))

        def render_state(self, state: bytes) -> str:
            return guest_call(lambda: glue.render_state(state))

        def render_event(self, event: bytes) -> str:
            return guest_call(lambda: glue.render_event(event))

    Entity.glue = glue
    return Entity
