"""Tests of entity classes and the glue: what the SDK reads from a class (commands, handler
signatures, event types) and refuses, and how commands, failures, state and events go through
the ``entity`` interface."""

from __future__ import annotations

import contextlib
import dataclasses
import unittest
from dataclasses import dataclass
from typing import Any

import _support  # noqa: F401  (puts the SDK on sys.path)

import cella
from cella import Context, EventContext, command
from cella._entity import model
from cella._glue import Glue
from cella._protocol import GuestError, HostContext
from cella.testing import Call, Publish, Schedule, TestKit


@dataclass
class Point:
    x: int
    y: int = 0


@dataclass
class Notes(cella.ValueEntity):
    notes: list[str] = dataclasses.field(default_factory=list)
    reads: int = 0

    @command
    def add_note(self, note: str) -> int:
        self.notes.append(note)
        return len(self.notes)

    @command("list")
    def list_notes(self) -> list[str]:
        return self.notes

    @command(name="by-index")
    def by_index(self, index: int = 0) -> str | None:
        return self.notes[index] if index < len(self.notes) else None

    @command
    def where(self, ctx: Context, point: Point) -> dict:
        return {"key": ctx.key, "point": point}

    @command
    def any_payload(self, payload) -> Any:  # type: ignore[no-untyped-def]
        return payload

    @command
    def keyword(self, *, context: Context, value: int) -> int:
        return value + context.sequence

    @command
    def checked(self, value: int) -> int:
        if value > 10:
            raise cella.BadRequest("value must be at most 10")
        return value

    @command
    def clear(self) -> None:
        if not self.notes:
            cella.reject("nothing to clear")
        self.notes.clear()

    @command
    def effects(self, ctx: Context) -> str:
        ctx.call("counter", "c1", "add", 1)
        ctx.publish("notes", {"count": len(self.notes)})
        ctx.schedule("tick", 1_000, "list", None)
        ctx.forward("other", "o1", "list")
        return "ignored"

    @command
    def misuse(self, ctx: Context) -> None:
        self.notes.append("lost")
        with contextlib.suppress(cella.EntityError):
            ctx.publish("t", {1})

    @command
    def bad_reply(self) -> Any:
        return {1, 2}

    @command
    def bad_state(self) -> None:
        self.notes.append(object())  # type: ignore[arg-type]

    @command
    def crash(self) -> None:
        self.notes.append("lost")
        raise ZeroDivisionError("boom")

    @command
    def random(self, ctx: Context) -> list:
        return [ctx.random_u64(), ctx.command_id, ctx.timestamp_ms]


@dataclass
class Added:
    amount: int


@dataclass
class Reset:
    pass


@dataclass(frozen=True)
class Ledger(cella.EventSourcedEntity):
    balance: int = 0
    entries: int = 0

    event_types = {"added": Added, "reset": Reset}
    snapshot_every = 50

    @command
    def add(self, amount: int, ctx: EventContext) -> int:
        ctx.emit(Added(amount))
        ctx.emit(Added(amount))
        return self.balance + 2 * amount

    @command
    def reset(self, ctx: EventContext) -> None:
        ctx.emit(Reset())

    @command
    def balance_(self) -> int:
        return self.balance

    @command
    def wrong_event(self, ctx: EventContext) -> None:
        ctx.emit({"added": {"amount": 1}})

    def apply(self, event: Added | Reset) -> Ledger:
        if isinstance(event, Added):
            return dataclasses.replace(
                self, balance=self.balance + event.amount, entries=self.entries + 1
            )
        return dataclasses.replace(self, balance=0, entries=self.entries + 1)


@dataclass
class Log(cella.EventSourcedEntity):
    lines: list[str] = dataclasses.field(default_factory=list)

    @command
    def log(self, line: str, ctx: EventContext) -> int:
        self.lines.append("mutations of self are discarded")
        ctx.emit(line)
        ctx.emit({"joined": [line, line]})
        return len(ctx.emitted)

    @command
    def emit_dataclass(self, ctx: EventContext) -> None:
        ctx.emit(Added(1))

    def apply(self, event: Any) -> None:
        self.lines.append(event if isinstance(event, str) else "+".join(event["joined"]))


def host(command: str, entity_type: str = "t", key: str = "k") -> HostContext:
    return HostContext(entity_type, key, "id", command, 0, 0, 0)


class ModelTest(unittest.TestCase):
    def test_commands_in_declaration_order(self) -> None:
        self.assertEqual(
            TestKit(Notes).commands,
            [
                "add-note",
                "list",
                "by-index",
                "where",
                "any-payload",
                "keyword",
                "checked",
                "clear",
                "effects",
                "misuse",
                "bad-reply",
                "bad-state",
                "crash",
                "random",
            ],
        )
        self.assertEqual(TestKit(Ledger).commands, ["add", "reset", "balance", "wrong-event"])
        self.assertEqual(TestKit(Ledger).snapshot_every, 50)
        self.assertEqual(TestKit(Notes).snapshot_every, 0)

    def test_subclasses_inherit_and_override_commands(self) -> None:
        @dataclass
        class More(Notes):
            @command
            def extra(self) -> int:
                return 1

            def clear(self) -> None:  # no longer a command
                pass

        commands = TestKit(More).commands
        self.assertEqual(commands[0], "add-note")
        self.assertEqual(commands[-1], "extra")
        self.assertNotIn("clear", commands)

    def test_classes_that_cannot_be_entities_are_refused(self) -> None:
        class NotADataclass(cella.ValueEntity):
            @command
            def get(self) -> None:
                pass

        @dataclass
        class NoDefault(cella.ValueEntity):
            total: int

            @command
            def get(self) -> None:
                pass

        @dataclass
        class NoCommands(cella.ValueEntity):
            total: int = 0

        @dataclass
        class NoKind:
            @command
            def get(self) -> None:
                pass

        @dataclass
        class NoApply(cella.EventSourcedEntity):
            @command
            def get(self) -> None:
                pass

        @dataclass
        class TwoPayloads(cella.ValueEntity):
            @command
            def get(self, a: int, b: int) -> None:
                pass

        @dataclass
        class Twice(cella.ValueEntity):
            @command("get")
            def one(self) -> None:
                pass

            @command("get")
            def two(self) -> None:
                pass

        @dataclass
        class BadHint(cella.ValueEntity):
            @command
            def get(self, data: bytes) -> None:
                pass

        @dataclass
        class BadName(cella.ValueEntity):
            @command("a/b")
            def get(self) -> None:
                pass

        @dataclass
        class Varargs(cella.ValueEntity):
            @command
            def get(self, *args: int) -> None:
                pass

        @dataclass
        class BadEvents(cella.EventSourcedEntity):
            event_types = (dict,)

            @command
            def get(self) -> None:
                pass

            def apply(self, event: Any) -> None:
                pass

        cases = {
            NotADataclass: "must be a @dataclass",
            NoDefault: "field `total` of ",
            NoCommands: "has no commands",
            NoKind: "exactly one of",
            NoApply: "must define apply",
            TwoPayloads: "`b` is a second one",
            Twice: "command `get` is also handled by one",
            BadHint: "cannot decode JSON into `bytes`",
            BadName: "cannot name a command",
            Varargs: "*args",
            BadEvents: "is not a dataclass",
        }
        for cls, message in cases.items():
            with self.subTest(cls=cls.__name__):
                with self.assertRaises(TypeError) as caught:
                    model(cls)
                self.assertIn(message, str(caught.exception))
        with self.assertRaises(TypeError):
            command(3)  # type: ignore[call-overload]

    def test_export_outside_a_component_is_inert(self) -> None:
        exported = cella.export(Notes)
        self.assertEqual(exported.__name__, "Entity")
        self.assertEqual(exported.glue.describe().kind, "value")  # type: ignore[attr-defined]


class ValueEntityTest(unittest.TestCase):
    def setUp(self) -> None:
        self.kit = TestKit(Notes)

    def test_handlers_get_their_payload_and_context(self) -> None:
        kit = self.kit
        self.assertEqual(kit.handle("add-note", "a"), 1)
        self.assertEqual(kit.handle("list"), ["a"])
        self.assertEqual(kit.handle("by-index"), "a")
        self.assertEqual(kit.handle("by-index", 5), None)
        self.assertEqual(
            kit.handle("where", {"x": 1}), {"key": "test-key", "point": {"x": 1, "y": 0}}
        )
        self.assertEqual(kit.handle("any-payload", [1, {"a": None}]), [1, {"a": None}])
        self.assertEqual(kit.handle("any-payload"), None)
        self.assertEqual(kit.handle("keyword", 3), 4)

    def test_only_changes_persist(self) -> None:
        kit = self.kit
        kit.handle("add-note", "a")
        self.assertEqual(kit.sequence, 1)
        self.assertTrue(kit.last and kit.last.persisted)
        kit.handle("list")
        kit.handle("by-index", 0)
        self.assertEqual(kit.sequence, 1)
        self.assertFalse(kit.last and kit.last.persisted)
        self.assertEqual(kit.state_json, {"notes": ["a"], "reads": 0})
        self.assertEqual(kit.state, Notes(notes=["a"]))

    def test_unknown_commands(self) -> None:
        with self.assertRaises(cella.UnknownCommand) as caught:
            self.kit.handle("add_note", "a")
        self.assertEqual(caught.exception.message, "add_note")

    def test_bad_requests(self) -> None:
        kit = self.kit
        cases = [
            ("add-note", 1, "command `add-note`: expected a string, got 1"),
            ("add-note", None, "command `add-note`: expected a string, got null"),
            ("list", 1, "command `list`: takes no payload (send null or nothing), got 1"),
            ("where", {"y": 1}, "command `where`: missing field `x`"),
            (
                "where",
                {"x": "1"},
                'command `where`: at `x`: expected an integer, got the string "1"',
            ),
            ("checked", 11, "value must be at most 10"),
        ]
        for name, payload, message in cases:
            with self.subTest(command=name, payload=payload):
                with self.assertRaises(cella.BadRequest) as caught:
                    kit.handle(name, payload)
                self.assertEqual(caught.exception.message, message)
        self.assertIsNone(kit.last)
        self.assertEqual(kit.sequence, 0)

    def test_payload_text_edge_cases(self) -> None:
        glue = Glue(model(Notes))
        for text in ["", "  ", "null"]:
            self.assertEqual(glue.handle(host("list"), None, text).reply, "[]")
        for text in ["NaN", "[-Infinity]", "[" * 100_000]:
            with self.assertRaises(cella.BadRequest):
                glue.handle(host("any-payload"), None, text)
        with self.assertRaises(cella.BadRequest) as caught:
            glue.handle(host("add-note"), None, "{nope")
        self.assertTrue(
            caught.exception.message.startswith(
                "command `add-note`: the payload is not valid JSON: "
            )
        )

    def test_rejections_discard_changes(self) -> None:
        with self.assertRaises(cella.Rejected) as caught:
            self.kit.handle("clear")
        self.assertEqual(caught.exception, cella.Rejected("nothing to clear"))
        self.assertEqual(self.kit.sequence, 0)

    def test_effects_and_forward(self) -> None:
        self.assertEqual(self.kit.handle("effects"), "ignored")
        last = self.kit.last
        assert last is not None
        self.assertEqual(
            last.effects,
            [
                Call("counter", "c1", "add", 1),
                Publish("notes", {"count": 0}),
                Schedule("tick", 1_000, "list", None),
            ],
        )
        self.assertEqual(last.forward, Call("other", "o1", "list", None))
        self.assertFalse(last.persisted)

    def test_entity_errors(self) -> None:
        cases = [
            ("misuse", "entity error: cannot serialize the payload of the publication to `t`: "),
            ("bad-reply", "entity error: cannot encode the reply: a set is not JSON-serializable"),
            ("bad-state", "entity error: cannot encode the state: a object is not JSON"),
        ]
        for name, message in cases:
            with self.subTest(command=name):
                with self.assertRaises(cella.EntityError) as caught:
                    self.kit.handle(name)
                self.assertTrue(caught.exception.message.startswith(message), caught.exception)
        self.assertEqual(self.kit.sequence, 0)

    def test_exceptions_of_the_entity_propagate(self) -> None:
        with self.assertRaises(ZeroDivisionError):
            self.kit.handle("crash")
        self.assertEqual(self.kit.sequence, 0)
        self.assertEqual(self.kit.state, Notes())

    def test_the_context_is_deterministic(self) -> None:
        first = TestKit(Notes).handle("random")
        self.assertEqual(first, TestKit(Notes).handle("random"))
        self.assertEqual(first[1:], ["test-command-1", TestKit.DEFAULT_TIME_MS])
        kit = TestKit(Notes)
        kit.set_time(5)
        self.assertEqual(kit.handle("random")[2], 5)

    def test_a_stored_state_that_does_not_decode(self) -> None:
        glue = Glue(model(Notes))
        for state, message in [
            (b"{", "entity error: cannot decode the state: "),
            (b'{"notes": [1]}', "entity error: cannot decode the state: at `notes[0]`: "),
        ]:
            with self.assertRaises(cella.EntityError) as caught:
                glue.handle(host("list"), state, "null")
            self.assertTrue(caught.exception.message.startswith(message), caught.exception)
        with self.assertRaises(GuestError):
            glue.render_state(b'{"notes": 1}')

    def test_a_state_from_another_version_is_not_rewritten_by_reads(self) -> None:
        glue = Glue(model(Notes))
        stored = b'{"reads": 0, "notes": ["a"], "old": true}'
        self.assertIsNone(glue.handle(host("list"), stored, "null").state)
        self.assertEqual(glue.render_state(stored), '{"notes":["a"],"reads":0}')

    def test_value_entities_have_no_events(self) -> None:
        glue = Glue(model(Notes))
        with self.assertRaises(GuestError):
            glue.apply(None, b"{}")
        with self.assertRaises(GuestError):
            glue.render_event(b"{}")

    def test_set_state(self) -> None:
        self.kit.set_state(Notes(notes=["x", "y"]))
        self.assertEqual(self.kit.handle("list"), ["x", "y"])
        with self.assertRaises(TypeError):
            self.kit.set_state({"notes": []})  # type: ignore[arg-type]


class EventSourcedTest(unittest.TestCase):
    def test_events_are_externally_tagged_and_folded(self) -> None:
        kit = TestKit(Ledger)
        self.assertEqual(kit.handle("add", 5), 10)
        self.assertEqual(kit.events, [{"added": {"amount": 5}}, {"added": {"amount": 5}}])
        self.assertEqual(kit.state, Ledger(balance=10, entries=2))
        self.assertEqual(kit.handle("balance"), 10)
        self.assertIsNone(kit.handle("reset"))
        self.assertEqual(kit.last.events if kit.last else None, [{"reset": {}}])
        self.assertEqual(kit.state_json, {"balance": 0, "entries": 3})
        self.assertEqual(kit.sequence, 2)

    def test_the_glue_returns_the_folded_state(self) -> None:
        glue = Glue(model(Ledger))
        outcome = glue.handle(host("add"), None, "2")
        self.assertEqual(outcome.events, [b'{"added":{"amount":2}}'] * 2)
        self.assertEqual(outcome.state, b'{"balance":4,"entries":2}')
        self.assertIsNone(glue.handle(host("balance"), outcome.state, "null").state)
        self.assertEqual(
            glue.apply(None, b'{"added": {"amount": 3}}'), b'{"balance":3,"entries":1}'
        )
        self.assertEqual(glue.render_event(b'{"reset": {"x": 1}}'), '{"reset":{}}')

    def test_events_that_do_not_decode(self) -> None:
        glue = Glue(model(Ledger))
        for event, message in [
            (b"[]", "cannot decode the event: expected an object with one key"),
            (b'{"a": {}, "b": {}}', "cannot decode the event: expected an object with one key"),
            (b'{"removed": {}}', "cannot decode the event: unknown event `removed`"),
            (b'{"added": {"amount": "x"}}', "cannot decode the event `added`: at `amount`"),
            (b"x", "cannot decode the event: "),
        ]:
            with self.subTest(event=event):
                with self.assertRaises(GuestError) as caught:
                    glue.apply(None, event)
                self.assertTrue(str(caught.exception).startswith(message), caught.exception)

    def test_emitting_something_else_than_the_event_types(self) -> None:
        with self.assertRaises(cella.EntityError) as caught:
            TestKit(Ledger).handle("wrong-event")
        self.assertIn("emitted a dict, which is not one of the event_types", str(caught.exception))
        with self.assertRaises(cella.EntityError) as caught:
            TestKit(Log).handle("emit-dataclass")
        self.assertIn("declare the event classes in event_types", str(caught.exception))

    def test_plain_json_events_and_mutations_of_self(self) -> None:
        kit = TestKit(Log)
        self.assertEqual(kit.handle("log", "a"), 2)
        self.assertEqual(kit.events, ["a", {"joined": ["a", "a"]}])
        self.assertEqual(kit.state, Log(lines=["a", "a+a"]))
        self.assertEqual(kit.sequence, 1)

    def test_rejections_discard_events(self) -> None:
        @dataclass
        class Picky(cella.EventSourcedEntity):
            n: int = 0

            @command
            def bump(self, ctx: EventContext) -> None:
                ctx.emit(1)
                cella.reject("no")

            def apply(self, event: Any) -> None:
                self.n += event

        kit = TestKit(Picky)
        with self.assertRaises(cella.Rejected):
            kit.handle("bump")
        self.assertEqual((kit.sequence, kit.events, kit.state_json), (0, [], None))

    def test_apply_must_return_none_or_a_state(self) -> None:
        @dataclass
        class Odd(cella.EventSourcedEntity):
            @command
            def go(self, ctx: EventContext) -> None:
                ctx.emit(1)

            def apply(self, event: Any) -> Any:
                return 1

        with self.assertRaises(cella.EntityError):
            TestKit(Odd).handle("go")
        with self.assertRaises(GuestError):
            Glue(model(Odd)).apply(None, b"1")


if __name__ == "__main__":
    unittest.main()
