"""Unit tests of `{{name}}`, in plain Python: `python3 -m unittest`."""

import sys
import unittest

# The Cella SDK that `cella new` wrote (unless `cella` is installed).
sys.path.append({{sdk}})

import cella  # noqa: E402
from cella.testing import TestKit  # noqa: E402

from app import Counter  # noqa: E402


class CounterTest(unittest.TestCase):
    def test_add_replies_the_new_total(self) -> None:
        kit = TestKit(Counter)
        self.assertEqual(kit.commands, ["add", "get"])
        self.assertEqual(kit.handle("add", 5), 5)
        self.assertEqual(kit.handle("add", -2), 3)
        self.assertEqual(kit.handle("get"), 3)
        self.assertEqual(kit.state.total, 3)
        # `get` changed nothing, so only the two `add`s were persisted.
        self.assertEqual(kit.sequence, 2)

    def test_overflow_is_rejected_and_changes_nothing(self) -> None:
        kit = TestKit(Counter)
        self.assertEqual(kit.handle("add", cella.INT64_MAX), cella.INT64_MAX)
        with self.assertRaisesRegex(cella.Rejected, "^adding 1 would overflow the total$"):
            kit.handle("add", 1)
        self.assertEqual(kit.state.total, cella.INT64_MAX)
        with self.assertRaises(cella.BadRequest):
            kit.handle("add", "five")


if __name__ == "__main__":
    unittest.main()
