"""Hostile input must not crash the log redactor, and a redactor that does fail must drop the text.

A JWT-shaped token whose header decodes to ~1000 nested JSON arrays made `json.loads` in the JWT validator
raise RecursionError; the logging filter let it escape, so a crafted query string could break the access
log line of a request (and `cleanroom redact` stopped on such a line).
"""

from __future__ import annotations

import base64
import io
import logging
from typing import Any

import pytest

from cleanroom.scrubbers.logs import UNREDACTABLE, RedactingFilter, redact, redact_stream

PAYLOAD = "eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"


def nested_header_token(depth: int = 3000) -> str:
    header = base64.urlsafe_b64encode(b'{"a":' + b"[" * depth).decode().rstrip("=")
    assert header.startswith("eyJ")  # looks like every JWT
    return f"{header}.{PAYLOAD}"


@pytest.mark.parametrize("line", ["hello {tok} end", "GET /v1/x?access_token={tok} HTTP/1.1", "{tok}"])
def test_deeply_nested_jwt_header_is_redacted_not_a_crash(line: str) -> None:
    token = nested_header_token()
    out = redact(line.format(tok=token))
    assert token not in out
    assert PAYLOAD not in out


def test_streaming_redactor_survives_the_same_token() -> None:
    token = nested_header_token()
    out = io.StringIO()
    redact_stream(io.StringIO(f"a {token}\nsecond line\n"), out)
    assert token not in out.getvalue()
    assert out.getvalue().endswith("second line\n")


class ExplodingRedactor:
    def redact(self, text: str) -> str:
        raise RuntimeError("redactor bug")


def make_logger(name: str, redactor: Any) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s %(user_field)s"))
    handler.addFilter(RedactingFilter(redactor))
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_a_failing_redactor_drops_the_text_and_never_raises() -> None:
    logger, stream = make_logger("cleanroom.test.fail_closed", ExplodingRedactor())
    secret = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
    try:
        raise ValueError(f"boom {secret}")
    except ValueError:
        logger.exception("charging with %s", secret, extra={"user_field": secret})  # must not raise
    text = stream.getvalue()
    assert secret not in text
    assert text.startswith("ERROR cleanroom.test.fail_closed ")
    assert UNREDACTABLE in text
    assert "Traceback" not in text


def test_a_working_redactor_is_unaffected_by_the_guard() -> None:
    logger, stream = make_logger("cleanroom.test.guard_ok", None)
    logger.info("mail %s", "jane.doe@example.com", extra={"user_field": "ok"})
    assert stream.getvalue() == "INFO cleanroom.test.guard_ok mail [REDACTED:EMAIL] ok\n"
