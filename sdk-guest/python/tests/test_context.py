"""Tests of the handler context: the host's facts, deterministic randomness, effects, forward,
and misuse that fails the command."""

from __future__ import annotations

import unittest
from typing import Any, Optional

import _support  # noqa: F401  (puts the SDK on sys.path)

import cella
from cella._protocol import Call, Cancel, HostContext, Publication, ReplyRoute, Timer


def context(
    seed: int = 1, correlation: str | None = None, timer: str | None = None
) -> cella.EventContext:
    return cella.EventContext(
        HostContext(
            entity_type="counter",
            key="k1",
            command_id="c-1",
            command="add",
            timestamp_ms=1_000,
            random_seed=seed,
            sequence=7,
            correlation=correlation,
            timer=timer,
        )
    )


class ContextTest(unittest.TestCase):
    def test_exposes_the_host_context(self) -> None:
        ctx = context(42)
        self.assertEqual(
            (ctx.entity_type, ctx.key, ctx.command_id, ctx.command),
            ("counter", "k1", "c-1", "add"),
        )
        self.assertEqual((ctx.timestamp_ms, ctx.sequence, ctx.random_seed), (1_000, 7, 42))
        self.assertIsNone(ctx.correlation)
        self.assertIsNone(ctx.timer)
        with self.assertRaises(AttributeError):
            ctx.key = "other"  # type: ignore[misc]

    def test_exposes_the_correlation_and_the_timer(self) -> None:
        self.assertEqual(context(correlation="t1").correlation, "t1")
        self.assertEqual(context(correlation="").correlation, "")
        self.assertEqual(context(timer="tick").timer, "tick")
        self.assertIsNone(context(timer="tick").correlation)

    def test_randomness_is_splitmix64_of_the_seed(self) -> None:
        # Reference values of splitmix64 seeded with 0 (the same as the Rust SDK's).
        ctx = context(0)
        self.assertEqual(ctx.random_u64(), 0xE220A8397B1DCDAF)
        self.assertEqual(ctx.random_u64(), 0x6E789E6AA1B965F4)
        a, b = context(2**64 - 1), context(2**64 - 1)
        self.assertEqual([a.random_u64() for _ in range(4)], [b.random_u64() for _ in range(4)])
        self.assertTrue(all(0 <= context(s).random() < 1 for s in range(100)))
        self.assertTrue(all(0 <= a.random_u64() < 2**64 for _ in range(100)))

    def test_collects_effects_in_order(self) -> None:
        ctx = context()
        ctx.call("cart", "c1", "add-item", {"productId": "p"})
        ctx.publish("totals", 5)
        ctx.schedule("expire", 60_000, "expire")
        ctx.forward("other", "k2", "get")
        effects, forward = ctx._finish()
        self.assertEqual(
            effects,
            [
                Call("cart", "c1", "add-item", '{"productId":"p"}'),
                Publication("totals", "5"),
                Timer("expire", 60_000, "expire", "null"),
            ],
        )
        self.assertEqual(forward, Call("other", "k2", "get", "null"))

    def test_calls_with_a_reply_route_timers_that_repeat_and_cancels(self) -> None:
        ctx = context()
        ctx.call("bank", "b1", "credit", 5, reply_to="credited", correlation="t1")
        ctx.call("bank", "b1", "credit", 6, reply_to="credited")
        ctx.schedule("tick", 0, "tick", every_ms=1_000)
        ctx.schedule("once", 10, "tick", {"n": 1}, every_ms=None)
        ctx.cancel("tick")
        effects, forward = ctx._finish()
        self.assertEqual(
            effects,
            [
                Call("bank", "b1", "credit", "5", ReplyRoute("credited", "t1")),
                Call("bank", "b1", "credit", "6", ReplyRoute("credited", "")),
                Timer("tick", 0, "tick", "null", every_ms=1_000),
                Timer("once", 10, "tick", '{"n":1}'),
                Cancel("tick"),
            ],
        )
        self.assertIsNone(forward)

    def test_emits_events(self) -> None:
        ctx = context()
        ctx.emit({"a": 1})
        ctx.emit({"b": 2})
        self.assertEqual(ctx.emitted, ({"a": 1}, {"b": 2}))

    def test_a_second_forward_fails_the_command_even_if_caught(self) -> None:
        ctx = context()
        ctx.forward("a", "1", "get")
        with self.assertRaises(cella.EntityError) as caught:
            ctx.forward("b", "2", "get")
        self.assertEqual(caught.exception.message, "entity error: forward called more than once")
        with self.assertRaises(cella.EntityError) as finished:
            ctx._finish()
        self.assertIs(finished.exception, caught.exception)

    def test_the_first_misuse_is_reported(self) -> None:
        ctx = context()
        for misuse in [
            lambda: ctx.publish("t", {1, 2}),
            lambda: ctx.call("a", "b", "c", float("nan")),
            lambda: ctx.schedule("t", -1, "c"),
            lambda: ctx.schedule("t", 2**64, "c"),
            lambda: ctx.schedule("t", True, "c"),
            lambda: ctx.call("a", 1, "c"),  # type: ignore[arg-type]
            lambda: ctx.publish(None, 1),  # type: ignore[arg-type]
            lambda: ctx.schedule("t", 1, "c", every_ms=-1),
            lambda: ctx.schedule("t", 1, "c", every_ms=1.5),  # type: ignore[arg-type]
            lambda: ctx.cancel(1),  # type: ignore[arg-type]
            lambda: ctx.call("a", "b", "c", reply_to=1),  # type: ignore[arg-type]
            lambda: ctx.call("a", "b", "c", reply_to="r", correlation=None),  # type: ignore[arg-type]
            lambda: ctx.call("a", "b", "c", correlation="no route"),
        ]:
            with self.assertRaises(cella.EntityError):
                misuse()
        with self.assertRaises(cella.EntityError) as finished:
            ctx._finish()
        self.assertTrue(
            finished.exception.message.startswith(
                "entity error: cannot serialize the payload of the publication to `t`: "
            ),
            finished.exception.message,
        )
        self.assertIsInstance(finished.exception, cella.Rejected)


class CallReplyTest(unittest.TestCase):
    def decode(self, hint: object, value: object) -> object:
        return cella._codec.decoder(hint)(value)

    def test_decodes_the_outcome_of_a_call(self) -> None:
        ok = self.decode(cella.CallReply, {"ok": {"value": "x"}})
        self.assertEqual(ok, cella.CallReply(ok={"value": "x"}))
        assert isinstance(ok, cella.CallReply)
        self.assertTrue(ok.is_ok)
        self.assertIsNone(ok.error)
        error = self.decode(
            cella.CallReply, {"error": {"code": "rejected", "message": "no", "extra": 1}}
        )
        self.assertEqual(error, cella.CallReply(error=cella.CallError("rejected", "no")))
        assert isinstance(error, cella.CallReply)
        self.assertFalse(error.is_ok)
        self.assertEqual(self.decode(cella.CallReply, {"ok": None}), cella.CallReply(ok=None))

    def test_a_typed_reply(self) -> None:
        self.assertEqual(self.decode(cella.CallReply[int], {"ok": 5}), cella.CallReply(ok=5))
        with self.assertRaisesRegex(cella._codec.DecodeError, "expected an integer") as caught:
            self.decode(cella.CallReply[int], {"ok": "5"})
        self.assertEqual(str(caught.exception), 'at `ok`: expected an integer, got the string "5"')
        self.assertEqual(
            self.decode(cella.CallReply[int], {"error": {"code": "failed", "message": "m"}}),
            cella.CallReply(error=cella.CallError("failed", "m")),
        )
        optional: Any = Optional[cella.CallReply[int]]  # noqa: UP045
        self.assertIsNone(self.decode(optional, None))

    def test_other_shapes_do_not_decode(self) -> None:
        for value in [
            None,
            5,
            {},
            {"ok": 1, "error": {"code": "c", "message": "m"}},
            {"value": 1},
            {"error": "no"},
            {"error": {"code": "c"}},
            {"error": {"code": 1, "message": "m"}},
        ]:
            with self.subTest(value=value), self.assertRaises(cella._codec.DecodeError):
                self.decode(cella.CallReply, value)

    def test_encodes_as_the_envelope(self) -> None:
        self.assertEqual(cella._codec.dumps(cella.CallReply(ok=[1])), '{"ok":[1]}')
        self.assertEqual(cella._codec.dumps(cella.CallReply()), '{"ok":null}')
        self.assertEqual(
            cella._codec.dumps(cella.CallReply(error=cella.CallError("rejected", "no"))),
            '{"error":{"code":"rejected","message":"no"}}',
        )
        with self.assertRaises(ValueError):
            cella.CallReply(ok=1, error=cella.CallError("c", "m"))


if __name__ == "__main__":
    unittest.main()
