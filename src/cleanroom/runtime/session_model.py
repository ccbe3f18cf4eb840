"""DESIGN §4 step 4's failure side: run model code on a request's tensors and turn what it raises into a
clean error that holds no plaintext.

Model code is not ours: its exceptions carry the input (a decoder's `doc`), its tracebacks hold frames
whose locals are plaintext, and its messages leave the process unsealed. This module is the boundary
where those are stripped, redacted and bounded; the session and the batch runner both call through it.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from typing import Any

from cleanroom.errors import CleanroomError, InvalidPayload
from cleanroom.memory.secure_buffer import SecureBuffer
from cleanroom.runtime.models import Model, RequestScope
from cleanroom.runtime.session_open import OpenedRequest
from cleanroom.scrubbers.logs import redact

log = logging.getLogger("cleanroom.runtime")


class ModelErrors:
    """An exception from model code means it could not take this input: 422, not 500.

    Use: ``with guard: return model.run(...)`` then ``raise guard.failure()`` after the block. The guard
    swallows the model's exception and the caller raises a clean one outside every exception handler, so
    nothing chains to the original: a decoder's error holds the whole input (`JSONDecodeError.doc`,
    `UnicodeDecodeError.object`), a traceback holds frames whose locals are plaintext, and Python sets
    `__context__` on any exception raised while another is handled (`raise ... from None` only hides it).
    Kept alive by a reference cycle, such a chain outlived the request until a garbage collection.
    A CleanroomError from model code (e.g. InvalidPayload) is kept, stripped of its traceback and chain,
    its message redacted and bounded (`public_model_message`).
    """

    def __init__(self, model: Model) -> None:
        self.model = model
        self.error: CleanroomError | None = None

    def __enter__(self) -> ModelErrors:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False  # no error, or KeyboardInterrupt/SystemExit: not ours to translate
        if isinstance(exc, CleanroomError):
            self.error = strip_exception(exc)
            self.error.message = public_model_message(exc.message)
            self.error.args = (self.error.message,)
        else:
            name = type(exc).__name__
            clear_exception_frames(exc)
            log.warning("model %s raised %s on a request", self.model.name, name)
            self.error = InvalidPayload(
                f"model {self.model.name!r} could not process this input ({name})", code="model_rejected_input"
            )
        return True

    def failure(self) -> CleanroomError:
        """The exception to raise after the `with` block (outside any handler, so it chains to nothing)."""
        assert self.error is not None, "the guarded block neither returned nor raised"
        return self.error


# A model's own error message goes back unsealed (the JSON error body), so it is kept short.
MAX_MODEL_MESSAGE_CHARS = 300


def public_model_message(message: str) -> str:
    """A model's error message as it may leave the process: redacted and bounded.

    The JSON error body travels outside the sealed envelope (a TLS-terminating proxy reads it), and model
    authors write messages like `f"cannot parse {text!r}"`. Secret and PII patterns are redacted, and the
    rest is cut at `MAX_MODEL_MESSAGE_CHARS`, so a message cannot carry the whole input out.
    """
    text = redact(str(message))
    if len(text) > MAX_MODEL_MESSAGE_CHARS:
        text = text[: MAX_MODEL_MESSAGE_CHARS - 1] + "…"
    return text


def clear_exception_frames(exc: BaseException) -> None:
    """Drop the locals of every finished frame in `exc`'s traceback and in those of the exceptions chained
    to it (`__context__`, `__cause__`), and the tracebacks themselves.

    Model code that keeps an exception in a local (a retry loop's `last_error`, a saved `sys.exc_info()`)
    makes its frame and that exception a reference cycle, which keeps the frame's locals (the model's `str`
    and tensor copies of the input, a decoder error's `doc`) alive after the request ended, until a
    garbage collection happens to run. Cleared here, they go when the exception does.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)  # an executing frame (ours) is skipped
        current.__traceback__ = None
        pending += [current.__context__, current.__cause__]


def strip_exception(exc: CleanroomError) -> CleanroomError:
    """`exc` without its traceback and chained exceptions (whose frames and fields may hold plaintext)."""
    clear_exception_frames(exc)
    exc.__traceback__ = None
    exc.__context__ = exc.__cause__ = None
    exc.__suppress_context__ = True
    return exc


def run_model(model: Model, payload: SecureBuffer, scope: RequestScope) -> memoryview:
    guard = ModelErrors(model)
    with guard:
        return model.run(payload, scope)
    raise guard.failure()


def run_model_batch(model: Model, requests: Sequence[OpenedRequest]) -> list[memoryview | BaseException]:
    """One forward pass over several requests of one tenant; the model returns one answer or one exception
    per request (a malformed request fails alone)."""
    run_batch = getattr(model, "run_batch")  # noqa: B009 - optional capability, checked by the caller
    guard = ModelErrors(model)
    with guard:
        answers: list[memoryview | BaseException] = run_batch(
            [r.payload for r in requests], [r.scope for r in requests]
        )
        return [strip_exception(a) if isinstance(a, CleanroomError) else a for a in answers]
    raise guard.failure()


def describe_error(exc: BaseException) -> str:
    return exc.code if isinstance(exc, CleanroomError) else type(exc).__name__
