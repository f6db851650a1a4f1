"""Tests of the handler context: the host's facts, deterministic randomness, effects, forward,
and misuse that fails the command."""

from __future__ import annotations

import unittest

import _support  # noqa: F401  (puts the SDK on sys.path)

import cella
from cella._protocol import Call, HostContext, Publication, Timer


def context(seed: int = 1) -> cella.EventContext:
    return cella.EventContext(
        HostContext(
            entity_type="counter",
            key="k1",
            command_id="c-1",
            command="add",
            timestamp_ms=1_000,
            random_seed=seed,
            sequence=7,
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
        with self.assertRaises(AttributeError):
            ctx.key = "other"  # type: ignore[misc]

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


if __name__ == "__main__":
    unittest.main()
