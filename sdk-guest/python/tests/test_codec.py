"""Tests of the JSON codec: encoding values and dataclasses, and decoding JSON into type
hints with messages that say where it went wrong."""

from __future__ import annotations

import dataclasses
import enum
import typing
import unittest
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, Union

import _support  # noqa: F401  (puts the SDK on sys.path)

import cella
from cella import _codec
from cella._codec import DecodeError, EncodeError, decoder, dumps, to_json


@dataclass
class Line:
    product_id: Annotated[str, cella.json_name("productId")]
    quantity: cella.int64 = 1


@dataclass
class Renamed:
    a: Annotated[int, cella.json_name("A")]
    b: Annotated[cella.uint64, cella.json_name("bee")]
    c: Annotated[Optional[int], "other metadata"] = None  # noqa: UP045


@dataclass
class Unresolved:
    x: Missing = None  # type: ignore[name-defined]  # noqa: F821


@dataclass
class Order:
    lines: list[Line] = dataclasses.field(default_factory=list)
    note: str | None = None


@dataclass
class Tree:
    name: str
    children: list[Tree] = dataclasses.field(default_factory=list)


@dataclass
class Derived:
    a: int
    b: int = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.b = self.a * 2


@dataclass
class Checked:
    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("n must not be negative")


class Color(enum.Enum):
    RED = "red"


class Size(enum.IntEnum):
    SMALL = 1


class EncodeTest(unittest.TestCase):
    def test_json_values_pass_through(self) -> None:
        value = {"a": [1, 2.5, "x", True, None], "b": {}}
        self.assertEqual(to_json(value), value)
        self.assertEqual(dumps(value), '{"a":[1,2.5,"x",true,null],"b":{}}')

    def test_dataclasses_encode_by_json_name_in_order(self) -> None:
        order = Order(lines=[Line("p1", 2)], note="n")
        self.assertEqual(dumps(order), '{"lines":[{"productId":"p1","quantity":2}],"note":"n"}')

    def test_tuples_are_lists_and_subclasses_are_plain(self) -> None:
        self.assertEqual(to_json((1, (2, 3))), [1, [2, 3]])
        self.assertEqual(to_json(Size.SMALL), 1)
        self.assertIs(type(to_json(Size.SMALL)), int)

    def test_unicode_is_kept(self) -> None:
        self.assertEqual(dumps("café ☕"), '"café ☕"')

    def test_derived_fields_are_not_data(self) -> None:
        self.assertEqual(to_json(Derived(2)), {"a": 2})

    def test_values_without_json_form_fail(self) -> None:
        for value in [float("nan"), float("inf"), {1: "x"}, {1, 2}, object(), Color.RED, b"x"]:
            with self.subTest(value=value), self.assertRaises(EncodeError):
                dumps(value)


class DecodeTest(unittest.TestCase):
    def check(self, hint: Any, value: Any, expected: Any) -> None:
        self.assertEqual(decoder(hint)(value), expected)

    def fails(self, hint: Any, value: Any, message: str) -> None:
        with self.assertRaises(DecodeError) as caught:
            decoder(hint)(value)
        self.assertEqual(str(caught.exception), message)

    def test_scalars(self) -> None:
        self.check(int, 5, 5)
        self.check(str, "x", "x")
        self.check(bool, False, False)
        self.check(float, 2, 2.0)
        self.assertIs(type(decoder(float)(2)), float)
        self.check(type(None), None, None)
        self.check(None, None, None)
        self.fails(int, 1.5, "expected an integer, got 1.5")
        self.fails(int, 1.0, "expected an integer, got 1.0")
        self.fails(int, True, "expected an integer, got true")
        self.fails(int, "five", 'expected an integer, got the string "five"')
        self.fails(int, None, "expected an integer, got null")
        self.fails(bool, 0, "expected a boolean, got 0")
        self.fails(str, [], "expected a string, got a list")
        self.fails(float, "1", 'expected a number, got the string "1"')
        self.fails(None, {}, "expected null, got an object")

    def test_long_values_are_shortened(self) -> None:
        self.fails(int, "x" * 100, f'expected an integer, got the string "{"x" * 36}...')

    def test_64_bit_ranges(self) -> None:
        self.check(cella.int64, cella.INT64_MAX, cella.INT64_MAX)
        self.check(cella.int64, cella.INT64_MIN, cella.INT64_MIN)
        self.fails(
            cella.int64,
            cella.INT64_MAX + 1,
            "expected a 64-bit signed integer, got 9223372036854775808",
        )
        self.fails(cella.int64, 1.5, "expected a 64-bit signed integer, got 1.5")
        self.check(cella.uint64, cella.UINT64_MAX, cella.UINT64_MAX)
        self.fails(cella.uint64, -1, "expected a 64-bit unsigned integer, got -1")

    def test_any_takes_the_value_as_is(self) -> None:
        for hint in (Any, object):
            self.check(hint, {"a": [1]}, {"a": [1]})

    def test_containers(self) -> None:
        self.check(list, [1, "a"], [1, "a"])
        self.check(typing.List[int], [1], [1])  # noqa: UP006
        self.check(typing.Dict[str, int], {"a": 1}, {"a": 1})  # noqa: UP006
        self.check(typing.Tuple[int, ...], [1], (1,))  # noqa: UP006
        self.check(typing.List, [1], [1])  # noqa: UP006
        self.check(list[int], [1, 2], [1, 2])
        self.check(list[str], ["a"], ["a"])
        self.check(dict, {"a": 1}, {"a": 1})
        self.check(dict[str, int], {"a": 1}, {"a": 1})
        self.check(tuple[int, ...], [1, 2], (1, 2))
        self.check(tuple[int, str], [1, "a"], (1, "a"))
        self.fails(list[int], [1, "2"], 'at `[1]`: expected an integer, got the string "2"')
        self.fails(dict[str, int], {"a": None}, "at `a`: expected an integer, got null")
        self.fails(tuple[int, str], [1], "expected a list of 2, got a list")
        self.fails(list, {}, "expected a list, got an object")

    def test_optionals_unions_and_literals(self) -> None:
        self.check(Optional[int], None, None)  # noqa: UP007, UP045
        self.check(Optional[int], 3, 3)  # noqa: UP007, UP045
        self.check(int | None, 3, 3)
        self.check(Union[int, str], "x", "x")  # noqa: UP007, UP045
        self.check(Literal["a", 1], 1, 1)
        self.fails(Optional[int], "x", 'expected an integer, got the string "x"')  # noqa: UP007, UP045
        self.fails(Union[int, str], [], "expected an integer or a string, got a list")  # noqa: UP007, UP045
        self.fails(Literal["a", 1], True, 'expected "a" or 1, got true')

    def test_dataclasses(self) -> None:
        self.check(Line, {"productId": "p", "quantity": 3, "other": 1}, Line("p", 3))
        self.check(Line, {"productId": "p"}, Line("p", 1))
        self.check(Order, {}, Order())
        self.check(
            Order, {"lines": [{"productId": "p"}], "note": None}, Order(lines=[Line("p", 1)])
        )
        self.fails(Line, {"quantity": 3}, "missing field `productId`")
        self.fails(Line, [], "expected an object (Line), got a list")
        self.fails(
            Order,
            {"lines": [{"productId": "p", "quantity": "3"}]},
            'at `lines[0].quantity`: expected a 64-bit signed integer, got the string "3"',
        )

    def test_recursive_dataclasses(self) -> None:
        tree = {"name": "a", "children": [{"name": "b"}]}
        self.check(Tree, tree, Tree("a", [Tree("b")]))
        self.fails(Tree, {"name": "a", "children": [{}]}, "at `children[0]`: missing field `name`")

    def test_constructor_errors_are_decode_errors(self) -> None:
        self.check(Derived, {"a": 2, "b": 99}, Derived(2))
        self.fails(Checked, {"n": -1}, "Checked: n must not be negative")

    def test_unsupported_hints_fail_when_compiled(self) -> None:
        for hint in (bytes, set, dict[int, str], Color):
            with self.subTest(hint=hint), self.assertRaises(TypeError):
                decoder(hint)

    def test_json_names(self) -> None:
        self.assertEqual(_codec.json_fields(Renamed), [("a", "A"), ("b", "bee"), ("c", "c")])
        self.check(Renamed, {"A": 1, "bee": 2}, Renamed(1, 2))
        self.fails(Renamed, {"a": 1, "bee": 2}, "missing field `A`")
        self.fails(
            Renamed, {"A": 1, "bee": -1}, "at `bee`: expected a 64-bit unsigned integer, got -1"
        )
        self.assertEqual(dumps(Renamed(1, 2)), '{"A":1,"bee":2,"c":null}')
        with self.assertRaises(TypeError):
            cella.json_name("")

    def test_dataclasses_whose_hints_do_not_resolve(self) -> None:
        with self.assertRaises(EncodeError):
            dumps(Unresolved())
        with self.assertRaises(TypeError):
            decoder(Unresolved)


if __name__ == "__main__":
    unittest.main()
