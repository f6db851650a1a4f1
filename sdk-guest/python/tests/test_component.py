"""Tests of the component export against the real WIT bindings: generates them with
``componentize-py bindings`` (skipped when componentize-py is not installed) and runs the
exported class as componentize-py would, without building a component."""

from __future__ import annotations

import dataclasses
import importlib
import json
import shutil
import subprocess
import sys
import tempfile
import unittest
from typing import Any, ClassVar

import _support

import cella

WIT = _support.ROOT.parent.parent / "wit"
BINDING_MODULES = ("wit_world", "componentize_py_types")


@unittest.skipUnless(shutil.which("componentize-py"), "componentize-py is not installed")
@unittest.skipUnless(sys.version_info >= (3, 11), "the generated bindings need Python 3.11")
class ComponentTest(unittest.TestCase):
    wit: ClassVar[Any]
    err: ClassVar[Any]
    tmp: ClassVar[tempfile.TemporaryDirectory]

    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory()
        subprocess.run(
            ["componentize-py", "-d", str(WIT), "-w", "folding-entity-world", "bindings", cls.tmp.name],
            check=True,
            capture_output=True,
        )
        sys.path.insert(0, cls.tmp.name)
        cls.wit = importlib.import_module("wit_world.imports.types")
        cls.err = importlib.import_module("componentize_py_types").Err

    @classmethod
    def tearDownClass(cls) -> None:
        sys.path.remove(cls.tmp.name)
        for name in list(sys.modules):
            if name.split(".")[0] in BINDING_MODULES:
                del sys.modules[name]
        cls.tmp.cleanup()

    def context(
        self,
        command: str,
        correlation: str | None = None,
        timer: str | None = None,
        message: Any = None,
    ) -> Any:
        return self.wit.Context(
            entity_type="t",
            key="k",
            command_id="c1",
            command=command,
            timestamp_ms=1,
            random_seed=2**64 - 1,
            sequence=0,
            correlation=correlation,
            timer=timer,
            message=message,
        )

    def failure(self, entity: Any, command: str, payload: str) -> Any:
        with self.assertRaises(self.err) as caught:
            entity.handle(self.context(command), None, payload)
        return caught.exception.value

    def test_a_value_entity(self) -> None:
        exported = cella.export(_support.load_example("tck_value").TckValue)
        exports = importlib.import_module("wit_world.exports")
        self.assertIn(exports.Entity, exported.__mro__)
        entity = exported()
        wit = self.wit
        self.assertEqual(
            entity.describe(),
            wit.Descriptor(
                kind=wit.EntityKind.VALUE,
                commands=["process", "get", "context", "on-reply", "on-message"],
                snapshot_every=0,
                subscriptions=[
                    wit.Subscription(
                        topic="tck-news",
                        command="on-message",
                        key=wit.SubscriberKey_Pointer("/to"),
                    )
                ],
                events_topic=None,
                durability=wit.Durability.DURABLE,
                crdt=None,
            ),
        )
        target = '{"type": "a", "key": "b", "command": "c", "payload": 1}'
        actions = (
            f'{{"actions": [{{"update": "x"}}, {{"call": {target}}}, {{"forward": {target}}},'
            ' {"publish": {"topic": "t", "payload": 2}},'
            ' {"schedule": {"name": "n", "delayMs": 5, "command": "get", "payload": null}},'
            ' {"call": {"type": "a", "key": "b", "command": "c", "payload": 1,'
            ' "replyTo": {"command": "on-reply", "correlation": "t1"}}},'
            ' {"schedule": {"name": "r", "delayMs": 0, "command": "get", "everyMs": 10}},'
            ' {"cancel": "n"},'
            ' {"broadcast": {"type": "a", "command": "c", "payload": [3]}}]}'
        )
        outcome = entity.handle(self.context("process"), None, actions)
        address = wit.Address(entity_type="a", key="b")
        call = wit.Call(target=address, command="c", payload="1", reply_to=None)
        route = wit.ReplyRoute(command="on-reply", correlation="t1")
        self.assertEqual(
            outcome,
            wit.Outcome(
                events=[],
                state=b'{"value":"x"}',
                reply='{"value":"x"}',
                forward=call,
                effects=[
                    wit.Effect_Call(call),
                    wit.Effect_Publish(wit.Publication(topic="t", payload="2")),
                    wit.Effect_Schedule(
                        wit.Timer(
                            name="n", delay_ms=5, command="get", payload="null", every_ms=None
                        )
                    ),
                    wit.Effect_Call(
                        wit.Call(target=address, command="c", payload="1", reply_to=route)
                    ),
                    wit.Effect_Schedule(
                        wit.Timer(name="r", delay_ms=0, command="get", payload="null", every_ms=10)
                    ),
                    wit.Effect_Cancel("n"),
                    wit.Effect_Broadcast(
                        wit.Broadcast(entity_type="a", command="c", payload="[3]")
                    ),
                ],
                crdt_ops=[],
                consistency=wit.Consistency.LOCAL,
            ),
        )
        replied = entity.handle(
            self.context("on-reply", correlation="t1"), b'{"value":"x"}', '{"ok": {"value": "y"}}'
        )
        self.assertEqual(replied.state, b'{"value":"xt1:ok:y;"}')
        self.assertIsInstance(self.failure(entity, "on-reply", '{"ok": 1}'), wit.Failure_BadRequest)
        delivered = entity.handle(
            self.context("on-message", message=wit.TopicMessage(topic="tck-news", offset=7)),
            b'{"value":"x"}',
            '{"to": "k", "text": "hi"}',
        )
        self.assertEqual(delivered.state, b'{"value":"xtck-news@7:hi;"}')
        message = '{"to": "k", "text": "hi"}'
        self.assertIsInstance(self.failure(entity, "on-message", message), wit.Failure_BadRequest)
        reply = entity.handle(self.context("context"), b'{"value":"x"}', "")
        self.assertIsNone(reply.state)
        self.assertIn('"randomSeed":18446744073709551615', reply.reply)
        self.assertEqual(entity.render_state(b'{"value": "x"}'), '{"value":"x"}')
        for call_export in (lambda: entity.apply(None, b"{}"), lambda: entity.render_event(b"{}")):
            with self.assertRaises(self.err) as caught:
                call_export()
            self.assertEqual(caught.exception.value, "a value entity has no events")

    def test_failures(self) -> None:
        entity = cella.export(_support.load_example("counter").Counter)()
        wit = self.wit
        self.assertEqual(self.failure(entity, "reset", "null"), wit.Failure_UnknownCommand("reset"))
        self.assertIsInstance(self.failure(entity, "add", '"five"'), wit.Failure_BadRequest)
        with self.assertRaises(self.err) as caught:
            entity.handle(self.context("add"), b'{"total":9223372036854775807}', "1")
        self.assertEqual(caught.exception.value, wit.Failure_Rejected("adding 1 overflows"))
        with self.assertRaises(self.err) as caught:
            entity.handle(self.context("get"), b"[]", "null")
        self.assertIsInstance(caught.exception.value, wit.Failure_Rejected)
        self.assertTrue(caught.exception.value.value.startswith("entity error: "))

    def test_an_event_sourced_entity(self) -> None:
        entity = cella.export(_support.load_example("shopping_cart").ShoppingCart)()
        wit = self.wit
        self.assertEqual(entity.describe().kind, wit.EntityKind.EVENT_SOURCED)
        self.assertEqual(entity.describe().events_topic, "cart-events")
        self.assertEqual(entity.describe().subscriptions, [])
        events = cella.export(_support.load_example("tck_events").TckEvents)()
        self.assertEqual(
            events.describe().subscriptions,
            [
                wit.Subscription(
                    topic="tck-news", command="on-message", key=wit.SubscriberKey_Fixed("all")
                )
            ],
        )
        self.assertEqual(events.describe().events_topic, "tck-events-log")
        item = '{"productId": "p", "name": "P", "quantity": 2}'
        outcome = entity.handle(self.context("add-item"), None, item)
        event = b'{"itemAdded":{"item":{"productId":"p","name":"P","quantity":2}}}'
        self.assertEqual(outcome.events, [event])
        self.assertEqual(outcome.state, b'{"items":[{"productId":"p","name":"P","quantity":2}]}')
        self.assertEqual(entity.apply(None, event), outcome.state)
        self.assertEqual(entity.render_event(event), event.decode())
        with self.assertRaises(self.err) as caught:
            entity.apply(None, b'{"itemAdded": {}}')
        self.assertIn("missing field `item`", caught.exception.value)

        # `cella.export` also defines the `fold` export in the calling module (an app module's
        # namespace here).
        app = {"cella": cella, "Cart": _support.load_example("shopping_cart").ShoppingCart}
        exec("Entity = cella.export(Cart)", app)
        fold = app["Fold"]()
        self.assertIn(importlib.import_module("wit_world.exports").Fold, type(fold).__mro__)
        twice = fold.apply_all(None, [event, event])
        self.assertEqual(twice, entity.apply(entity.apply(None, event), event))
        with self.assertRaises(self.err) as caught:
            fold.apply_all(None, [event, b'{"itemAdded": {}}'])
        self.assertIn("missing field `item`", caught.exception.value)

    def test_a_crdt_entity(self) -> None:
        entity = cella.export(_support.load_example("tck_crdt").TckCrdt)()
        wit = self.wit
        descriptor = entity.describe()
        self.assertEqual(descriptor.kind, wit.EntityKind.CRDT)
        self.assertEqual(descriptor.crdt, wit.CrdtType.OR_MAP)
        self.assertEqual(descriptor.durability, wit.Durability.DURABLE)
        ops = [
            {"path": ["m", "c"], "type": "g-counter", "action": {"increment": 2}},
            {"path": ["s"], "type": "or-set", "action": {"add": {"b": 1, "a": 2}}},
            {"path": ["s"], "type": "or-set", "action": "clear"},
            {"path": ["v"], "type": "vote", "action": {"vote": True}},
            {"path": [], "type": "or-map", "action": {"delete": "x"}},
        ]
        payload = json.dumps({"ops": ops, "consistency": "all"})
        outcome = entity.handle(self.context("update"), b"{}", payload)
        self.assertEqual(
            outcome,
            wit.Outcome(
                events=[],
                state=None,
                reply='{"applied":5}',
                forward=None,
                effects=[],
                crdt_ops=[
                    wit.CrdtOp(
                        path=["m", "c"],
                        action=wit.CrdtAction_Increment(2),
                        creates=wit.CrdtType.G_COUNTER,
                    ),
                    wit.CrdtOp(
                        path=["s"],
                        action=wit.CrdtAction_Add('{"a":2,"b":1}'),
                        creates=wit.CrdtType.OR_SET,
                    ),
                    wit.CrdtOp(
                        path=["s"], action=wit.CrdtAction_Clear(), creates=wit.CrdtType.OR_SET
                    ),
                    wit.CrdtOp(
                        path=["v"], action=wit.CrdtAction_Vote(True), creates=wit.CrdtType.VOTE
                    ),
                    wit.CrdtOp(path=[], action=wit.CrdtAction_Delete("x"), creates=None),
                ],
                consistency=wit.Consistency.ALL,
            ),
        )
        got = entity.handle(self.context("get"), b'{"a": {"n": 1}}', "null")
        self.assertEqual(got.reply, '{"value":{"a":{"n":1}}}')
        self.assertEqual(got.crdt_ops, [])
        self.assertEqual(got.consistency, wit.Consistency.LOCAL)

    def test_an_ephemeral_value_entity(self) -> None:
        @dataclasses.dataclass
        class Session(cella.ValueEntity):
            n: int = 0
            ephemeral = True

            @cella.command
            def go(self) -> int:
                self.n += 1
                return self.n

        entity = cella.export(Session)()
        self.assertEqual(entity.describe().durability, self.wit.Durability.EPHEMERAL)
        self.assertIsNone(entity.describe().crdt)
        self.assertEqual(entity.handle(self.context("go"), None, "null").state, b'{"n":1}')

    def test_exceptions_of_the_entity_escape(self) -> None:
        @dataclasses.dataclass
        class Crash(cella.ValueEntity):
            @cella.command
            def go(self) -> None:
                raise KeyError("boom")

        with self.assertRaises(KeyError):
            cella.export(Crash)().handle(self.context("go"), None, "null")


if __name__ == "__main__":
    unittest.main()
