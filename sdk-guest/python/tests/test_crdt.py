"""Tests of crdt entities (declaration, typed handles, consistency, the single-replica model and
CrdtTestKit) and of ephemeral value entities."""

from __future__ import annotations

import unittest
from dataclasses import dataclass, field
from typing import Any

import _support  # noqa: F401  (puts the SDK on sys.path)

import cella
from cella import _crdt_model as model_
from cella._entity import model
from cella._glue import Glue
from cella._protocol import CrdtOp as RawOp
from cella._protocol import HostContext
from cella.testing import CrdtOp, CrdtTestKit, EntityFailed, TestKit


class Likes(cella.CrdtEntity[cella.GCounter]):
    @cella.command
    def like(self, n: Any = 1) -> int:  # the handle checks the amount
        self.data.increment(n)
        return self.data.value


class Board(cella.CrdtEntity[cella.ORMap]):
    ephemeral = True

    @cella.command
    def run(self, script: str, ctx: cella.CrdtContext) -> Any:
        namespace = {"data": self.data, "ctx": ctx, "cella": cella}
        exec(script, namespace)  # the test's statements against the handles
        return namespace.get("result")


def run(script: str, value: Any = None) -> CrdtTestKit:
    kit = CrdtTestKit(Board, value=value)
    kit.handle("run", script)
    return kit


class DeclarationTest(unittest.TestCase):
    def test_the_descriptor_names_the_type_and_durability(self) -> None:
        likes = Glue(model(Likes)).describe()
        self.assertEqual((likes.kind, likes.crdt, likes.ephemeral), ("crdt", "g-counter", False))
        board = Glue(model(Board)).describe()
        self.assertEqual((board.crdt, board.ephemeral), ("or-map", True))
        self.assertEqual(board.commands, ["run"])

    def test_mistakes_fail_at_import(self) -> None:
        class Untyped(cella.CrdtEntity):  # type: ignore[type-arg]
            @cella.command
            def go(self) -> None: ...

        with self.assertRaisesRegex(TypeError, "must name its crdt type"):
            model(Untyped)

        class NotAHandle(cella.CrdtEntity[int]):  # type: ignore[type-var]
            @cella.command
            def go(self) -> None: ...

        with self.assertRaisesRegex(TypeError, "does not name a crdt type"):
            model(NotAHandle)

        @dataclass
        class WithFields(cella.CrdtEntity[cella.Flag]):
            on: bool = False

            @cella.command
            def go(self) -> None: ...

        with self.assertRaisesRegex(TypeError, "no state fields"):
            model(WithFields)

        class Subscribing(cella.CrdtEntity[cella.Flag]):
            subscriptions = [cella.subscribe("t", command="go", key="/k")]

            @cella.command
            def go(self) -> None: ...

        with self.assertRaisesRegex(TypeError, "not for a crdt entity"):
            model(Subscribing)

        @dataclass
        class Journaled(cella.EventSourcedEntity):
            ephemeral = True

            @cella.command
            def go(self) -> None: ...

            def apply(self, event: Any) -> None: ...

        with self.assertRaisesRegex(TypeError, "always durable"):
            model(Journaled)

        @dataclass
        class Odd(cella.ValueEntity):
            ephemeral = "yes"  # type: ignore[assignment]

            @cella.command
            def go(self) -> None: ...

        with self.assertRaisesRegex(TypeError, "True or False"):
            model(Odd)

    def test_the_kits_take_their_own_kind(self) -> None:
        with self.assertRaisesRegex(TypeError, "CrdtTestKit"):
            TestKit(Likes)
        with self.assertRaisesRegex(TypeError, "TestKit"):
            CrdtTestKit(_support.load_example("counter").Counter)


class HandleTest(unittest.TestCase):
    def test_counters_read_their_own_increments(self) -> None:
        kit = CrdtTestKit(Likes, value=4)
        self.assertEqual(kit.handle("like", 3), 7)
        self.assertEqual(kit.last.ops, [CrdtOp((), "increment", 3)])  # type: ignore[union-attr]
        self.assertEqual(kit.value, 7)
        kit.handle("like")
        self.assertEqual(kit.value, 8)
        for bad in (-1, 2**64, 1.5, True):
            with self.subTest(bad=bad), self.assertRaisesRegex(cella.Rejected, "amount"):
                kit.handle("like", bad)
        self.assertEqual(kit.value, 8)

    def test_a_counter_beyond_64_bits_reads_from_its_float_view(self) -> None:
        kit = run("result = data.pn_counter('c').value", value={"c": -1.8446744073709552e19})
        self.assertEqual(kit.last.reply, -18446744073709551616)  # type: ignore[union-attr]

    def test_a_pn_counter_goes_down(self) -> None:
        kit = run(
            "c = data.pn_counter('c'); c.increment(2); c.decrement(5); result = c.value",
            value={"c": 1},
        )
        self.assertEqual(kit.last.reply, -2)  # type: ignore[union-attr]
        self.assertEqual(
            kit.last.ops,  # type: ignore[union-attr]
            [
                CrdtOp(("c",), "increment", 2, creates="pn-counter"),
                CrdtOp(("c",), "decrement", 5, creates="pn-counter"),
            ],
        )
        self.assertEqual(kit.value, {"c": -2})

    def test_sets_keep_the_hosts_order(self) -> None:
        script = (
            "s = data.or_set('s'); s.add({'b': 1, 'a': [2.0]}); s.add('x'); s.add(10); "
            "s.add('x'); s.remove(10); s.add(1e16); s.add(2**70); "
            "result = [s.elements, 'x' in s, 10 in s, len(s)]"
        )
        kit = run(script)
        # By canonical text: "x", 1.1805916207174113e21, 1e16, {"a":[2.0],"b":1}.
        elements = ["x", 1.1805916207174113e21, 1e16, {"a": [2.0], "b": 1}]
        self.assertEqual(kit.last.reply, [elements, True, False, 4])  # type: ignore[union-attr]
        ops = kit.last.ops  # type: ignore[union-attr]
        self.assertEqual(ops[0], CrdtOp(("s",), "add", {"a": [2.0], "b": 1}, creates="or-set"))
        self.assertEqual(kit.value, {"s": elements})
        kit.handle("run", "s = data.or_set('s'); s.clear(); result = s.elements")
        self.assertEqual((kit.last.reply, kit.value), ([], {"s": []}))  # type: ignore[union-attr]
        g = run("g = data.g_set('g'); g.add(2); g.add(1); result = list(g)")
        self.assertEqual(g.last.reply, [1, 2])  # type: ignore[union-attr]
        self.assertEqual(g.last.ops[0].creates, "g-set")  # type: ignore[union-attr]

    def test_a_register_a_flag_and_a_vote(self) -> None:
        script = (
            "r = data.register('r'); before = r.value; r.set({'k': [1]}); "
            "f = data.flag('f'); f.enable(); on = f.enabled; f.disable(); "
            "v = data.vote('v'); v.vote(True); "
            "result = [before, r.value, on, f.value, v.value]"
        )
        kit = run(script)
        empty_vote = {"votes_for": 0, "voters": 0, "majority": False}
        reply = [None, {"k": [1]}, True, False, empty_vote]
        self.assertEqual(kit.last.reply, reply)  # type: ignore[union-attr]
        actions = [(op.action, op.creates) for op in kit.last.ops]  # type: ignore[union-attr]
        self.assertEqual(
            actions,
            [
                ("set", "lww-register"),
                ("enable", "flag"),
                ("disable", "flag"),
                ("vote", "vote"),
            ],
        )
        one_vote = {"votes_for": 1, "voters": 1, "majority": True}
        self.assertEqual(kit.value, {"r": {"k": [1]}, "f": False, "v": one_vote})
        kit.handle("run", "data.vote('v').vote(False); data.flag('f').clear()")
        self.assertEqual(kit.value["v"], {"votes_for": 0, "voters": 1, "majority": False})
        self.assertEqual(kit.last.ops[1], CrdtOp(("f",), "clear", creates="flag"))  # type: ignore[union-attr]
        others = run("data.vote('v').vote(True)", value={"v": {**one_vote, "voters": 2}})
        self.assertEqual(others.value["v"], {"votes_for": 2, "voters": 3, "majority": True})

    def test_maps_nest_delete_and_clear(self) -> None:
        script = (
            "m = data.map('a').map('b'); m.g_counter('n').increment(2); "
            "m.at('t', cella.ORSet).add(1); keys = m.keys(); "
            "data.map('a').delete('b'); result = [keys, 'b' in data.map('a'), data.value]"
        )
        kit = run(script)
        self.assertEqual(kit.last.reply, [["n", "t"], False, {"a": {}}])  # type: ignore[union-attr]
        self.assertEqual(
            kit.last.ops,  # type: ignore[union-attr]
            [
                CrdtOp(("a", "b", "n"), "increment", 2, creates="g-counter"),
                CrdtOp(("a", "b", "t"), "add", 1, creates="or-set"),
                CrdtOp(("a",), "delete", "b", creates="or-map"),
            ],
        )
        # A deleted key's data comes back merged, as on the host.
        kit.handle("run", "data.map('a').map('b').g_counter('n').increment(1)")
        self.assertEqual(kit.value, {"a": {"b": {"n": 3, "t": [1]}}})
        kit.handle("run", "data.clear(); result = [len(data), data.value]")
        self.assertEqual(kit.last.reply, [0, {}])  # type: ignore[union-attr]
        self.assertEqual(kit.last.ops, [CrdtOp((), "clear")])  # type: ignore[union-attr]
        self.assertEqual(kit.value, {})

    def test_a_handle_of_another_type_fails_the_command_on_the_host(self) -> None:
        kit = CrdtTestKit(Board, value={"n": 5})
        with self.assertRaisesRegex(EntityFailed, "add does not apply to a pn-counter"):
            kit.handle("run", "data.flag('x').enable(); data.or_set('n').add(1)")
        self.assertEqual(kit.value, {"n": 5})
        self.assertIsNone(kit.last)
        with self.assertRaisesRegex(cella.Rejected, "not an array"):
            kit.handle("run", "data.or_set('n').elements")
        kit.set_value({"g": 1})
        kit.handle("run", "data.g_counter('g').increment(1)")
        self.assertEqual(kit.value, {"g": 2})

    def test_consistency_is_set_on_the_context(self) -> None:
        kit = run("ctx.consistency = 'majority'; result = ctx.consistency")
        self.assertEqual(kit.last.reply, "majority")  # type: ignore[union-attr]
        self.assertEqual(kit.last.consistency, "majority")  # type: ignore[union-attr]
        kit.handle("run", "pass")
        self.assertEqual(kit.last.consistency, "local")  # type: ignore[union-attr]
        with self.assertRaisesRegex(cella.Rejected, "consistency must be one of"):
            kit.handle("run", "ctx.consistency = 'quorum'")

    def test_effects_are_refused(self) -> None:
        kit = CrdtTestKit(Board)
        for script in ("ctx.publish('t', 1)", "ctx.forward('a', 'b', 'c')", "ctx.cancel('n')"):
            with self.subTest(script=script), self.assertRaisesRegex(cella.Rejected, "no effects"):
                kit.handle("run", script)

    def test_the_glue_answers_with_operations(self) -> None:
        glue = Glue(model(Board))
        host = HostContext("board", "k", "c1", "run", 1, 2, 0)
        outcome = glue.handle(host, b'{"x": [1]}', "\"data.or_set('x').add(2)\"")
        self.assertEqual(outcome.crdt_ops, [RawOp(("x",), "add", "2", "or-set")])
        self.assertEqual((outcome.state, outcome.events, outcome.effects), (None, [], []))
        self.assertEqual(glue.render_state(b'{"x": [1]}'), '{"x":[1]}')
        with self.assertRaisesRegex(cella.Rejected, "does not fit"):
            glue.handle(host, b"[1]", '"pass"')
        with self.assertRaisesRegex(Exception, "a crdt entity has no events"):
            glue.apply(None, b"{}")


class ModelTest(unittest.TestCase):
    def test_canonical_text_is_the_hosts(self) -> None:
        cases = [
            ({"b": [1, {"d": 2, "c": 3}], "a": "x"}, '{"a":"x","b":[1,{"c":3,"d":2}]}'),
            ("é\n", '"é\\n"'),
            (1.0, "1.0"),
            (1e16, "1e16"),
            (1e15, "1000000000000000.0"),
            (1.5e-7, "1.5e-7"),
            (0.0001, "0.0001"),
            (1e-5, "0.00001"),
            (-0.0, "-0.0"),
            (2**64 - 1, "18446744073709551615"),
            (-(2**63), "-9223372036854775808"),
            (2**64, "1.8446744073709552e19"),
        ]
        for value, text in cases:
            with self.subTest(value=value):
                self.assertEqual(model_.canonical(value), text)

    def test_views_are_typed_by_their_shape(self) -> None:
        vote = {"votes_for": 1, "voters": 2, "majority": False}
        data = model_.from_view("or-map", {"n": 1, "s": [], "f": True, "v": vote, "r": "x"})
        types = {k: model_.typed(d, None).type for k, d in data.value.items()}
        self.assertEqual(
            types,
            {"n": "pn-counter", "s": "or-set", "f": "flag", "v": "vote", "r": "lww-register"},
        )
        with self.assertRaisesRegex(ValueError, "not the view of a g-counter"):
            model_.from_view("g-counter", -1)
        # A register holding an array is read as one through its handle.
        kit = CrdtTestKit(Board, value={"r": [2, 1]})
        kit.handle("run", "result = data.register('r').value")
        self.assertEqual(kit.last.reply, [2, 1])  # type: ignore[union-attr]
        kit.handle("run", "data.register('r').set(3)")
        self.assertEqual(kit.value, {"r": 3})

    def test_clear_creates_nothing_and_creates_is_ignored_for_existing_data(self) -> None:
        data = model_.new("or-map")
        model_.apply(data, RawOp(("s",), "clear"))
        self.assertEqual(data.view(), {})
        model_.apply(data, RawOp(("c",), "increment", 1))
        model_.apply(data, RawOp(("c",), "decrement", 3, creates="g-counter"))
        self.assertEqual(data.view(), {"c": -2})
        with self.assertRaises(model_.Mismatch):
            model_.apply(data, RawOp(("c", "x"), "enable"))


@dataclass
class Session(cella.ValueEntity):
    lines: list[str] = field(default_factory=list)
    ephemeral = True

    @cella.command
    def say(self, line: str, ctx: cella.Context) -> int:
        if line == "call":
            ctx.call("a", "b", "c")
        self.lines.append(line)
        return len(self.lines)


class EphemeralTest(unittest.TestCase):
    def test_an_ephemeral_value_entity_is_a_value_entity_kept_in_memory(self) -> None:
        self.assertTrue(Glue(model(Session)).describe().ephemeral)
        self.assertEqual(Glue(model(Session)).describe().kind, "value")
        self.assertFalse(Glue(model(_support.load_example("counter").Counter)).describe().ephemeral)
        kit = TestKit(Session)
        self.assertTrue(kit.ephemeral)
        self.assertEqual(kit.handle("say", "hi"), 1)
        self.assertEqual(kit.handle("say", "ho"), 2)
        with self.assertRaisesRegex(cella.Rejected, "ctx.call: an ephemeral entity has no effects"):
            kit.handle("say", "call")
        kit.restart()
        self.assertEqual(kit.state.lines, [])
        self.assertEqual(kit.handle("say", "again"), 1)
        durable = TestKit(_support.load_example("counter").Counter)
        durable.handle("add", 2)
        durable.restart()
        self.assertEqual(durable.handle("get"), 2)


if __name__ == "__main__":
    unittest.main()
