"""Tests of topics through the SDK and its test kit: subscriptions declared on an entity class
(:func:`cella.subscribe`), an event-sourced entity's events topic, the topic message in the
context, and broadcasts."""

from __future__ import annotations

import unittest
from dataclasses import dataclass, field
from typing import Any

import _support  # noqa: F401  (puts the SDK on sys.path)

import cella
from cella import Context, EventContext
from cella.testing import Broadcast, Publish, TestKit, TopicMessage


@dataclass
class Inbox(cella.ValueEntity):
    lines: list[str] = field(default_factory=list)

    subscriptions = [
        cella.subscribe("news", command="on-news", key="/to"),
        cella.subscribe("alerts", command="on-news", fixed_key="ops"),
        cella.subscribe("alerts", command="page", fixed_key="ops"),
    ]

    @cella.command
    def on_news(self, message: Any, ctx: Context) -> str | None:
        where = ctx.message
        self.lines.append(f"{where.topic}@{where.offset}" if where else "direct")
        return message.get("text") if isinstance(message, dict) else None

    @cella.command
    def page(self, ctx: Context) -> None:
        ctx.broadcast("pager", "ring", {"from": ctx.key, "n": 2**64 - 1})

    @cella.command
    def announce(self, text: str, ctx: Context) -> None:
        ctx.publish("news", {"to": ["a", "b"], "text": text})
        ctx.broadcast("inbox", "clear")
        if text == "never":
            cella.reject("not this one")


@dataclass
class Log(cella.EventSourcedEntity):
    count: int = 0

    events_topic = "log-events"
    subscriptions = (cella.subscribe("news", "seen", fixed_key="all"),)

    @cella.command
    def seen(self, message: Any, ctx: EventContext) -> int:
        ctx.emit({"seen": ctx.message.offset if ctx.message else 0})
        return self.count + 1

    def apply(self, event: Any) -> None:
        self.count += 1


class SubscribeTest(unittest.TestCase):
    def test_the_two_key_forms(self) -> None:
        self.assertEqual(
            cella.subscribe("news", "on-news", key="/to"),
            cella.Subscription("news", "on-news", key="/to", fixed_key=None),
        )
        self.assertEqual(
            cella.subscribe("news", command="on-news", fixed_key="all"),
            cella.Subscription("news", "on-news", fixed_key="all"),
        )
        # The empty pointer is the whole message.
        self.assertEqual(cella.subscribe("ids", "on-id", key="").keys_of("k9"), ["k9"])

    def test_mistakes_are_type_errors(self) -> None:
        for args, kwargs in [
            (("news", "on-news"), {}),
            (("news", "on-news"), {"key": "/to", "fixed_key": "all"}),
            (("news", "on-news"), {"key": "to"}),
            (("news", "on-news"), {"fixed_key": "a/b"}),
            (("news", "on-news"), {"fixed_key": ""}),
            (("a/b", "on-news"), {"key": "/to"}),
            (("", "on-news"), {"key": "/to"}),
            ((1, "on-news"), {"key": "/to"}),
            (("news", "on/news"), {"key": "/to"}),
            (("news", None), {"key": "/to"}),
        ]:
            with self.subTest(args=args, kwargs=kwargs), self.assertRaises(TypeError):
                cella.subscribe(*args, **kwargs)

    def test_keys_of_resolves_the_pointer_like_the_host(self) -> None:
        by = cella.Subscription("t", "c", key="/a~1b/0/m~0n")
        self.assertEqual(by.keys_of({"a/b": [{"m~n": "k"}]}), ["k"])
        to = cella.Subscription("t", "c", key="/to")
        self.assertEqual(to.keys_of({"to": 1.5}), ["1.5"])
        self.assertEqual(to.keys_of({"to": []}), [])
        for message in [
            {"to": True},
            {"to": None},
            {"to": {"k": 1}},
            {"to": ["a", {"k": 1}]},
            {"to": "a/b"},
            {"to": ""},
            {"other": "a"},
            "to",
            None,
        ]:
            with self.subTest(message=message):
                self.assertEqual(to.keys_of(message), [])
        index = cella.Subscription("t", "c", key="/to/01")
        self.assertEqual(index.keys_of({"to": ["a", "b"]}), [])
        self.assertEqual(
            cella.Subscription("t", "c", key="/to/1").keys_of({"to": ["a", "b"]}), ["b"]
        )


class DeclarationTest(unittest.TestCase):
    def test_the_kit_shows_what_the_entity_declares(self) -> None:
        kit = TestKit(Inbox)
        self.assertEqual([s.topic for s in kit.subscriptions], ["news", "alerts", "alerts"])
        self.assertIsNone(kit.events_topic)
        log = TestKit(Log)
        self.assertEqual(log.subscriptions, [cella.Subscription("news", "seen", fixed_key="all")])
        self.assertEqual(log.events_topic, "log-events")
        self.assertEqual(log._glue.describe().events_topic, "log-events")

    def test_mistakes_fail_at_import(self) -> None:
        @dataclass
        class Unknown(cella.ValueEntity):
            subscriptions = [cella.subscribe("news", "on-news", key="/to")]

            @cella.command
            def get(self) -> None: ...

        @dataclass
        class NotAList(cella.ValueEntity):
            subscriptions = cella.subscribe("news", "get", key="/to")

            @cella.command
            def get(self) -> None: ...

        @dataclass
        class Strings(cella.ValueEntity):
            subscriptions = ["news"]

            @cella.command
            def get(self) -> None: ...

        @dataclass
        class ValueWithEvents(cella.ValueEntity):
            events_topic = "events"

            @cella.command
            def get(self) -> None: ...

        @dataclass
        class BadTopic(cella.EventSourcedEntity):
            events_topic = "a/b"

            @cella.command
            def get(self) -> None: ...

            def apply(self, event: Any) -> None: ...

        for cls, says in [
            (Unknown, "names the command `on-news`"),
            (NotAList, "must be a list"),
            (Strings, "not made by cella.subscribe"),
            (ValueWithEvents, "a value entity has no events"),
            (BadTopic, "events_topic must be a topic name"),
        ]:
            with self.subTest(cls=cls.__name__), self.assertRaisesRegex(TypeError, says):
                cella.export(cls)


class DeliveryTest(unittest.TestCase):
    def test_deliver_runs_the_subscription_with_the_topic_message(self) -> None:
        kit = TestKit(Inbox)
        self.assertEqual(kit.deliver("news", {"to": "x", "text": "hi"}), "hi")
        self.assertEqual(kit.deliver("news", {"text": "again"}), "again")
        self.assertEqual(kit.deliver("news", {}, offset=10), None)
        self.assertEqual(kit.deliver("news", {}), None)
        self.assertEqual(kit.handle("on-news", {}), None)
        self.assertEqual(
            kit.handle("on-news", "x", message=TopicMessage("elsewhere", 3)),
            None,
        )
        self.assertEqual(
            kit.state.lines,
            ["news@1", "news@2", "news@10", "news@11", "direct", "elsewhere@3"],
        )

    def test_several_subscriptions_to_a_topic_need_the_command(self) -> None:
        kit = TestKit(Inbox)
        with self.assertRaisesRegex(TypeError, "command="):
            kit.deliver("alerts", {})
        self.assertIsNone(kit.deliver("alerts", {}, command="on-news"))
        self.assertIsNone(kit.deliver("alerts", None, command="page"))
        self.assertEqual(kit.state.lines, ["alerts@1"])
        with self.assertRaisesRegex(TypeError, "no subscription to topic `sports`"):
            kit.deliver("sports", {})

    def test_an_event_sourced_subscriber(self) -> None:
        kit = TestKit(Log)
        self.assertEqual(kit.deliver("news", {"anything": 1}, offset=4), 1)
        self.assertEqual(kit.deliver("news", None), 2)
        self.assertEqual(kit.events, [{"seen": 4}, {"seen": 5}])


class BroadcastTest(unittest.TestCase):
    def test_broadcasts_and_publications_are_effects(self) -> None:
        kit = TestKit(Inbox, key="me")
        kit.deliver("alerts", None, command="page")
        self.assertEqual(
            kit.last and kit.last.effects,
            [Broadcast("pager", "ring", {"from": "me", "n": 2**64 - 1})],
        )
        kit.handle("announce", "hello")
        self.assertEqual(
            kit.last and kit.last.effects,
            [
                Publish("news", {"to": ["a", "b"], "text": "hello"}),
                Broadcast("inbox", "clear", None),
            ],
        )
        with self.assertRaises(cella.Rejected):
            kit.handle("announce", "never")
        self.assertIsNone(kit.last)

    def test_misuse_is_an_entity_error(self) -> None:
        @dataclass
        class Misuse(cella.ValueEntity):
            @cella.command
            def go(self, how: str, ctx: Context) -> None:
                if how == "type":
                    ctx.broadcast(1, "c")  # type: ignore[arg-type]
                elif how == "command":
                    ctx.broadcast("t", None)  # type: ignore[arg-type]
                else:
                    ctx.broadcast("t", "c", {1, 2})

        kit = TestKit(Misuse)
        for how, says in [
            ("type", "entity type must be a string"),
            ("command", "command must be a string"),
            ("payload", "cannot serialize the payload of the broadcast of `c` to t"),
        ]:
            with self.subTest(how=how), self.assertRaises(cella.Rejected) as caught:
                kit.handle("go", how)
            self.assertTrue(caught.exception.message.startswith("entity error: "))
            self.assertIn(says, caught.exception.message)


if __name__ == "__main__":
    unittest.main()
