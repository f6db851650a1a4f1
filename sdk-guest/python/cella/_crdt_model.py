"""A single replica's model of a crdt entity's data, over the JSON view the host hands the guest:
:class:`Data` (a typed tree: counters, sets, registers, flags, votes and or-maps of them) built
from a view, operations (:class:`~cella._protocol.CrdtOp`) applied to it as one replica does,
and the view read back. The typed handles keep one per command, so that reads reflect the
command's own operations; the test kit keeps one across commands as the entity's value.

It follows the host's crdt types (``runtime/crdt``) where one replica can see it: a set's
elements are kept once per canonical JSON text (object keys sorted, no whitespace, numbers as
the host writes them) and read in that text's order; an or-map key's type is fixed by the first
operation on it (``creates``, else the action's); a deleted or cleared key's data stays, unread,
and comes back merged with new operations on the key; a vote counts the votes of the other
replicas the view showed plus this replica's own."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from typing import Any

from ._protocol import CrdtOp

__all__ = ["Data", "Mismatch", "apply", "canonical", "empty_view", "from_view", "typed"]

#: The type an or-map key's data gets from the first action on it (``clear`` creates nothing).
_ACTION_TYPE = {
    "increment": "pn-counter",
    "decrement": "pn-counter",
    "add": "or-set",
    "remove": "or-set",
    "set": "lww-register",
    "enable": "flag",
    "disable": "flag",
    "vote": "vote",
    "delete": "or-map",
    "clear": None,
}

#: The actions each type takes.
TAKES = {
    "g-counter": ("increment",),
    "pn-counter": ("increment", "decrement"),
    "g-set": ("add",),
    "or-set": ("add", "remove", "clear"),
    "lww-register": ("set",),
    "flag": ("enable", "disable", "clear"),
    "or-map": ("delete", "clear"),
    "vote": ("vote",),
}

_VOTE_KEYS = {"votes_for", "voters", "majority"}
#: How deeply the host lets or-maps nest.
MAX_NESTING = 32
_I64_MIN = -(2**63)
_U64_MAX = 2**64 - 1


class Mismatch(Exception):
    """An operation the data it names does not take (the host fails such a command)."""


@dataclass
class Data:
    """One crdt value. ``value`` holds, per type: a counter's total (``int``); a set's elements
    by canonical text; a register's value; a flag's state; an or-map's data by key (deleted
    keys included); a vote's ``(votes for, voters)`` among the other replicas. ``keys`` are an
    or-map's keys that are present; ``mine`` is this replica's vote (``None``: none).

    An or-map's value read from a view has no type yet (``type`` ``None``, ``value`` its view):
    a view does not tell a register holding an array from a set, or a counter's kind. It gets
    one from the first operation on it or the first typed read (:func:`typed`)."""

    type: str | None
    value: Any
    keys: set[str] = field(default_factory=set)
    mine: bool | None = None

    def view(self) -> Any:
        """The JSON view, as the host writes it."""
        t = self.type
        if t is None:
            return copy.deepcopy(self.value)
        if t in ("g-counter", "pn-counter"):
            n: int = self.value
            return n if _I64_MIN <= n <= _U64_MAX else float(n)
        if t in ("g-set", "or-set"):
            return [self.value[text] for text in sorted(self.value)]
        if t == "or-map":
            return {key: self.value[key].view() for key in sorted(self.keys)}
        if t == "vote":
            votes_for, voters = self.value
            if self.mine is not None:
                votes_for += int(self.mine)
                voters += 1
            return {"votes_for": votes_for, "voters": voters, "majority": votes_for * 2 > voters}
        return copy.deepcopy(self.value) if t == "lww-register" else self.value

    def get(self, path: tuple[str, ...]) -> Data | None:
        """The data at ``path`` (or-map keys, each present), or ``None``."""
        data: Data | None = self
        for key in path:
            if data is None or data.type is None and not isinstance(data.value, dict):
                return None
            typed(data, "or-map")
            if data.type != "or-map" or key not in data.keys:
                return None
            data = data.value.get(key)
        return data


def new(crdt_type: str) -> Data:
    """An empty value of ``crdt_type``."""
    if crdt_type in ("g-counter", "pn-counter"):
        return Data(crdt_type, 0)
    if crdt_type in ("g-set", "or-set", "or-map"):
        return Data(crdt_type, {})
    if crdt_type == "lww-register":
        return Data(crdt_type, None)
    if crdt_type == "flag":
        return Data(crdt_type, False)
    if crdt_type == "vote":
        return Data(crdt_type, (0, 0))
    raise ValueError(f"unknown crdt type {crdt_type!r}")


def empty_view(crdt_type: str) -> Any:
    """The JSON view of an empty ``crdt_type``."""
    return new(crdt_type).view()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _inferred(value: Any) -> str:
    """The type a view's data is taken as when nothing says: a number is a pn-counter, an
    array an or-set, a boolean a flag, an object with exactly the keys of a vote's view a vote,
    another object an or-map, anything else (``null``, a string) an lww-register."""
    if _is_number(value):
        return "pn-counter"
    if isinstance(value, list):
        return "or-set"
    if isinstance(value, bool):
        return "flag"
    if isinstance(value, dict):
        return "vote" if _is_vote(value) else "or-map"
    return "lww-register"


def _is_vote(value: dict[str, Any]) -> bool:
    return (
        set(value) == _VOTE_KEYS
        and isinstance(value["votes_for"], int)
        and isinstance(value["voters"], int)
        and not isinstance(value["votes_for"], bool)
        and not isinstance(value["voters"], bool)
        and isinstance(value["majority"], bool)
    )


def from_view(crdt_type: str | None, view: Any, where: str = "the value") -> Data:
    """The data whose view is ``view``: of ``crdt_type``, or (``None``) of the type the view's
    shape suggests (see :func:`_inferred`); an or-map's values are always inferred. Raises
    ``ValueError`` naming ``where`` when ``view`` cannot be a ``crdt_type``'s view."""
    t = crdt_type or _inferred(view)
    if t in ("g-counter", "pn-counter") and isinstance(view, float) and view.is_integer():
        # A counter beyond 64 bits reads as the nearest float in the host's JSON view.
        view = int(view)
    fits = {
        "g-counter": isinstance(view, int) and not isinstance(view, bool) and view >= 0,
        "pn-counter": isinstance(view, int) and not isinstance(view, bool),
        "g-set": isinstance(view, list),
        "or-set": isinstance(view, list),
        "lww-register": True,
        "flag": isinstance(view, bool),
        "or-map": isinstance(view, dict),
        "vote": isinstance(view, dict) and _is_vote(view),
    }
    if t not in fits:
        raise ValueError(f"unknown crdt type {t!r}")
    if not fits[t]:
        raise ValueError(f"{where} is not the view of a {t}: {json.dumps(view)[:80]}")
    if t in ("g-set", "or-set"):
        return Data(t, {canonical(e): _element(e) for e in view})
    if t == "or-map":
        children = {k: Data(None, v) for k, v in view.items()}
        return Data(t, children, keys=set(children))
    if t == "vote":
        return Data(t, (view["votes_for"], view["voters"]))
    return Data(t, _element(view) if t == "lww-register" else view)


def typed(data: Data, crdt_type: str | None) -> Data:
    """Gives ``data`` a type if it has none yet: ``crdt_type`` if its view fits one, else the
    one its shape suggests. Returns ``data``."""
    if data.type is None:
        try:
            fresh = from_view(crdt_type, data.value)
        except ValueError:
            fresh = from_view(None, data.value)
        data.type, data.value, data.keys, data.mine = fresh.type, fresh.value, fresh.keys, None
    return data


def apply(root: Data, op: CrdtOp, *, count_votes: bool = True) -> None:
    """Applies ``op`` to ``root`` as this replica. Raises :class:`Mismatch` when the data on
    the op's path does not take it; ``root`` may then hold new hidden keys but no other
    change. ``count_votes=False`` leaves votes out (a replica that does not know its own)."""
    if len(op.path) > MAX_NESTING:
        raise Mismatch(f"an operation's path is {len(op.path)} keys deep (at most {MAX_NESTING})")
    data = root
    present: list[tuple[Data, str]] = []
    for i, key in enumerate(op.path):
        typed(data, "or-map")
        if data.type != "or-map":
            raise Mismatch(f"{_where(op.path[:i])} is a {data.type}, not an or-map")
        child = data.value.get(key)
        if child is None:
            last = i == len(op.path) - 1
            created = (op.creates or _ACTION_TYPE[op.action]) if last else "or-map"
            if created is None:
                return  # `clear` of data that was never written: nothing to do
            child = new(created)
            data.value[key] = child
        present.append((data, key))
        data = child
    typed(data, op.creates if op.path else None)
    assert data.type is not None
    if op.action not in TAKES[data.type]:
        raise Mismatch(
            f"the operation {op.action} does not apply to a {data.type} at {_where(op.path)} "
            f"(a {data.type} takes {', '.join(TAKES[data.type])})"
        )
    _act(data, op, count_votes)
    for parent, key in present:
        parent.keys.add(key)


def _act(data: Data, op: CrdtOp, count_votes: bool) -> None:
    action, argument = op.action, op.argument
    if action == "increment":
        data.value += argument
    elif action == "decrement":
        data.value -= argument
    elif action == "add":
        element = _element(json.loads(str(argument)))
        data.value.setdefault(canonical(element), element)
    elif action == "remove":
        data.value.pop(canonical(json.loads(str(argument))), None)
    elif action == "set":
        data.value = _element(json.loads(str(argument)))
    elif action in ("enable", "disable"):
        data.value = action == "enable"
    elif action == "vote":
        if count_votes:
            data.mine = bool(argument)
    elif action == "delete":
        data.keys.discard(str(argument))
    elif data.type == "or-set":  # clear
        data.value = {}
    elif data.type == "or-map":
        data.keys.clear()
    else:
        data.value = False


def _where(path: tuple[str, ...]) -> str:
    return "the entity's data" if not path else "path " + json.dumps(list(path))


def _element(value: Any) -> Any:
    """``value`` as the host reads it back: from its canonical text."""
    return json.loads(canonical(value))


def canonical(value: Any) -> str:
    """The canonical JSON text of ``value``, as the host writes it: object keys sorted, no
    whitespace, numbers as serde_json writes them (an integer outside the 64-bit ranges is a
    float; a float in the shortest form that reads back, ``1e16``, ``1.5``, ``0.0001``)."""
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(f"{canonical(str(k))}:{canonical(v)}" for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        return str(value) if _I64_MIN <= value <= _U64_MAX else _float_text(float(value))
    if isinstance(value, float):
        return _float_text(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _float_text(x: float) -> str:
    """A finite float as serde_json (ryu) writes it."""
    if not math.isfinite(x):
        raise ValueError(f"{x} is not JSON")
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    text = repr(abs(x))
    mantissa, _, exp = text.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0") or "0"
    # The decimal exponent of the first significant digit: x = 0.DIGITS * 10^point.
    point = (
        len(whole) + int(exp or 0)
        if whole != "0"
        else int(exp or 0) - (len(frac) - len(frac.lstrip("0")))
    )
    digits = digits.rstrip("0") or "0"
    if digits == "0":
        return sign + "0.0"
    n = len(digits)
    if point - n >= 0 and point <= 16:
        return sign + digits + "0" * (point - n) + ".0"
    if 0 < point <= 16:
        return sign + digits[:point] + "." + digits[point:]
    if -5 < point <= 0:
        return sign + "0." + "0" * -point + digits
    rest = "." + digits[1:] if n > 1 else ""
    return f"{sign}{digits[0]}{rest}e{point - 1}"
