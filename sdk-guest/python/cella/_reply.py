"""The outcome of a call, as the command named as its reply route receives it: :class:`CallReply`
(a type hint for the reply route's payload) and :class:`CallError`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from . import _codec

__all__ = ["CallError", "CallReply"]

T = TypeVar("T")

_EXPECTED = 'expected {"ok": <reply>} or {"error": {"code": ..., "message": ...}}'


@dataclass(frozen=True)
class CallError:
    """Why a call did not succeed: ``code`` is one of ``rejected``, ``bad_request``,
    ``unknown_command``, ``unknown_type``, ``failed``; ``message`` says more (for ``rejected``,
    the target's rejection message)."""

    code: str
    message: str


@dataclass(frozen=True)
class CallReply(Generic[T]):
    """The outcome of a :meth:`~cella.Context.call` made with ``reply_to``: the payload of the
    reply route's command, ``{"ok": <the target's reply>}`` or
    ``{"error": {"code": C, "message": M}}`` in JSON. Use it as the type hint of the handler's
    payload; ``CallReply[T]`` also decodes the reply into ``T``::

        @cella.command
        def credited(self, outcome: CallReply[int], ctx: Context) -> None:
            if outcome.error is not None:
                self.failures.append(f"{ctx.correlation}: {outcome.error.message}")
            else:
                self.balance = outcome.ok

    A payload of another shape is a ``bad-request``. ``ctx.correlation`` is the correlation the
    call gave. In tests, ``CallReply(ok=5)`` and ``CallReply(error=CallError("rejected", "no"))``
    encode as the envelopes the host sends.
    """

    #: The target's reply (``None`` for an error, or for a reply that is ``null``).
    ok: T | None = None
    #: Why the call failed; ``None`` if it succeeded.
    error: CallError | None = None

    def __post_init__(self) -> None:
        if self.error is not None and self.ok is not None:
            raise ValueError("a CallReply has either `ok` or `error`, not both")
        if self.error is not None and not isinstance(self.error, CallError):
            raise TypeError(f"CallReply.error must be a CallError, not {self.error!r}")

    @property
    def is_ok(self) -> bool:
        """Whether the call succeeded (then :attr:`ok` is its reply)."""
        return self.error is None

    def __cella_to_json__(self) -> Any:
        if self.error is not None:
            return {"error": {"code": self.error.code, "message": self.error.message}}
        return {"ok": _codec.to_json(self.ok)}

    @classmethod
    def __cella_decoder__(cls, args: tuple[Any, ...], compile_hint: Any) -> _codec.Decoder:
        """The decoder of ``CallReply`` (``args`` empty) or ``CallReply[T]``."""
        decode_ok = compile_hint(args[0]) if args else _codec._identity

        def decode(value: Any) -> Any:
            if not isinstance(value, dict) or len(value) != 1:
                raise _codec.DecodeError(f"{_EXPECTED}, got {_codec._excerpt(value)}")
            ((name, content),) = value.items()
            if name == "ok":
                try:
                    return cls(ok=decode_ok(content))
                except _codec.DecodeError as e:
                    raise e.within(".ok") from None
            if name == "error":
                if not isinstance(content, dict):
                    raise _codec._mismatch("an object", content).within(".error")
                fields = []
                for field in ("code", "message"):
                    if field not in content:
                        raise _codec.DecodeError(f"missing field `{field}`", ".error")
                    if not isinstance(content[field], str):
                        raise _codec._mismatch("a string", content[field]).within(f".error.{field}")
                    fields.append(content[field])
                return cls(error=CallError(code=fields[0], message=fields[1]))
            raise _codec.DecodeError(f"{_EXPECTED}, got the key `{name}`")

        return decode
