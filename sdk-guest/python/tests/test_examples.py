"""Tests of the examples against tests/tck/SPEC.md: the counter, the shopping cart and the two
TCK models, run with the test kit."""

from __future__ import annotations

import json
import unittest
from typing import Any

import _support

import cella
from cella.testing import Broadcast, Call, Cancel, Publish, Schedule, TestKit, TopicMessage

counter = _support.load_example("counter")
cart = _support.load_example("shopping_cart")
tck_value = _support.load_example("tck_value")
tck_events = _support.load_example("tck_events")


class CounterTest(unittest.TestCase):
    def test_declares_its_commands(self) -> None:
        self.assertEqual(TestKit(counter.Counter).commands, ["add", "get"])

    def test_a_new_counter_is_zero_and_reading_persists_nothing(self) -> None:
        kit = TestKit(counter.Counter)
        self.assertEqual(kit.handle("get"), 0)
        self.assertEqual(kit.sequence, 0)

    def test_add_replies_the_new_total(self) -> None:
        kit = TestKit(counter.Counter)
        self.assertEqual(kit.handle("add", 5), 5)
        self.assertEqual(kit.handle("add", -7), -2)
        self.assertEqual(kit.handle("get"), -2)
        self.assertEqual(kit.state.total, -2)
        self.assertEqual(kit.state_json, {"total": -2})
        self.assertEqual(kit.sequence, 2)

    def test_overflow_is_rejected_and_changes_nothing(self) -> None:
        kit = TestKit(counter.Counter)
        kit.handle("add", cella.INT64_MAX)
        with self.assertRaises(cella.Rejected) as caught:
            kit.handle("add", 1)
        self.assertEqual(caught.exception.message, "adding 1 overflows")
        self.assertEqual(kit.handle("get"), cella.INT64_MAX)
        kit.handle("add", -cella.INT64_MAX)
        kit.handle("add", -1)
        with self.assertRaises(cella.Rejected) as caught:
            kit.handle("add", cella.INT64_MIN)
        self.assertEqual(caught.exception.message, f"adding {cella.INT64_MIN} overflows")

    def test_bad_payloads_and_unknown_commands_fail(self) -> None:
        kit = TestKit(counter.Counter)
        for payload in ["five", None, 1.5, True, 2**63, [1]]:
            with self.subTest(payload=payload), self.assertRaises(cella.BadRequest):
                kit.handle("add", payload)
        with self.assertRaises(cella.BadRequest):
            kit.handle("get", 1)
        with self.assertRaises(cella.UnknownCommand) as caught:
            kit.handle("reset")
        self.assertEqual(caught.exception.message, "reset")


def line(product_id: str, name: str, quantity: int) -> dict:
    return {"productId": product_id, "name": name, "quantity": quantity}


class ShoppingCartTest(unittest.TestCase):
    def setUp(self) -> None:
        self.kit = TestKit(cart.ShoppingCart)

    def add(self, product_id: str, name: str, quantity: int) -> None:
        self.assertEqual(self.kit.handle("add-item", line(product_id, name, quantity)), {})

    def cart(self) -> Any:
        return self.kit.handle("get-cart")

    def test_declares_its_commands(self) -> None:
        self.assertEqual(self.kit.commands, ["add-item", "remove-item", "get-cart"])

    def test_publishes_its_events_to_cart_events(self) -> None:
        self.assertEqual(self.kit.events_topic, "cart-events")
        self.assertEqual(self.kit.subscriptions, [])

    def test_a_new_cart_is_empty(self) -> None:
        self.assertEqual(self.cart(), {"items": []})
        self.assertEqual(self.kit.sequence, 0)

    def test_adding_items_keeps_insertion_order(self) -> None:
        self.add("socks", "Socks", 2)
        self.add("hat", "Hat", 1)
        assert self.kit.last is not None
        self.assertEqual(self.kit.last.events, [{"itemAdded": {"item": line("hat", "Hat", 1)}}])
        self.assertEqual(self.cart(), {"items": [line("socks", "Socks", 2), line("hat", "Hat", 1)]})
        self.assertEqual(
            self.kit.state_json, {"items": [line("socks", "Socks", 2), line("hat", "Hat", 1)]}
        )

    def test_adding_a_product_again_adds_to_its_quantity(self) -> None:
        self.add("socks", "Socks", 2)
        self.add("hat", "Hat", 1)
        self.add("socks", "Socks", 3)
        self.assertEqual(self.cart(), {"items": [line("socks", "Socks", 5), line("hat", "Hat", 1)]})
        self.assertEqual(self.kit.sequence, 3)

    def test_a_quantity_that_is_not_positive_is_rejected(self) -> None:
        for quantity in [0, -1]:
            with self.assertRaises(cella.Rejected) as caught:
                self.kit.handle("add-item", line("socks", "Socks", quantity))
            self.assertEqual(
                caught.exception.message, "Quantity for item socks must be greater than zero."
            )
        self.assertEqual(self.kit.events, [])

    def test_a_quantity_that_would_overflow_is_rejected(self) -> None:
        self.add("socks", "Socks", cella.INT64_MAX)
        with self.assertRaises(cella.Rejected) as caught:
            self.kit.handle("add-item", line("socks", "Socks", 1))
        self.assertEqual(caught.exception.message, "Quantity for item socks is too large.")
        self.add("hat", "Hat", cella.INT64_MAX)

    def test_removing_an_item_removes_its_line(self) -> None:
        self.add("socks", "Socks", 2)
        self.add("hat", "Hat", 1)
        self.assertEqual(self.kit.handle("remove-item", {"productId": "socks"}), {})
        assert self.kit.last is not None
        self.assertEqual(self.kit.last.events, [{"itemRemoved": {"productId": "socks"}}])
        self.assertEqual(self.cart(), {"items": [line("hat", "Hat", 1)]})

    def test_removing_an_item_not_in_the_cart_is_rejected(self) -> None:
        self.add("hat", "Hat", 1)
        with self.assertRaises(cella.Rejected) as caught:
            self.kit.handle("remove-item", {"productId": "socks"})
        self.assertEqual(
            caught.exception.message,
            "Cannot remove item socks because it is not in the cart.",
        )
        self.assertEqual(self.kit.sequence, 1)

    def test_a_removed_item_added_again_goes_last(self) -> None:
        self.add("socks", "Socks", 2)
        self.add("hat", "Hat", 1)
        self.kit.handle("remove-item", {"productId": "socks"})
        self.add("socks", "Socks", 1)
        self.assertEqual(self.cart(), {"items": [line("hat", "Hat", 1), line("socks", "Socks", 1)]})

    def test_replay_saturates_like_the_rust_cart(self) -> None:
        glue = TestKit(cart.ShoppingCart)._glue
        state = None
        for quantity in [cella.INT64_MAX, 5]:
            item = {"productId": "p", "name": "P", "quantity": quantity}
            event = json.dumps({"itemAdded": {"item": item}})
            state = glue.apply(state, event.encode())
        assert state is not None
        self.assertIn(str(cella.INT64_MAX).encode(), state)

    def test_malformed_commands_are_bad_requests(self) -> None:
        kit = self.kit
        with self.assertRaises(cella.BadRequest) as caught:
            kit.handle("add-item", {"productId": "socks", "quantity": 1})
        self.assertIn("add-item", caught.exception.message)
        self.assertIn("name", caught.exception.message)
        for name, payload in [
            ("add-item", {"productId": "socks", "name": "Socks", "quantity": "1"}),
            ("add-item", {"productId": "socks", "name": "Socks", "quantity": 1.5}),
            ("add-item", {"productId": "socks", "name": "Socks", "quantity": 2**63}),
            ("add-item", {"productId": 1, "name": "Socks", "quantity": 1}),
            ("add-item", None),
            ("remove-item", {}),
            ("remove-item", {"productId": None}),
            ("get-cart", {}),
        ]:
            with self.subTest(command=name, payload=payload), self.assertRaises(cella.BadRequest):
                kit.handle(name, payload)
        with self.assertRaises(cella.UnknownCommand):
            kit.handle("checkout")


class Shared:
    """Holds the tests both TCK models share, out of sight of test discovery."""

    class TckModelTests(unittest.TestCase):
        """What both TCK models share; ``ENTITY`` is the model, ``CHANGE`` its state-changing action
        and ``OTHER`` the other model's."""

        ENTITY: type
        CHANGE: str
        OTHER: str
        COMMANDS: list[str]

        def setUp(self) -> None:
            self.kit: TestKit[Any] = TestKit(self.ENTITY, entity_type="tck", key="k1")

        def process(self, *actions: dict) -> Any:
            return self.kit.handle("process", {"actions": list(actions)})

        def test_commands(self) -> None:
            self.assertEqual(self.kit.commands, self.COMMANDS)

        def test_a_new_entity_is_empty(self) -> None:
            self.assertEqual(self.kit.handle("get"), {"value": ""})
            self.assertEqual(self.kit.sequence, 0)
            self.assertIsNone(self.kit.state_json)

        def test_changes_persist(self) -> None:
            self.assertEqual(
                self.process({self.CHANGE: "a"}, {self.CHANGE: "b"}), self.expected_ab()
            )
            self.assertEqual(self.kit.handle("get"), self.expected_ab())
            self.assertEqual(self.kit.state_json, self.expected_ab())
            self.assertEqual(self.kit.sequence, 1)

        def test_no_actions_persist_nothing(self) -> None:
            self.assertEqual(self.process(), {"value": ""})
            self.assertEqual(self.kit.sequence, 0)
            self.assertFalse(self.kit.last and self.kit.last.persisted)

        def test_fail_rejects_and_discards(self) -> None:
            with self.assertRaises(cella.Rejected) as caught:
                self.process(
                    {self.CHANGE: "a"}, {"call": target()}, {"fail": "no way"}, {self.CHANGE: "b"}
                )
            self.assertEqual(caught.exception, cella.Rejected("no way"))
            self.assertEqual(self.kit.handle("get"), {"value": ""})
            self.assertEqual(self.kit.sequence, 0)

        def test_forward(self) -> None:
            self.process({self.CHANGE: "x"}, {"forward": target(payload={"n": 1})})
            last = self.kit.last
            assert last is not None
            self.assertEqual(last.forward, Call("tck-value", "other", "get", {"n": 1}))
            self.assertTrue(last.persisted)

        def test_a_second_forward_is_an_entity_error(self) -> None:
            with self.assertRaises(cella.Rejected) as caught:
                self.process({self.CHANGE: "x"}, {"forward": target()}, {"forward": target()})
            self.assertEqual(
                caught.exception.message, "entity error: forward called more than once"
            )
            self.assertEqual(self.kit.sequence, 0)

        def test_effects(self) -> None:
            self.process(
                {"call": target(payload=[1])},
                {"publish": {"topic": "t", "payload": {"a": 1}}},
                {"schedule": {"name": "n", "delayMs": 250, "command": "get", "payload": None}},
                {"publish": {"topic": "no-payload"}},
                {"call": {**target(2), "replyTo": {"command": "on-reply", "correlation": "c1"}}},
                {"call": {**target(3), "replyTo": None}},
                {"schedule": {"name": "r", "delayMs": 0, "command": "get", "everyMs": 100}},
                {"schedule": {"name": "s", "delayMs": 1, "command": "get", "everyMs": None}},
                {"cancel": "n"},
                {"broadcast": {"type": "tck-events", "command": "get", "payload": {"b": 2}}},
                {"broadcast": {"type": "tck-value", "command": "get"}},
            )
            last = self.kit.last
            assert last is not None
            self.assertEqual(
                last.effects,
                [
                    Call("tck-value", "other", "get", [1]),
                    Publish("t", {"a": 1}),
                    Schedule("n", 250, "get", None),
                    Publish("no-payload", None),
                    Call("tck-value", "other", "get", 2, reply_to="on-reply", correlation="c1"),
                    Call("tck-value", "other", "get", 3),
                    Schedule("r", 0, "get", None, every_ms=100),
                    Schedule("s", 1, "get", None),
                    Cancel("n"),
                    Broadcast("tck-events", "get", {"b": 2}),
                    Broadcast("tck-value", "get", None),
                ],
            )
            self.assertFalse(last.persisted)

        def test_malformed_payloads_are_bad_requests(self) -> None:
            payloads: list[Any] = [
                None,
                [],
                {},
                {"actions": {}},
                {"actions": [1]},
                {"actions": [{}]},
                {"actions": [{self.CHANGE: "a", "fail": "b"}]},
                {"actions": [{self.CHANGE: 1}]},
                {"actions": [{"fail": None}]},
                {"actions": [{self.OTHER: "a"}]},
                {"actions": [{"explode": "a"}]},
                {"actions": [{"forward": "x"}]},
                {"actions": [{"forward": {"type": "t", "key": "k"}}]},
                {"actions": [{"call": {"type": 1, "key": "k", "command": "c"}}]},
                {"actions": [{"publish": {}}]},
                {"actions": [{"schedule": {"name": "n", "delayMs": -1, "command": "c"}}]},
                {"actions": [{"schedule": {"name": "n", "delayMs": 1.5, "command": "c"}}]},
                {"actions": [{"schedule": {"name": "n", "command": "c"}}]},
                {
                    "actions": [
                        {"schedule": {"name": "n", "delayMs": 1, "command": "c", "everyMs": -1}}
                    ]
                },
                {
                    "actions": [
                        {"schedule": {"name": "n", "delayMs": 1, "command": "c", "everyMs": "1"}}
                    ]
                },
                {"actions": [{"cancel": 1}]},
                {"actions": [{"cancel": {"name": "n"}}]},
                {"actions": [{"call": {**target(), "replyTo": "on-reply"}}]},
                {"actions": [{"call": {**target(), "replyTo": {"command": "on-reply"}}}]},
                {"actions": [{"call": {**target(), "replyTo": {"correlation": "c"}}}]},
                {"actions": [{"append": 1}]},
                {"actions": [{"broadcast": "tck-value"}]},
                {"actions": [{"broadcast": {"type": "tck-value"}}]},
                {"actions": [{"broadcast": {"type": "tck-value", "command": 1}}]},
                {"actions": [{"broadcast": {"key": "k", "command": "get"}}]},
                # Checked before anything runs: a fail first does not hide a bad action after it.
                {"actions": [{"fail": "x"}, {"explode": 1}]},
            ]
            for payload in payloads:
                with self.subTest(payload=payload), self.assertRaises(cella.BadRequest):
                    self.kit.handle("process", payload)
            with self.assertRaises(cella.BadRequest):
                self.kit.handle("get", {})
            self.assertEqual(self.kit.sequence, 0)

        def test_context(self) -> None:
            self.process({self.CHANGE: "a"})
            reply = self.kit.handle("context")
            self.assertEqual(
                {k: v for k, v in reply.items() if k != "randomSeed"},
                {
                    "entityType": "tck",
                    "key": "k1",
                    "command": "context",
                    "commandId": "test-command-2",
                    "sequence": 1,
                    "timestampMs": TestKit.DEFAULT_TIME_MS,
                },
            )
            self.assertIsInstance(reply["randomSeed"], int)
            self.assertEqual(self.kit.sequence, 1)

        def test_unknown_command(self) -> None:
            with self.assertRaises(cella.UnknownCommand):
                self.kit.handle("update")

        def test_on_message_appends_topic_offset_and_text(self) -> None:
            self.process({self.CHANGE: "v:"})
            value = "v:"
            for message, entry in [
                ({"to": "k1", "text": "hello"}, "tck-news@1:hello;"),
                ({"to": ["k1", "k2"], "text": ""}, "tck-news@2:;"),
                ({"to": 7, "text": "a;b@c"}, "tck-news@3:a;b@c;"),
            ]:
                value += entry
                with self.subTest(message=message):
                    self.assertEqual(self.kit.deliver("tck-news", message), {"value": value})
                    self.assertEqual(self.kit.handle("get"), {"value": value})
            reply = self.kit.handle(
                "on-message", {"text": "x"}, message=TopicMessage("other", 2**53 + 1)
            )
            self.assertEqual(reply, {"value": value + f"other@{2**53 + 1}:x;"})
            self.assertEqual(self.kit.sequence, 5)

        def test_on_message_bad_requests(self) -> None:
            payloads: list[Any] = [None, "hi", {"to": "k1"}, {"to": "k1", "text": 1}, []]
            for payload in payloads:
                with self.subTest(payload=payload), self.assertRaises(cella.BadRequest):
                    self.kit.deliver("tck-news", payload)
            # Not the delivery of a topic message.
            with self.assertRaises(cella.BadRequest):
                self.kit.handle("on-message", {"to": "k1", "text": "x"})
            self.assertEqual(self.kit.sequence, 0)

        def expected_ab(self) -> dict:
            return {"value": "ab"} if self.CHANGE == "emit" else {"value": "b"}


def target(payload: Any = None) -> dict:
    return {"type": "tck-value", "key": "other", "command": "get", "payload": payload}


class TckValueTest(Shared.TckModelTests):
    ENTITY = tck_value.TckValue
    CHANGE = "update"
    OTHER = "emit"
    COMMANDS = ["process", "get", "context", "on-reply", "on-message"]

    def test_subscribes_to_tck_news_by_to(self) -> None:
        self.assertEqual(
            self.kit.subscriptions,
            [cella.Subscription("tck-news", "on-message", key="/to")],
        )
        self.assertIsNone(self.kit.events_topic)
        subscription = self.kit.subscriptions[0]
        self.assertEqual(subscription.keys_of({"to": "a", "text": ""}), ["a"])
        self.assertEqual(subscription.keys_of({"to": ["a", 7]}), ["a", "7"])
        self.assertEqual(subscription.keys_of({"text": "no one"}), [])

    def test_append(self) -> None:
        self.assertEqual(self.process({"append": "a"}, {"append": "b"}), {"value": "ab"})
        self.assertEqual(self.process({"update": "x"}, {"append": "y"}), {"value": "xy"})
        self.assertEqual(self.process({"append": ""}), {"value": "xy"})
        self.assertEqual(self.kit.sequence, 2)

    def test_on_reply_appends_the_outcome(self) -> None:
        self.process({"update": "v:"})
        replies: list[tuple[Any, str]] = [
            ({"ok": {"value": "x"}}, "v:c1:ok:x;"),
            ({"ok": {"value": 5}}, "v:c1:ok:x;c2:ok:;"),
            ({"ok": None}, "v:c1:ok:x;c2:ok:;c3:ok:;"),
            ({"ok": ["value"]}, "v:c1:ok:x;c2:ok:;c3:ok:;c4:ok:;"),
            (
                {"error": {"code": "rejected", "message": "no: way"}},
                "v:c1:ok:x;c2:ok:;c3:ok:;c4:ok:;c5:rejected:no: way;",
            ),
        ]
        for i, (payload, value) in enumerate(replies, start=1):
            with self.subTest(payload=payload):
                reply = self.kit.handle("on-reply", payload, correlation=f"c{i}")
                self.assertEqual(reply, {"value": value})
                self.assertEqual(self.kit.state_json, {"value": value})
        self.assertEqual(self.kit.sequence, 6)
        self.kit.handle("on-reply", {"ok": {"value": "z"}}, correlation="")
        self.assertTrue(self.kit.handle("get")["value"].endswith(";:ok:z;"))

    def test_on_reply_bad_requests(self) -> None:
        for payload in [
            None,
            {},
            {"ok": 1, "error": {"code": "c", "message": "m"}},
            {"error": {"code": "c"}},
            {"error": {"code": "c", "message": 1}},
            {"error": "rejected"},
            {"value": "x"},
        ]:
            with self.subTest(payload=payload), self.assertRaises(cella.BadRequest):
                self.kit.handle("on-reply", payload, correlation="c")
        # Without a correlation in the context.
        with self.assertRaises(cella.BadRequest):
            self.kit.handle("on-reply", {"ok": {"value": "x"}})
        with self.assertRaises(cella.BadRequest):
            self.kit.handle("on-reply", {"ok": {"value": "x"}}, timer="t")
        self.assertEqual(self.kit.sequence, 0)

    def test_an_update_to_the_same_value_persists_nothing(self) -> None:
        self.process({"update": "a"})
        self.process({"update": "b"}, {"update": "a"})
        self.assertEqual(self.kit.sequence, 1)


class TckEventsTest(Shared.TckModelTests):
    ENTITY = tck_events.TckEvents
    CHANGE = "emit"
    OTHER = "update"
    COMMANDS = ["process", "get", "context", "on-message"]

    def test_subscribes_to_tck_news_as_all_and_publishes_its_events(self) -> None:
        self.assertEqual(
            self.kit.subscriptions,
            [cella.Subscription("tck-news", "on-message", fixed_key="all")],
        )
        self.assertEqual(self.kit.subscriptions[0].keys_of({"to": "k1"}), ["all"])
        self.assertEqual(self.kit.events_topic, "tck-events-log")

    def test_on_message_emits_an_event(self) -> None:
        self.process({"emit": "a"})
        self.assertEqual(
            self.kit.deliver("tck-news", {"text": "t"}, offset=9), {"value": "atck-news@9:t;"}
        )
        assert self.kit.last is not None
        self.assertEqual(self.kit.last.events, [{"appended": "tck-news@9:t;"}])
        self.assertEqual(
            self.kit.deliver("tck-news", {"text": "u"}), {"value": "atck-news@9:t;tck-news@10:u;"}
        )

    def test_append_and_on_reply_are_the_value_models(self) -> None:
        with self.assertRaises(cella.BadRequest):
            self.process({"append": "a"})
        with self.assertRaises(cella.UnknownCommand):
            self.kit.handle("on-reply", {"ok": None}, correlation="c")

    def test_events(self) -> None:
        self.assertEqual(self.process({"emit": "a"}, {"emit": "bc"}), {"value": "abc"})
        self.assertEqual(self.kit.events, [{"appended": "a"}, {"appended": "bc"}])
        self.assertEqual(self.process({"emit": "d"}), {"value": "abcd"})
        self.assertEqual(self.kit.sequence, 2)
        self.assertEqual(self.kit.snapshot_every, 0)

    def test_empty_emits_are_events(self) -> None:
        self.assertEqual(self.process({"emit": ""}), {"value": ""})
        self.assertEqual(self.kit.events, [{"appended": ""}])


if __name__ == "__main__":
    unittest.main()
