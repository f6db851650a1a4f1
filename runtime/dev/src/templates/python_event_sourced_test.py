"""Unit tests of `{{name}}`, in plain Python: `python3 -m unittest`."""

import sys
import unittest

# The Cella SDK that `cella new` wrote (unless `cella` is installed).
sys.path.append({{sdk}})

import cella  # noqa: E402
from cella.testing import TestKit  # noqa: E402

from app import Ledger  # noqa: E402


class LedgerTest(unittest.TestCase):
    def test_deposits_and_withdrawals_are_events(self) -> None:
        kit = TestKit(Ledger)
        self.assertEqual(kit.commands, ["deposit", "withdraw", "balance"])
        self.assertEqual(kit.handle("deposit", 10), {"balance": 10})
        self.assertEqual(kit.handle("withdraw", 4), {"balance": 6})
        self.assertEqual(kit.handle("balance"), {"balance": 6})
        self.assertEqual(kit.events, [{"deposited": {"amount": 10}}, {"withdrawn": {"amount": 4}}])
        self.assertEqual(kit.state.balance, 6)

    def test_an_overdraft_is_rejected_and_records_nothing(self) -> None:
        kit = TestKit(Ledger)
        kit.handle("deposit", 5)
        with self.assertRaisesRegex(cella.Rejected, "^cannot withdraw 6: the balance is 5$"):
            kit.handle("withdraw", 6)
        self.assertEqual(len(kit.events), 1)
        with self.assertRaises(cella.BadRequest):
            kit.handle("deposit", -1)


if __name__ == "__main__":
    unittest.main()
