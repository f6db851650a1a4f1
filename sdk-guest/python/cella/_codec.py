"""JSON at the edges: encoding Python values (including dataclasses) to JSON, and decoding JSON
into the types a handler's hints ask for, with messages that say where a payload went wrong.

Decoders are compiled from type hints once, when an entity is exported (in a component that is
while the component is built, so commands pay nothing for it). Supported hints:

- ``Any``, ``object`` or no hint: the JSON value as parsed (dict, list, str, int, float, bool,
  None);
- ``str``, ``bool``, ``int`` (a JSON integer, not ``1.5``), ``float`` (any JSON number),
  ``None``; :data:`int64` and :data:`uint64` are ``int`` limited to the 64-bit ranges;
- ``list``, ``list[T]``, ``tuple[T, ...]``, ``tuple[A, B]``, ``dict``, ``dict[str, T]``;
- ``Optional[T]``, ``T | None``, ``Union[A, B]`` (the first alternative that fits wins),
  ``Literal[...]``, ``Annotated[T, ...]``;
- dataclasses: a JSON object with a key per field, named like the field unless
  ``Annotated[T, json_name("otherName")]`` says otherwise; fields with a default may be
  missing; unknown keys are ignored.
"""

from __future__ import annotations

import dataclasses
import json as _json
import math
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any

__all__ = [
    "DecodeError",
    "EncodeError",
    "INT64_MAX",
    "INT64_MIN",
    "UINT64_MAX",
    "decoder",
    "dumps",
    "int64",
    "json_fields",
    "json_name",
    "to_json",
    "uint64",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1

Decoder = Callable[[Any], Any]


class IntRange:
    """``Annotated`` metadata limiting an ``int`` to ``[low, high]``."""

    __slots__ = ("description", "low", "high")

    def __init__(self, description: str, low: int, high: int) -> None:
        self.description = description
        self.low = low
        self.high = high

    def __repr__(self) -> str:
        return f"IntRange({self.low}, {self.high})"


#: An ``int`` that must fit a signed 64-bit integer (the range of Rust's ``i64``).
int64 = Annotated[int, IntRange("a 64-bit signed integer", INT64_MIN, INT64_MAX)]
#: An ``int`` that must fit an unsigned 64-bit integer (the range of Rust's ``u64``).
uint64 = Annotated[int, IntRange("a 64-bit unsigned integer", 0, UINT64_MAX)]


class DecodeError(ValueError):
    """JSON that does not fit the expected type; ``path`` says where (``items[0].quantity``)."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def within(self, step: str) -> DecodeError:
        """The same error, one level further out (``step`` is ``.name`` or ``[3]``)."""
        return DecodeError(self.message, step + self.path)

    def __str__(self) -> str:
        if not self.path:
            return self.message
        return f"at `{self.path.lstrip('.')}`: {self.message}"


class EncodeError(TypeError):
    """A value that has no JSON form (a set, a NaN, a dict with non-string keys...)."""


class JsonName:
    """``Annotated`` metadata giving a dataclass field a JSON name of its own."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"a JSON name is a non-empty string, not {name!r}")
        self.name = name

    def __repr__(self) -> str:
        return f"json_name({self.name!r})"


def json_name(name: str) -> JsonName:
    """Names a dataclass field in JSON: ``product_id: Annotated[str, json_name("productId")]``."""
    return JsonName(name)


def _json_name(attr: str, hint: Any) -> str:
    """The JSON name of the field ``attr`` with the type hint ``hint``."""
    if typing.get_origin(hint) is Annotated:
        for meta in reversed(hint.__metadata__):
            if isinstance(meta, JsonName):
                return meta.name
    return attr


def json_fields(cls: type) -> list[tuple[str, str]]:
    """``(attribute name, JSON name)`` of every field of the dataclass ``cls`` that its
    constructor takes (``init=False`` fields are derived, not data), in order. Raises
    ``TypeError`` if the class's type hints do not resolve."""
    hints = _type_hints(cls, f"dataclass {cls.__qualname__}")
    return [
        (f.name, _json_name(f.name, hints.get(f.name))) for f in dataclasses.fields(cls) if f.init
    ]


# ---------------------------------------------------------------------------------------------
# Encoding


#: The JSON fields of the dataclasses seen so far (those of exported entities are filled in
#: when they are exported).
_FIELDS: dict[type, list[tuple[str, str]]] = {}


def _fields_of(cls: type) -> list[tuple[str, str]]:
    names = _FIELDS.get(cls)
    if names is None:
        try:
            names = json_fields(cls)
        except TypeError as e:
            raise EncodeError(str(e)) from None
        _FIELDS[cls] = names
    return names


def to_json(value: Any) -> Any:
    """``value`` as plain JSON data (dict, list, str, int, float, bool, None).

    Dataclass instances become objects of their fields (by JSON name, in declaration order),
    tuples become lists. Raises :class:`EncodeError` for anything else.
    """
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is int:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise EncodeError(f"{value} is not a JSON number")
        return value
    if kind is list or kind is tuple:
        return [to_json(item) for item in value]
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise EncodeError(
                    f"a dict key must be a string to be JSON, not {type(key).__name__} {key!r}"
                )
            out[key] = to_json(item)
        return out
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        custom = getattr(kind, "__cella_to_json__", None)
        if custom is not None:
            return custom(value)
        return {name: to_json(getattr(value, attr)) for attr, name in _fields_of(kind)}
    # Subclasses of the JSON types (IntEnum, str enums, OrderedDict...).
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        return to_json(float(value))
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return to_json(dict(value))
    raise EncodeError(f"a {kind.__name__} is not JSON-serializable: {value!r:.80}")


def dumps(value: Any) -> str:
    """``value`` as compact JSON text (UTF-8 characters as they are, as Rust's serde_json)."""
    return _json.dumps(to_json(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# ---------------------------------------------------------------------------------------------
# Decoding


def _excerpt(value: Any) -> str:
    """A short description of a JSON value for error messages."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = _json.dumps(value, ensure_ascii=False)
    if len(text) > 40:
        text = text[:37] + "..."
    if isinstance(value, str):
        return f"the string {text}"
    return text


def _mismatch(expected: str, value: Any) -> DecodeError:
    return DecodeError(f"expected {expected}, got {_excerpt(value)}")


def _is_int(value: Any) -> bool:
    return type(value) is int or (isinstance(value, int) and not isinstance(value, bool))


def _identity(value: Any) -> Any:
    return value


def _decode_str(value: Any) -> Any:
    if isinstance(value, str):
        return value
    raise _mismatch("a string", value)


def _decode_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    raise _mismatch("a boolean", value)


def _decode_int(value: Any) -> Any:
    if _is_int(value):
        return value
    raise _mismatch("an integer", value)


def _decode_float(value: Any) -> Any:
    if isinstance(value, float) or _is_int(value):
        return float(value)
    raise _mismatch("a number", value)


def _decode_none(value: Any) -> Any:
    if value is None:
        return None
    raise _mismatch("null", value)


def _decode_list(value: Any) -> Any:
    if isinstance(value, list):
        return value
    raise _mismatch("a list", value)


def _decode_dict(value: Any) -> Any:
    if isinstance(value, dict):
        return value
    raise _mismatch("an object", value)


_SIMPLE: dict[Any, Decoder] = {
    Any: _identity,
    object: _identity,
    str: _decode_str,
    bool: _decode_bool,
    int: _decode_int,
    float: _decode_float,
    None: _decode_none,
    type(None): _decode_none,
    list: _decode_list,
    dict: _decode_dict,
}

_DESCRIPTIONS: dict[Any, str] = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    None: "null",
    type(None): "null",
    list: "a list",
    dict: "an object",
}


def describe(hint: Any) -> str:
    """How an error message names what ``hint`` expects."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        for meta in hint.__metadata__:
            if isinstance(meta, IntRange):
                return meta.description
        return describe(typing.get_args(hint)[0])
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "an object"
    if origin is typing.Literal:
        return " or ".join(_json.dumps(v) for v in typing.get_args(hint))
    if _is_union(hint):
        return " or ".join(describe(arg) for arg in typing.get_args(hint))
    if getattr(origin if origin is not None else hint, "__cella_decoder__", None) is not None:
        return 'an object {"ok": ...} or {"error": ...}'
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return f"an object ({hint.__name__})"
    return _DESCRIPTIONS.get(hint, getattr(hint, "__name__", str(hint)))


def _is_union(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    return origin is typing.Union or origin is types.UnionType


class _Compiler:
    """Compiles type hints into decoders; dataclasses are compiled once (and may be recursive)."""

    def __init__(self) -> None:
        self.dataclasses: dict[type, Decoder] = {}

    def compile(self, hint: Any, where: str) -> Decoder:
        try:
            simple = _SIMPLE.get(hint)
        except TypeError:  # an unhashable hint
            simple = None
        if simple is not None:
            return simple
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin is Annotated:
            return self._annotated(hint, where)
        if origin is list:
            return self._list(args[0] if args else Any, where)
        if origin is tuple:
            return self._tuple(args, where)
        if origin is dict:
            return self._dict(args, where)
        if origin is typing.Literal:
            return self._literal(args)
        if _is_union(hint):
            return self._union(hint, where)
        # A class with a JSON form of its own (cella.CallReply, CallReply[T]).
        custom = getattr(origin if origin is not None else hint, "__cella_decoder__", None)
        if custom is not None:
            return custom(args, lambda inner: self.compile(inner, where))  # type: ignore[no-any-return]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            return self._dataclass(hint)
        raise TypeError(
            f"{where}: cella cannot decode JSON into `{describe(hint)}`; use str, int, float, "
            "bool, None, list[...], tuple[...], dict[str, ...], Optional/Union, Literal, a "
            "dataclass, or Any"
        )

    def _annotated(self, hint: Any, where: str) -> Decoder:
        inner = self.compile(typing.get_args(hint)[0], where)
        ranges = [m for m in hint.__metadata__ if isinstance(m, IntRange)]
        if not ranges:
            return inner
        limit = ranges[0]

        def decode_range(value: Any) -> Any:
            if not _is_int(value) or not limit.low <= value <= limit.high:
                raise _mismatch(limit.description, value)
            return inner(value)

        return decode_range

    def _list(self, item_hint: Any, where: str) -> Decoder:
        item = self.compile(item_hint, where)
        if item is _identity:
            return _decode_list

        def decode_list(value: Any) -> Any:
            if not isinstance(value, list):
                raise _mismatch("a list", value)
            out = []
            for i, element in enumerate(value):
                try:
                    out.append(item(element))
                except DecodeError as e:
                    raise e.within(f"[{i}]") from None
            return out

        return decode_list

    def _tuple(self, args: tuple[Any, ...], where: str) -> Decoder:
        if len(args) == 2 and args[1] is Ellipsis:
            as_list = self._list(args[0], where)
            return lambda value: tuple(as_list(value))
        if args == ((),):  # tuple[()]
            args = ()
        if not args:
            return lambda value: tuple(_decode_list(value))
        items = [self.compile(arg, where) for arg in args]

        def decode_tuple(value: Any) -> Any:
            if not isinstance(value, list) or len(value) != len(items):
                raise _mismatch(f"a list of {len(items)}", value)
            out = []
            for i, (item, element) in enumerate(zip(items, value, strict=False)):
                try:
                    out.append(item(element))
                except DecodeError as e:
                    raise e.within(f"[{i}]") from None
            return tuple(out)

        return decode_tuple

    def _dict(self, args: tuple[Any, ...], where: str) -> Decoder:
        if not args:
            return _decode_dict
        if args[0] is not str and args[0] is not Any:
            raise TypeError(f"{where}: JSON object keys are strings; use dict[str, ...]")
        item = self.compile(args[1], where)
        if item is _identity:
            return _decode_dict

        def decode_dict(value: Any) -> Any:
            if not isinstance(value, dict):
                raise _mismatch("an object", value)
            out = {}
            for key, element in value.items():
                try:
                    out[key] = item(element)
                except DecodeError as e:
                    raise e.within(f".{key}") from None
            return out

        return decode_dict

    def _literal(self, allowed: tuple[Any, ...]) -> Decoder:
        expected = " or ".join(_json.dumps(v) for v in allowed)

        def decode_literal(value: Any) -> Any:
            for candidate in allowed:
                if value == candidate and type(value) is type(candidate):
                    return value
            raise _mismatch(expected, value)

        return decode_literal

    def _union(self, hint: Any, where: str) -> Decoder:
        args = typing.get_args(hint)
        optional = type(None) in args
        alternatives = [self.compile(arg, where) for arg in args if arg is not type(None)]
        expected = describe(hint)

        def decode_union(value: Any) -> Any:
            if value is None and optional:
                return None
            if len(alternatives) == 1:
                return alternatives[0](value)
            for alternative in alternatives:
                try:
                    return alternative(value)
                except DecodeError:
                    continue
            raise _mismatch(expected, value)

        return decode_union

    def _dataclass(self, cls: type) -> Decoder:
        known = self.dataclasses.get(cls)
        if known is not None:
            return known
        fields: list[tuple[str, str, Decoder, bool]] = []

        def decode_dataclass(value: Any) -> Any:
            if not isinstance(value, dict):
                raise _mismatch(f"an object ({cls.__name__})", value)
            kwargs = {}
            for attr, name, decode, required in fields:
                if name in value:
                    try:
                        kwargs[attr] = decode(value[name])
                    except DecodeError as e:
                        raise e.within(f".{name}") from None
                elif required:
                    raise DecodeError(f"missing field `{name}`")
            try:
                return cls(**kwargs)
            except (TypeError, ValueError) as e:
                raise DecodeError(f"{cls.__name__}: {e}") from None

        # Registered before its fields are compiled, so that recursive dataclasses work.
        self.dataclasses[cls] = decode_dataclass
        hints = _type_hints(cls, f"dataclass {cls.__qualname__}")
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            hint = hints.get(f.name, Any)
            decode = self.compile(hint, f"field `{f.name}` of {cls.__qualname__}")
            fields.append((f.name, _json_name(f.name, hint), decode, required))
        _FIELDS.setdefault(cls, [(attr, name) for attr, name, _, _ in fields])
        return decode_dataclass


def _type_hints(obj: Any, what: str) -> dict[str, Any]:
    """``typing.get_type_hints`` with ``Annotated`` kept, and a clear error for hints that do
    not resolve (a class defined inside a function, a typo)."""
    try:
        return typing.get_type_hints(obj, include_extras=True)
    except Exception as e:  # NameError, or anything a string annotation may raise
        raise TypeError(
            f"cannot resolve the type hints of {what}: {e}; define the types they name at "
            "module level"
        ) from e


_COMPILER = _Compiler()


def decoder(hint: Any, where: str = "a type hint") -> Decoder:
    """The decoder of JSON data into ``hint`` (see the module docs); raises ``TypeError`` for a
    hint it cannot decode into. A decoder raises :class:`DecodeError`."""
    return _COMPILER.compile(hint, where)


def type_hints(obj: Any, what: str) -> dict[str, Any]:
    """The resolved type hints of a function or class (``Annotated`` kept)."""
    return _type_hints(obj, what)
