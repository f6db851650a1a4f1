"""Tests of calls with a reply route, repeating timers and cancels through the test kit: an
entity that transfers money and hears back, and one that ticks until it has counted enough."""

from __future__ import annotations

import unittest
from dataclasses import dataclass, field

import _support  # noqa: F401  (puts the SDK on sys.path)

import cella
from cella import CallError, CallReply, Context, int64
from cella.testing import Call, Cancel, Schedule, TestKit


@dataclass
class Transfers(cella.ValueEntity):
    pending: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    balance: int64 = 0

    @cella.command
    def send(self, amount: int64, ctx: Context) -> None:
        transfer = f"t{len(self.pending) + len(self.done) + len(self.failed) + 1}"
        self.pending.append(transfer)
        ctx.call("account", "bob", "credit", amount, reply_to="credited", correlation=transfer)

    @cella.command
    def credited(self, outcome: CallReply[int64], ctx: Context) -> str:
        if ctx.correlation is None:
            raise cella.BadRequest("`credited` is the reply route of `credit`")
        self.pending.remove(ctx.correlation)
        if outcome.error is not None:
            self.failed.append(f"{ctx.correlation}:{outcome.error.code}:{outcome.error.message}")
        else:
            assert outcome.ok is not None
            self.balance = outcome.ok
            self.done.append(ctx.correlation)
        return ctx.correlation


@dataclass
class Ticker(cella.ValueEntity):
    ticks: int = 0

    @cella.command
    def start(self, every_ms: int, ctx: Context) -> None:
        ctx.schedule("tick", every_ms, "tick", every_ms=every_ms)

    @cella.command
    def tick(self, ctx: Context) -> str | None:
        self.ticks += 1
        if self.ticks == 3 and ctx.timer is not None:
            ctx.cancel(ctx.timer)
        return ctx.timer


class ReplyRouteTest(unittest.TestCase):
    def test_a_call_with_a_reply_route_and_its_replies(self) -> None:
        kit = TestKit(Transfers)
        kit.handle("send", 5)
        last = kit.last
        assert last is not None
        self.assertEqual(
            last.effects,
            [Call("account", "bob", "credit", 5, reply_to="credited", correlation="t1")],
        )
        self.assertEqual(kit.handle("credited", CallReply(ok=105), correlation="t1"), "t1")
        self.assertEqual((kit.state.balance, kit.state.done, kit.state.pending), (105, ["t1"], []))
        kit.handle("send", 7)
        kit.handle(
            "credited",
            CallReply(error=CallError("rejected", "account closed")),
            correlation="t2",
        )
        self.assertEqual(kit.state.failed, ["t2:rejected:account closed"])
        # The envelope as plain JSON works as well.
        kit.handle("send", 1)
        kit.handle("credited", {"ok": 106}, correlation="t3")
        self.assertEqual(kit.state.balance, 106)

    def test_a_reply_route_checks_its_payload_and_correlation(self) -> None:
        kit = TestKit(Transfers)
        kit.handle("send", 5)
        for payload in [5, {"ok": "5"}, {"error": "no"}, {"ok": 1, "error": None}, None]:
            with self.subTest(payload=payload), self.assertRaises(cella.BadRequest):
                kit.handle("credited", payload, correlation="t1")
        with self.assertRaises(cella.BadRequest):
            kit.handle("credited", CallReply(ok=1))
        self.assertEqual(kit.state.pending, ["t1"])


class TimerTest(unittest.TestCase):
    def test_a_repeating_timer_and_its_cancel(self) -> None:
        kit = TestKit(Ticker)
        kit.handle("start", 250)
        last = kit.last
        assert last is not None
        self.assertEqual(last.effects, [Schedule("tick", 250, "tick", None, every_ms=250)])
        self.assertEqual(kit.handle("tick", timer="tick"), "tick")
        self.assertEqual(kit.handle("tick", timer="tick"), "tick")
        self.assertEqual(kit.last and kit.last.effects, [])
        self.assertEqual(kit.handle("tick", timer="tick"), "tick")
        self.assertEqual(kit.last and kit.last.effects, [Cancel("tick")])
        self.assertIsNone(kit.handle("tick"))
        self.assertEqual(kit.state.ticks, 4)


if __name__ == "__main__":
    unittest.main()
