"""The error hierarchy every rade package raises, and the exit codes the command maps them to.

Errors are written for the user who will read them: `message` says what was wrong and where, `hint`
what to do about it. Low-level errors (OSError, yaml, msgpack) are translated into one of these where
they happen; the command catches `RadeError` once and prints one line; daemons catch per message and keep
serving. Each package defines its own subclasses next to the code that raises them (the engine's
`ImageError`, `LaunchError`...) but they all derive from `RadeError`.
"""

from __future__ import annotations

# Exit codes, as Docker's so that scripts port over.
EXIT_USAGE = 2
EXIT_RADE = 125
EXIT_CANNOT_RUN = 126
EXIT_NOT_FOUND = 127


class RadeError(Exception):
    """Something rade could not do, with a message (and optional hint) for the user."""

    exit_code: int = EXIT_RADE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class UsageError(RadeError):
    """The command line itself is wrong: a missing argument, a malformed option value."""

    exit_code = EXIT_USAGE


class UnitError(RadeError):
    """A size, duration, CPU count, CPU list or array range that does not parse."""

    exit_code = EXIT_USAGE


class StateError(RadeError):
    """An illegal state transition: a bug or a stale update, never silently applied."""


class ProtocolError(RadeError):
    """A wire frame that cannot be decoded: malformed, truncated, oversized, unknown type or version."""
