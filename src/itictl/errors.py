"""The error hierarchy and the exit codes it maps to (documented in docs/exit-codes.md).

Every error a user can cause is an `ItictlError` subclass carrying a one-line message and a hint
that says what to do. The CLI prints `error: <message> (hint: <hint>)` on stderr and exits with the
class's code; the traceback is shown only with ITICTL_DEBUG=1.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug: unexpected exception
EXIT_USAGE = 2  # bad options or arguments
EXIT_NOT_FOUND = 3  # unknown model alias, ref, data file, artifact
EXIT_BAD_INPUT = 4  # malformed data file, invalid values (NaN alpha, K out of range, ...)
EXIT_STORE = 5  # corrupt object, store not writable, disk full, lock problems
EXIT_REMOTE = 6  # network unreachable / offline / remote service error (Hub, OpenAI)
EXIT_AUTH = 7  # missing or rejected credentials
EXIT_UNSUPPORTED = 8  # unsupported architecture or model format
EXIT_INTERRUPTED = 130  # Ctrl-C

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_INTERNAL: "internal error (a bug; rerun with ITICTL_DEBUG=1 and report the traceback)",
    EXIT_USAGE: "usage error: bad option or argument",
    EXIT_NOT_FOUND: "not found: unknown model alias, ref, artifact or data file",
    EXIT_BAD_INPUT: "bad input: malformed data file or invalid parameter value",
    EXIT_STORE: "store error: corrupt object, read-only or full store, lock failure",
    EXIT_REMOTE: "remote error: network unreachable, offline mode, or a remote service failed",
    EXIT_AUTH: "authentication error: token missing or rejected",
    EXIT_UNSUPPORTED: "unsupported: model architecture or file format itictl cannot handle",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); partial work is kept under the store's tmp/ only",
}


class ItictlError(Exception):
    """Base class: a user-facing error with a one-line message, a hint and an exit code."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = self.message.replace("\n", " ").strip()
        if self.hint:
            text += f" (hint: {self.hint.replace(chr(10), ' ').strip()})"
        return text


class UsageError(ItictlError):
    exit_code = EXIT_USAGE


class NotFoundError(ItictlError):
    exit_code = EXIT_NOT_FOUND


class BadInputError(ItictlError):
    exit_code = EXIT_BAD_INPUT


class StoreError(ItictlError):
    exit_code = EXIT_STORE


class CorruptObjectError(StoreError):
    pass


class RemoteError(ItictlError):
    exit_code = EXIT_REMOTE


class AuthError(ItictlError):
    exit_code = EXIT_AUTH


class UnsupportedError(ItictlError):
    exit_code = EXIT_UNSUPPORTED


def describe(e: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) for any exception: the CLI's last resort and the line a
    failing torchrun rank sends to the others."""
    if isinstance(e, ItictlError):
        return e.exit_code, e.one_line()
    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted (partial work kept under the store's tmp/; rerun to resume)"
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":  # torch's CUDA OOM too
        return EXIT_INTERNAL, "out of memory (hint: lower --batch-tokens or use a smaller --dtype)"
    text = f"{e.__class__.__name__}: {e}".replace("\n", " ")
    if len(text) > 300:
        text = text[:297] + "..."
    return EXIT_INTERNAL, f"internal error: {text} (hint: rerun with ITICTL_DEBUG=1 and report it)"
