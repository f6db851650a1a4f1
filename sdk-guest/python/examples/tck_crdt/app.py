"""The TCK's crdt model (``tck-crdt``, see tests/tck/SPEC.md): a durable crdt entity whose data
is an or-map. ``update`` runs a list of operations, each on the data at a path of map keys
taken through the typed handle of the type it names, and sets the command's write
consistency; ``get`` replies the whole value, or the value at a path read through a typed
handle."""

from __future__ import annotations

import json
from typing import Any

import cella
from cella import BadRequest, CrdtContext

#: The handle class of each type name.
HANDLES: dict[str, type[cella.Crdt]] = {
    "g-counter": cella.GCounter,
    "pn-counter": cella.PNCounter,
    "g-set": cella.GSet,
    "or-set": cella.ORSet,
    "lww-register": cella.LWWRegister,
    "flag": cella.Flag,
    "or-map": cella.ORMap,
    "vote": cella.Vote,
}

#: The actions each type takes: those with an argument, and the bare ones.
ACTIONS: dict[str, tuple[set[str], set[str]]] = {
    "g-counter": ({"increment"}, set()),
    "pn-counter": ({"increment", "decrement"}, set()),
    "g-set": ({"add"}, set()),
    "or-set": ({"add", "remove"}, {"clear"}),
    "lww-register": ({"set"}, set()),
    "flag": (set(), {"enable", "disable", "clear"}),
    "or-map": ({"delete"}, {"clear"}),
    "vote": ({"vote"}, set()),
}

CONSISTENCIES = ("local", "majority", "all")

#: A checked op: the path, the type, the action and its argument.
Op = tuple[list[str], str, str, Any]


class TckCrdt(cella.CrdtEntity[cella.ORMap]):
    @cella.command
    def update(self, payload: Any, ctx: CrdtContext) -> dict[str, Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("ops"), list):
            raise BadRequest('command `update`: expected {"ops": [...], "consistency": ...}')
        consistency: Any = payload.get("consistency")
        if consistency is None:
            consistency = "local"
        if consistency not in CONSISTENCIES:
            raise BadRequest(
                f"command `update`: consistency must be one of local, majority, all, "
                f"not {consistency!r:.40}"
            )
        ops = [parse_op(i, op) for i, op in enumerate(payload["ops"])]
        for path, crdt_type, action, argument in ops:
            run(handle_at(self.data, path, crdt_type), action, argument)
        ctx.consistency = consistency
        return {"applied": len(ops)}

    @cella.command
    def get(self, payload: Any = None) -> dict[str, Any]:
        if payload is None:
            return {"value": self.data.value}
        if not isinstance(payload, dict) or not {"path", "type"} <= set(payload):
            raise BadRequest('command `get`: expected null or {"path": [...], "type": T}')
        path = parse_path("command `get`", payload["path"])
        crdt_type = parse_type("command `get`", payload["type"], path)
        data: cella.ORMap = self.data
        for key in path[:-1]:
            if key not in data:
                return {"value": None}
            data = data.map(key)
        if path and path[-1] not in data:
            return {"value": None}
        return {"value": read(handle_at(self.data, path, crdt_type))}


def parse_op(index: int, op: Any) -> Op:
    where = f"command `update`: ops[{index}]"
    if not isinstance(op, dict) or not {"path", "type", "action"} <= set(op):
        raise BadRequest(f'{where}: expected {{"path": [...], "type": T, "action": A}}')
    path = parse_path(where, op["path"])
    crdt_type = parse_type(where, op["type"], path)
    with_argument, bare = ACTIONS[crdt_type]
    action = op["action"]
    if isinstance(action, str) and action in bare:
        return path, crdt_type, action, None
    if isinstance(action, dict) and len(action) == 1:
        ((name, argument),) = action.items()
        if name in with_argument:
            return path, crdt_type, name, parse_argument(where, name, argument)
    shown = json.dumps(action)[:60]
    raise BadRequest(f"{where}: a {crdt_type} does not take the action {shown}")


def parse_path(where: str, path: Any) -> list[str]:
    if not isinstance(path, list) or not all(isinstance(key, str) for key in path):
        raise BadRequest(f"{where}: the path must be an array of strings")
    return path


def parse_type(where: str, crdt_type: Any, path: list[str]) -> str:
    if not isinstance(crdt_type, str) or crdt_type not in HANDLES:
        raise BadRequest(f"{where}: unknown crdt type {crdt_type!r:.40}")
    if not path and crdt_type != "or-map":
        raise BadRequest(f"{where}: an empty path is the entity's or-map, not a {crdt_type}")
    return crdt_type


def parse_argument(where: str, action: str, argument: Any) -> Any:
    if action in ("increment", "decrement") and (
        not isinstance(argument, int)
        or isinstance(argument, bool)
        or not 0 <= argument <= cella.UINT64_MAX
    ):
        raise BadRequest(f"{where}: {action} takes an integer in 0..2^64")
    if action == "vote" and not isinstance(argument, bool):
        raise BadRequest(f"{where}: vote takes a boolean")
    if action == "delete" and not isinstance(argument, str):
        raise BadRequest(f"{where}: delete takes a key (a string)")
    return argument


def handle_at(root: cella.ORMap, path: list[str], crdt_type: str) -> Any:
    """The handle of ``crdt_type`` on the data at ``path`` (the root map when it is empty)."""
    if not path:
        return root
    data = root
    for key in path[:-1]:
        data = data.map(key)
    return data.at(path[-1], HANDLES[crdt_type])


def run(handle: Any, action: str, argument: Any) -> None:
    if action in ("enable", "disable", "clear"):
        getattr(handle, action)()
    else:
        getattr(handle, action)(argument)


def read(handle: Any) -> Any:
    if isinstance(handle, cella.GSet):
        return handle.elements
    if isinstance(handle, cella.Flag):
        return handle.enabled
    return handle.value


Entity = cella.export(TckCrdt)
