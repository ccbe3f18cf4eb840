"""What `Client` raises: the server's refusals (`ClientError`), answers that are not answers
(`UnexpectedResponse`) and a network that failed (`ConnectionFailed`). Server-chosen text in them is made
safe to log first (`_safe_text`): bounded, one line, no terminal or bidi control characters."""

from __future__ import annotations

import re
from typing import Any

_CODE_RE = re.compile(r"^[a-z0-9_]{1,64}$")
MAX_ERROR_MESSAGE_CHARS = 500

_UNSAFE_CHARS_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _safe_text(text: str, limit: int = MAX_ERROR_MESSAGE_CHARS) -> str:
    """Server-chosen text made safe to log: bounded, one line, no terminal or bidi control characters."""
    cut = text[: limit + 1]
    cleaned = _UNSAFE_CHARS_RE.sub("?", cut[:limit])
    return cleaned + "..." if len(cut) > limit else cleaned


class ClientError(Exception):
    """The server refused a request; `status` and `code` are the server's.

    `message` is the server's text, cut to 500 characters with control characters replaced (safe to log);
    a `code` that is not a plain lowercase identifier is reported as `http_error`.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        code = code if _CODE_RE.match(code) else "http_error"
        message = _safe_text(message)
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle and copy rebuild an exception as cls(*self.args): one string, not (status, code, message),
        # so a ClientError crossing a process pool (or copy.copy) was a TypeError in place of the error
        return _rebuild, (type(self), self.args, dict(self.__dict__))


def _rebuild(cls: type[ClientError], args: tuple[Any, ...], state: dict[str, Any]) -> ClientError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class UnexpectedResponse(ClientError):
    """The server (or something on the way) answered with something that is not a valid answer.

    A redirect, a success without a sealed body, a body over the client's size limit, a response that
    ends too late, a malformed public-key document. Nothing of it is returned as the model's answer.
    """

    def __init__(self, status: int, message: str, code: str = "unexpected_response") -> None:
        super().__init__(status, code, message)


class ConnectionFailed(ClientError):
    """The network failed: no complete answer came back. `status` is the HTTP status if it had arrived,
    else 0; the httpx error is `__cause__`.

    `may_have_been_processed` is what a retry decision needs. False (code `connection_failed`): the request
    never reached the server whole — connection refused, DNS failure, TLS handshake or certificate failure,
    a proxy's refusal, a connect timeout, a failed write. True: it was sent and the answer broke (code
    `connection_lost`: reset, truncated, malformed) or did not come within `timeout_s` (`response_timeout`):
    the model may have run. A retry seals a new request, so it is never refused as a replay.

    Code written before this class (the network was `httpx.HTTPError`) keeps working: each instance is
    also an instance of the httpx error it replaces (`except httpx.ConnectError` still catches a refusal).
    """

    def __init__(self, status: int, code: str, message: str, *, may_have_been_processed: bool) -> None:
        super().__init__(status, code, message)
        self.may_have_been_processed = may_have_been_processed
