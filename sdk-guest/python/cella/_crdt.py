"""The typed handles of a crdt entity's data, one per crdt type: :class:`GCounter`,
:class:`PNCounter`, :class:`GSet`, :class:`ORSet`, :class:`LWWRegister`, :class:`Flag`,
:class:`ORMap` and :class:`Vote`. A handle reads the value the host handed the command (its
JSON view) and records operations (the outcome's ``crdt-ops``); an :class:`ORMap` hands out
the handles of its keys' data, which carry the keys as the operations' ``path``.

Each command has one :class:`Recorder`: the operations in order, and a working copy of the
value (:mod:`cella._crdt_model`) that every operation is applied to as it is recorded, so that
a read through any handle reflects the command's own operations (a counter's increments, a
set's adds and removes, a register's write, a flag, a map's keys) — except a vote, which reads
as of the command's start (the node's own earlier vote is not in the view)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any, ClassVar, TypeVar

from . import _codec
from ._crdt_model import Data, Mismatch, apply, canonical, empty_view, from_view, typed
from ._errors import EntityError
from ._protocol import CrdtOp

__all__ = [
    "Crdt",
    "Flag",
    "GCounter",
    "GSet",
    "LWWRegister",
    "ORMap",
    "ORSet",
    "PNCounter",
    "Recorder",
    "Vote",
]

H = TypeVar("H", bound="Crdt")


class Recorder:
    """One command's operations, and its working copy of the entity's value."""

    __slots__ = ("crdt_type", "root", "ops")

    def __init__(self, crdt_type: str, view: Any) -> None:
        self.crdt_type = crdt_type
        try:
            self.root: Data = from_view(crdt_type, view)
        except ValueError as e:
            raise EntityError(f"the host's value of the entity does not fit: {e}") from None
        self.ops: list[CrdtOp] = []

    def record(self, op: CrdtOp) -> None:
        self.ops.append(op)
        # An op that does not fit fails the command on the host; until the handler returns,
        # reads show what did apply.
        with contextlib.suppress(Mismatch):
            apply(self.root, op, count_votes=False)


class Crdt:
    """A handle on crdt data: the entity's own (``path`` empty) or an or-map key's. Made by
    the SDK (``self.data``) and by :class:`ORMap`'s methods, never directly."""

    #: The crdt type's WIT name.
    TYPE: ClassVar[str] = ""

    __slots__ = ("_recorder", "_path")

    def __init__(self, recorder: Recorder, path: tuple[str, ...] = ()) -> None:
        self._recorder = recorder
        self._path = path

    @property
    def path(self) -> tuple[str, ...]:
        """The or-map keys leading to this data, outermost first (empty: the entity's own)."""
        return self._path

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={list(self._path)!r})"

    def _view(self) -> Any:
        """This data's JSON view as of now, or the empty one of the handle's type."""
        data = self._recorder.root.get(self._path)
        return empty_view(self.TYPE) if data is None else typed(data, self.TYPE).view()

    def _read(self, check: Any, expected: str) -> Any:
        view = self._view()
        if not check(view):
            where = "the entity's data" if not self._path else f"path {list(self._path)!r}"
            raise EntityError(
                f"{where} holds {json.dumps(view)[:60]}, which is not {expected} "
                f"(read through a {self.TYPE} handle)"
            )
        return view

    def _op(self, action: str, argument: Any = None) -> None:
        creates = self.TYPE if self._path else None
        self._recorder.record(CrdtOp(self._path, action, argument, creates))

    def _amount(self, action: str, n: Any) -> int:
        if not _codec._is_int(n) or not 0 <= n <= _codec.UINT64_MAX:
            raise EntityError(f"{self.TYPE} {action}: the amount must be an integer in 0..2^64")
        return int(n)

    def _json(self, action: str, value: Any) -> str:
        try:
            return canonical(_codec.to_json(value))
        except (_codec.EncodeError, TypeError, ValueError, RecursionError) as e:
            raise EntityError(f"{self.TYPE} {action}: the value is not JSON: {e}") from None


def _is_number(view: Any) -> bool:
    return isinstance(view, (int, float)) and not isinstance(view, bool)


class GCounter(Crdt):
    """A counter that only grows. :attr:`value` is the total (with this command's
    increments)."""

    TYPE = "g-counter"
    __slots__ = ()

    @property
    def value(self) -> int:
        value: int = self._read(_is_number, "a number")
        return value

    def increment(self, n: int = 1) -> None:
        """Adds ``n`` (0 to 2^64-1)."""
        self._op("increment", self._amount("increment", n))


class PNCounter(GCounter):
    """A counter that goes up and down."""

    TYPE = "pn-counter"
    __slots__ = ()

    def decrement(self, n: int = 1) -> None:
        """Subtracts ``n`` (0 to 2^64-1)."""
        self._op("decrement", self._amount("decrement", n))


class GSet(Crdt):
    """A set that only grows, of JSON values. :attr:`elements` are sorted by their canonical
    JSON text (object keys sorted, no whitespace), as the host keeps them; ``in``, ``len()``
    and iteration work on them."""

    TYPE = "g-set"
    __slots__ = ()

    @property
    def elements(self) -> list[Any]:
        elements: list[Any] = self._read(lambda v: isinstance(v, list), "an array")
        return elements

    def __contains__(self, value: Any) -> bool:
        text = self._json("contains", value)
        return any(canonical(e) == text for e in self.elements)

    def __len__(self) -> int:
        return len(self.elements)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.elements)

    def add(self, value: Any) -> None:
        """Adds ``value`` (JSON data or a dataclass)."""
        self._op("add", self._json("add", value))


class ORSet(GSet):
    """An add-wins set: an add concurrent with a remove of the same element wins."""

    TYPE = "or-set"
    __slots__ = ()

    def remove(self, value: Any) -> None:
        """Removes ``value`` (the adds this node has seen)."""
        self._op("remove", self._json("remove", value))

    def clear(self) -> None:
        """Removes every element."""
        self._op("clear")


class LWWRegister(Crdt):
    """A last-writer-wins register: the value of the latest write (``None`` before the first).
    The host stamps a write with the command's timestamp; :attr:`value` after :meth:`set` is
    the value written."""

    TYPE = "lww-register"
    __slots__ = ()

    @property
    def value(self) -> Any:
        return self._view()

    def set(self, value: Any) -> None:
        """Writes ``value`` (JSON data or a dataclass)."""
        self._op("set", self._json("set", value))


class Flag(Crdt):
    """An enable-wins flag: an enable concurrent with a disable wins."""

    TYPE = "flag"
    __slots__ = ()

    @property
    def enabled(self) -> bool:
        enabled: bool = self._read(lambda v: isinstance(v, bool), "a boolean")
        return enabled

    @property
    def value(self) -> bool:
        """The same as :attr:`enabled`."""
        return self.enabled

    def enable(self) -> None:
        self._op("enable")

    def disable(self) -> None:
        self._op("disable")

    def clear(self) -> None:
        """Turns the flag off (recorded as ``clear``)."""
        self._op("clear")


class Vote(Crdt):
    """One vote per node: :meth:`vote` records this node's, replacing its earlier one. Reads
    are as of the command's start (the view does not say which vote is this node's)."""

    TYPE = "vote"
    __slots__ = ()

    @property
    def value(self) -> dict[str, Any]:
        """``{"votes_for": N, "voters": N, "majority": bool}``."""
        value: dict[str, Any] = self._read(_is_vote, "a vote's view")
        return value

    @property
    def votes_for(self) -> int:
        votes: int = self.value["votes_for"]
        return votes

    @property
    def voters(self) -> int:
        voters: int = self.value["voters"]
        return voters

    @property
    def majority(self) -> bool:
        """Whether more than half of the voters vote for."""
        return bool(self.value["majority"])

    def vote(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise EntityError(f"vote: the vote must be a bool, not {value!r:.40}")
        self._op("vote", value)


def _is_vote(view: Any) -> bool:
    return isinstance(view, dict) and set(view) == {"votes_for", "voters", "majority"}


class ORMap(Crdt):
    """An add-wins map from string keys to crdt data of any type. ``in``, ``len()``,
    :meth:`keys` and :attr:`value` read it; the handle of a key's data is got with the method
    of its type (:meth:`g_counter`, :meth:`pn_counter`, :meth:`g_set`, :meth:`or_set`,
    :meth:`register`, :meth:`flag`, :meth:`map`, :meth:`vote`) or :meth:`at`. The first
    operation through a handle creates the key's data with the handle's type. A deleted key's
    data stays in the host's state, unread: written again, it comes back merged with the new
    operations (a counter goes on from its old total) and keeps its type."""

    TYPE = "or-map"
    __slots__ = ()

    @property
    def value(self) -> dict[str, Any]:
        """The map's view: an object of its keys' values."""
        value: dict[str, Any] = self._read(lambda v: isinstance(v, dict), "an object")
        return value

    def keys(self) -> list[str]:
        """The keys, sorted."""
        return sorted(self.value)

    def __contains__(self, key: object) -> bool:
        return key in self.value

    def __len__(self) -> int:
        return len(self.value)

    def at(self, key: str, handle: type[H]) -> H:
        """The handle of type ``handle`` (e.g. ``cella.GCounter``) on ``key``'s data."""
        if not isinstance(key, str):
            raise EntityError(f"an or-map key is a string, not {key!r:.40}")
        if not (isinstance(handle, type) and issubclass(handle, Crdt) and handle.TYPE):
            raise EntityError(f"{handle!r:.40} is not a crdt handle type (e.g. cella.GCounter)")
        return handle(self._recorder, (*self._path, key))

    def g_counter(self, key: str) -> GCounter:
        return self.at(key, GCounter)

    def pn_counter(self, key: str) -> PNCounter:
        return self.at(key, PNCounter)

    def g_set(self, key: str) -> GSet:
        return self.at(key, GSet)

    def or_set(self, key: str) -> ORSet:
        return self.at(key, ORSet)

    def register(self, key: str) -> LWWRegister:
        return self.at(key, LWWRegister)

    def flag(self, key: str) -> Flag:
        return self.at(key, Flag)

    def map(self, key: str) -> ORMap:
        return self.at(key, ORMap)

    def vote(self, key: str) -> Vote:
        return self.at(key, Vote)

    def delete(self, key: str) -> None:
        """Removes ``key`` (the updates of it this node has seen)."""
        if not isinstance(key, str):
            raise EntityError(f"an or-map key is a string, not {key!r:.40}")
        self._op("delete", key)

    def clear(self) -> None:
        """Removes every key."""
        self._op("clear")


#: The handle class of each crdt type.
HANDLES: dict[str, type[Crdt]] = {
    h.TYPE: h for h in (GCounter, PNCounter, GSet, ORSet, LWWRegister, Flag, ORMap, Vote)
}
