"""Why a command did not succeed: the exceptions a handler raises to refuse a command, and the
ones the SDK raises when it detects a failure of the entity's own code or data."""

from __future__ import annotations

from typing import ClassVar, NoReturn

__all__ = [
    "BadRequest",
    "EntityError",
    "Failure",
    "Rejected",
    "UnknownCommand",
    "reject",
]


class Failure(Exception):
    """A command that did not succeed; nothing is persisted and no effect runs.

    Handlers raise one of the subclasses; the SDK reports it to the host as the failure of the
    same kind (``kind`` is the name of the WIT ``failure`` case).
    """

    kind: ClassVar[str] = "rejected"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = str(message)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Failure)
        return other.message == self.message

    def __hash__(self) -> int:
        return hash((type(self), self.message))


class Rejected(Failure):
    """A business rule said no: the message is shown to the caller (HTTP 400 ``rejected``)."""

    kind = "rejected"


class BadRequest(Failure):
    """The payload is not what the command expects (HTTP 400 ``bad_request``).

    The SDK raises it when a payload does not fit the handler's type hints; handlers may raise it
    for payloads they check themselves.
    """

    kind = "bad-request"


class UnknownCommand(Failure):
    """The entity has no command of this name (HTTP 404); the message is the command name."""

    kind = "unknown-command"


class EntityError(Rejected):
    """A failure of the entity's code or data rather than a business rule: misuse of the context
    (two forwards, a payload that is not JSON-serializable), or a state, event or reply that does
    not encode or decode. Reported as ``rejected`` with a message starting with ``entity error:``.
    """

    PREFIX: ClassVar[str] = "entity error: "

    def __init__(self, message: str) -> None:
        message = str(message)
        if not message.startswith(self.PREFIX):
            message = self.PREFIX + message
        super().__init__(message)


def reject(message: str) -> NoReturn:
    """Refuses the command with ``message`` (raises :class:`Rejected`)."""
    raise Rejected(message)
