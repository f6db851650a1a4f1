"""Tests of the crdt model (``tck-crdt``) against tests/tck/SPEC.md, run with CrdtTestKit."""

from __future__ import annotations

import unittest
from typing import Any

import _support

import cella
from cella.testing import CrdtOp, CrdtTestKit, EntityFailed

tck_crdt = _support.load_example("tck_crdt")


def op(path: list[str], crdt_type: str, action: Any) -> dict[str, Any]:
    return {"path": path, "type": crdt_type, "action": action}


class TckCrdtTest(unittest.TestCase):
    def setUp(self) -> None:
        self.kit = CrdtTestKit(tck_crdt.TckCrdt, entity_type="tck-crdt")

    def update(self, *ops: dict[str, Any], consistency: str | None = None) -> Any:
        payload: dict[str, Any] = {"ops": list(ops)}
        if consistency is not None:
            payload["consistency"] = consistency
        return self.kit.handle("update", payload)

    def get(self, path: list[str], crdt_type: str) -> Any:
        return self.kit.handle("get", {"path": path, "type": crdt_type})["value"]

    def test_declares_a_durable_or_map(self) -> None:
        self.assertEqual(self.kit.commands, ["update", "get"])
        self.assertEqual(self.kit.crdt_type, "or-map")
        self.assertFalse(self.kit.ephemeral)
        self.assertEqual(self.kit.handle("get"), {"value": {}})

    def test_every_type_through_its_handle_nested_two_deep(self) -> None:
        at = ["m", "n"]
        self.assertEqual(
            self.update(
                op([*at, "g"], "g-counter", {"increment": 3}),
                op([*at, "p"], "pn-counter", {"decrement": 5}),
                op([*at, "gs"], "g-set", {"add": {"b": 1, "a": 2}}),
                op([*at, "os"], "or-set", {"add": "x"}),
                op([*at, "os"], "or-set", {"add": 1}),
                op([*at, "r"], "lww-register", {"set": [1, "two"]}),
                op([*at, "f"], "flag", "enable"),
                op([*at, "v"], "vote", {"vote": True}),
                op([*at, "mm"], "or-map", {"delete": "nothing"}),
            ),
            {"applied": 9},
        )
        ops = self.kit.last.ops  # type: ignore[union-attr]
        self.assertEqual(ops[0], CrdtOp(("m", "n", "g"), "increment", 3, creates="g-counter"))
        self.assertEqual(ops[2].creates, "g-set")
        self.assertEqual(self.get([*at, "g"], "g-counter"), 3)
        self.assertEqual(self.get([*at, "p"], "pn-counter"), -5)
        self.assertEqual(self.get([*at, "gs"], "g-set"), [{"a": 2, "b": 1}])
        self.assertEqual(self.get([*at, "os"], "or-set"), ["x", 1])
        self.assertEqual(self.get([*at, "r"], "lww-register"), [1, "two"])
        self.assertEqual(self.get([*at, "f"], "flag"), True)
        self.assertEqual(
            self.get([*at, "v"], "vote"), {"votes_for": 1, "voters": 1, "majority": True}
        )
        self.assertEqual(self.get([*at, "mm"], "or-map"), {})
        whole = self.kit.handle("get")["value"]
        self.assertEqual(whole["m"]["n"]["g"], 3)
        self.assertEqual(self.get(["m"], "or-map"), whole["m"])
        self.assertEqual(self.get([], "or-map"), whole)
        self.update(
            op([*at, "p"], "pn-counter", {"increment": 7}),
            op([*at, "os"], "or-set", {"remove": "x"}),
            op([*at, "f"], "flag", "disable"),
            op([*at, "r"], "lww-register", {"set": None}),
        )
        self.assertEqual(self.get([*at, "p"], "pn-counter"), 2)
        self.assertEqual(self.get([*at, "os"], "or-set"), [1])
        self.assertEqual(self.get([*at, "f"], "flag"), False)
        self.assertIsNone(self.get([*at, "r"], "lww-register"))

    def test_missing_paths_read_null(self) -> None:
        self.assertIsNone(self.get(["a"], "g-counter"))
        self.assertIsNone(self.get(["a", "b"], "or-set"))
        self.update(op(["a", "c"], "flag", "enable"))
        self.assertIsNone(self.get(["a", "b"], "or-set"))
        self.assertEqual(self.kit.last.ops, [])  # type: ignore[union-attr]

    def test_clear_and_delete(self) -> None:
        self.update(
            op(["s"], "or-set", {"add": 1}),
            op(["f"], "flag", "enable"),
            op(["m", "a"], "g-counter", {"increment": 1}),
            op(["m", "b"], "g-counter", {"increment": 1}),
        )
        self.update(op(["s"], "or-set", "clear"), op(["f"], "flag", "clear"))
        self.assertEqual(self.kit.value, {"s": [], "f": False, "m": {"a": 1, "b": 1}})
        self.update(op(["m"], "or-map", {"delete": "a"}))
        self.assertEqual(self.get(["m"], "or-map"), {"b": 1})
        self.update(op(["m"], "or-map", "clear"))
        self.assertEqual(self.get(["m"], "or-map"), {})
        self.update(op([], "or-map", {"delete": "s"}))
        self.assertEqual(self.kit.value, {"f": False, "m": {}})
        self.update(op([], "or-map", "clear"))
        self.assertEqual(self.kit.handle("get"), {"value": {}})

    def test_each_consistency(self) -> None:
        self.update(op(["c"], "g-counter", {"increment": 1}))
        self.assertEqual(self.kit.last.consistency, "local")  # type: ignore[union-attr]
        for consistency in ("local", "majority", "all"):
            with self.subTest(consistency=consistency):
                reply = self.update(
                    op(["c"], "g-counter", {"increment": 1}), consistency=consistency
                )
                self.assertEqual(reply, {"applied": 1})
                self.assertEqual(self.kit.last.consistency, consistency)  # type: ignore[union-attr]
        self.assertEqual(self.get(["c"], "g-counter"), 4)

    def test_a_handle_of_the_wrong_type_fails_on_the_host(self) -> None:
        self.update(op(["c"], "pn-counter", {"increment": 2}))
        with self.assertRaises(EntityFailed):
            self.update(
                op(["d"], "flag", "enable"),
                op(["c"], "or-set", {"add": 1}),
            )
        with self.assertRaises(EntityFailed):
            self.update(op(["c", "x"], "g-counter", {"increment": 1}))
        self.assertEqual(self.kit.value, {"c": 2})

    def test_bad_payloads(self) -> None:
        bad_updates: list[Any] = [
            None,
            [],
            {"ops": 1},
            {"ops": [], "consistency": "quorum"},
            {"ops": [op(["a"], "g-counter", {"decrement": 1})]},
            {"ops": [op(["a"], "g-counter", {"increment": -1})]},
            {"ops": [op(["a"], "g-counter", {"increment": 1.5})]},
            {"ops": [op(["a"], "g-counter", {"increment": 2**64})]},
            {"ops": [op(["a"], "g-set", {"remove": 1})]},
            {"ops": [op(["a"], "lww-register", "clear")]},
            {"ops": [op(["a"], "vote", {"vote": 1})]},
            {"ops": [op(["a"], "or-map", {"delete": 1})]},
            {"ops": [op(["a"], "flag", {"enable": True})]},
            {"ops": [op(["a"], "counter", {"increment": 1})]},
            {"ops": [op([], "g-counter", {"increment": 1})]},
            {"ops": [op([1], "g-counter", {"increment": 1})]},  # type: ignore[list-item]
            {"ops": [{"path": ["a"], "type": "flag"}]},
        ]
        for payload in bad_updates:
            with self.subTest(payload=payload), self.assertRaises(cella.BadRequest):
                self.kit.handle("update", payload)
        for payload in [
            1,
            {"path": ["a"]},
            {"path": "a", "type": "flag"},
            {"path": [], "type": "x"},
        ]:
            with self.subTest(payload=payload), self.assertRaises(cella.BadRequest):
                self.kit.handle("get", payload)
        self.assertEqual(self.kit.value, {})


if __name__ == "__main__":
    unittest.main()
