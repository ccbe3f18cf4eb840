"""`sys.stdout` and `sys.stderr` through the redactor, for what a model prints rather than logs.

Why: `RedactingFilter` guards every log record, but a user model's `print(prompt)`, a library's warning
written straight to `sys.stderr`, or a worker thread's traceback (`threading.excepthook` prints the frame's
text) never pass through `logging`. `cleanroom serve` replaces both streams with a `RedactingTextStream`
after its log handlers are set up (those keep the original streams, so log lines are not scanned twice).

Lines are redacted whole by the streaming redactor (a secret printed in pieces — `print("key", key)` is four
writes — is one string when scanned; a PEM block is held to its END line). A partial line is held until its
newline, even across `flush()`: releasing it early could split a secret between two scans. It is released
at `close()`, at interpreter exit, and when it outgrows the streaming redactor's line bound.

What this cannot see: writes to file descriptors 1 and 2 that bypass Python's streams — C extensions,
`os.write(1, ...)`, child processes that inherit the descriptors. For those, pipe the process's output
through `cleanroom redact` (see docs/logging.md).
"""

from __future__ import annotations

import atexit
import contextlib
import io
import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

from cleanroom.scrubbers._redact_stream import StreamingRedactor

if TYPE_CHECKING:
    from collections.abc import Iterable

    from cleanroom.scrubbers._redact_engine import Redactor


class RedactingTextStream(io.TextIOBase):
    """A text stream that writes to `target` only what the redactor has scanned, one whole line at a time."""

    def __init__(self, target: TextIO, redactor: Redactor | None = None) -> None:
        super().__init__()
        self._target = target
        self._stream = StreamingRedactor(redactor)
        self._lock = threading.Lock()
        self._buffer = _RedactingBinaryStream(self)

    @property
    def target(self) -> TextIO:
        """The stream the redacted text goes to (the original `sys.stdout` / `sys.stderr`)."""
        return self._target

    # -- the file API that `print`, `traceback` and `warnings` use --------------------------------------
    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            if self.closed:
                raise ValueError("I/O operation on closed file.")
            out = self._stream.feed(text)
            if out:
                self._target.write(out)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:  # type: ignore[override]
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Flush what was already redacted; a partial line stays held (see the module docstring)."""
        if not self.closed:
            self._target.flush()

    def release(self) -> None:
        """Write out the held partial line and any held PEM block, redacted, and flush."""
        with self._lock:
            rest = self._stream.flush()
            if rest:
                self._target.write(rest)
        self._target.flush()

    def close(self) -> None:
        if not self.closed:
            self.release()
            super().close()  # the target is not ours to close

    # -- what callers ask a console stream ---------------------------------------------------------------
    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return bool(self._target.isatty())

    def fileno(self) -> int:
        """The target's descriptor (faulthandler and subprocess ask for it); writes to it bypass redaction."""
        return self._target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._target, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._target, "errors", None)

    @property
    def name(self) -> Any:
        return getattr(self._target, "name", "<redacted>")

    @property
    def line_buffering(self) -> bool:
        return bool(getattr(self._target, "line_buffering", False))

    @property
    def buffer(self) -> _RedactingBinaryStream:
        """Bytes written here are decoded and redacted like text (never passed to the target's buffer)."""
        return self._buffer


class _RedactingBinaryStream(io.RawIOBase):
    """`sys.stdout.buffer` for the redacting stream: bytes are decoded (undecodable ones shown escaped)."""

    def __init__(self, text: RedactingTextStream) -> None:
        super().__init__()
        self._text = text

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        raw = bytes(data)
        self._text.write(raw.decode(self._text.encoding, "backslashreplace"))
        return len(raw)

    def flush(self) -> None:
        self._text.flush()


_installed: list[tuple[str, TextIO]] = []  # (attribute of sys, the stream it held before)
_exit_hook_registered = False


def redact_standard_streams(redactor: Redactor | None = None) -> None:
    """Replace `sys.stdout` and `sys.stderr` by redacting streams over them (idempotent).

    The held partial lines are released at interpreter exit. `restore_standard_streams()` undoes it.
    """
    for name in ("stdout", "stderr"):
        current = getattr(sys, name)
        if current is None or isinstance(current, RedactingTextStream):
            continue
        _installed.append((name, current))
        setattr(sys, name, RedactingTextStream(current, redactor))
    global _exit_hook_registered
    if _installed and not _exit_hook_registered:
        atexit.register(_release_at_exit)
        _exit_hook_registered = True


def restore_standard_streams() -> None:
    """Put the original streams back, writing out what the redacting ones still hold."""
    while _installed:
        name, original = _installed.pop()
        current = getattr(sys, name)
        if isinstance(current, RedactingTextStream):
            current.close()
        setattr(sys, name, original)


def _release_at_exit() -> None:
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name, None)
        if isinstance(stream, RedactingTextStream):
            with contextlib.suppress(OSError, ValueError):  # a closed target: nothing more can be written
                stream.release()
