"""RedactingFilter, install_redaction and a real server: secrets never reach any log output."""

# ruff: noqa: E501  (test data: long literal tokens and log lines)

from __future__ import annotations

import io
import json
import logging
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import safetensors.torch
import torch

from cleanroom.logging_setup import JsonFormatter, install_redaction, logging_config
from cleanroom.scrubbers.logs import RedactingFilter, redact
from cleanroom.scrubbers.stdio import RedactingTextStream, restore_standard_streams

SECRET = "ghp_" + "Ab1" * 12
EMAIL = "alice.smith@example.com"


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("t")
    return logger.makeRecord("t", logging.INFO, __file__, 1, msg, args or None, None, extra=extra or None)


def test_filter_formats_args_then_clears_them() -> None:
    rec = _record("token %s for %s", SECRET, EMAIL)
    assert RedactingFilter().filter(rec)
    assert rec.args is None
    assert rec.getMessage() == "token [REDACTED:GITHUB_TOKEN] for [REDACTED:EMAIL]"


def test_filter_redacts_extra_fields_keeping_types() -> None:
    rec = _record("x", user=EMAIL, count=3, headers={"authorization": f"Bearer {SECRET}", "n": [1, EMAIL]},
                  db_password="hunter2", pin_secret=1234)  # fmt: skip
    RedactingFilter().filter(rec)
    assert rec.db_password == "[REDACTED:PASSWORD]" and rec.pin_secret == "[REDACTED:SECRET]"  # type: ignore[attr-defined]
    assert rec.user == "[REDACTED:EMAIL]" and rec.count == 3  # type: ignore[attr-defined]
    assert SECRET not in json.dumps(rec.headers) and rec.headers["n"][0] == 1  # type: ignore[attr-defined]


def test_filter_redacts_exception_and_stack() -> None:
    try:
        raise ValueError(f"could not connect with password={SECRET}")
    except ValueError:
        rec = logging.getLogger("t").makeRecord("t", logging.ERROR, __file__, 1, "failed", None, __import__("sys").exc_info(),
                                               sinfo=f"Stack (most recent call last):\n  token {SECRET}")  # fmt: skip
    RedactingFilter().filter(rec)
    assert rec.exc_info is None and rec.exc_text and SECRET not in rec.exc_text
    assert "ValueError" in rec.exc_text and rec.stack_info and SECRET not in rec.stack_info
    out = logging.Formatter().format(rec)
    assert SECRET not in out and "ValueError" in out


def test_extra_cannot_forge_the_redacted_mark() -> None:
    rec = _record(f"token {SECRET}", _cleanroom_redacted=True)
    RedactingFilter().filter(rec)
    assert SECRET not in rec.getMessage()


def test_clean_line_is_cheap() -> None:
    """Median of a clean 200-byte line through the filter (the benchmark reports the real number; this
    bound is loose because the test machine is shared)."""
    flt = RedactingFilter()
    msg = ("2025-05-01 request completed request_id=9f1c2b7e-4a1d-4c2e-9b3a-1f2e3d4c5b6a model=minilm "
           "status=200 duration_ms=12.3 path=/v1/models/minilm/infer bytes=48213 tenant=acme ver=1.2.3 ok queue=0")  # fmt: skip
    assert len(msg) >= 190
    flt.filter(_record(msg))
    times = []
    for _ in range(2000):
        rec = _record(msg)
        t0 = time.perf_counter_ns()
        flt.filter(rec)
        times.append(time.perf_counter_ns() - t0)
    assert statistics.median(times) / 1000 < 40


@pytest.fixture
def clean_logging() -> Iterator[None]:
    names = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "app")
    saved = {
        n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level, logging.getLogger(n).propagate) for n in names
    }
    last = logging.lastResort
    yield
    restore_standard_streams()
    for n, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(n)
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
    logging.lastResort = last
    if last is not None:
        for f in [f for f in last.filters if isinstance(f, RedactingFilter)]:
            last.removeFilter(f)


def test_install_redaction_on_handlers(clean_logging: None) -> None:
    root_buf, access_buf = io.StringIO(), io.StringIO()
    logging.getLogger().handlers[:] = [logging.StreamHandler(root_buf)]
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = [logging.StreamHandler(access_buf)]
    access.propagate = False
    install_redaction("debug", json_logs=True)
    install_redaction("debug", json_logs=True)  # idempotent
    assert all(sum(isinstance(f, RedactingFilter) for f in h.filters) == 1
               for h in logging.getLogger().handlers + access.handlers)  # fmt: skip
    logging.getLogger("app.child").warning("user %s token %s", EMAIL, SECRET, extra={"api_key": "k3y-abc"})
    access.info('%s - "%s %s HTTP/%s" %d', "203.0.113.9", "GET", f"/x?password={SECRET}", "1.1", 200)
    for buf in (root_buf, access_buf):
        text = buf.getvalue()
        assert text and SECRET not in text and EMAIL not in text and "203.0.113.9" not in text
        for line in text.splitlines():
            json.loads(line)
    assert "k3y-abc" not in root_buf.getvalue()


def test_install_redaction_wraps_stdout_and_stderr_but_not_the_log_handlers(
    clean_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    install_redaction("info", json_logs=False)
    install_redaction("info", json_logs=False)  # idempotent: one wrapper each, not a chain
    assert isinstance(sys.stdout, RedactingTextStream) and not isinstance(sys.stdout.target, RedactingTextStream)
    assert isinstance(sys.stderr, RedactingTextStream) and not isinstance(sys.stderr.target, RedactingTextStream)
    for handler in logging.getLogger().handlers:
        assert not isinstance(getattr(handler, "stream", None), RedactingTextStream), "log lines scanned twice"
    print("user", EMAIL, "token", SECRET)
    print("held partial", SECRET, end="", flush=True)
    sys.stderr.write(f"warning: {SECRET}\n")
    out, err = capsys.readouterr()
    assert "user [REDACTED:EMAIL] token [REDACTED:" in out and "warning: [REDACTED:" in err, (out, err)
    assert "held partial" not in out  # a partial line is held, even across flush()
    restore_standard_streams()  # releases what was held
    assert sys.stdout is not None and not isinstance(sys.stdout, RedactingTextStream)
    rest, _ = capsys.readouterr()
    assert rest == "held partial [REDACTED:GITHUB_TOKEN]", rest
    assert SECRET not in out + err + rest


def test_redacting_stream_scans_whole_lines_whatever_the_writes() -> None:
    target = io.StringIO()
    stream = RedactingTextStream(target)
    line = f"user {EMAIL} token {SECRET} password=hunter2-Pa55 card 4111 1111 1111 1111\n"
    for i in range(len(line)):  # one character per write: no piece of a secret is scanned alone
        stream.write(line[i])
    stream.buffer.write(f"bytes {SECRET} \xff\n".encode("latin-1"))  # not UTF-8: escaped, still redacted
    stream.writelines(["-----BEGIN PRIVATE KEY-----\n", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"])
    stream.flush()
    assert "MIIEvQ" not in target.getvalue()  # a PEM block is held to its END line
    stream.write("-----END PRIVATE KEY-----\nlast words " + SECRET)
    stream.close()
    text = target.getvalue()
    assert text.startswith(redact(line)), text
    assert SECRET not in text and EMAIL not in text and "hunter2" not in text and "MIIEvQ" not in text, text
    assert "bytes [REDACTED:" in text and "last words [REDACTED:" in text, text
    assert text.count("\n") == 5
    with pytest.raises(ValueError):
        stream.write("after close")
    with pytest.raises(TypeError):
        stream.write(b"bytes to a text stream")  # type: ignore[arg-type]


def test_redacting_twice_changes_nothing() -> None:
    """A handler someone adds later on the wrapped `sys.stderr` redacts a line, then the stream scans it
    again: placeholders must survive a second pass unchanged."""
    from redaction_corpus import generate

    for sample in generate(seed=3, per_type=20, per_negative=10):
        once = redact(sample.line)
        assert redact(once) == once, (sample.line, once)


def test_logging_config_dict_works(clean_logging: None) -> None:
    import logging.config

    cfg = logging_config("info", json_logs=True)
    buf = io.StringIO()
    cfg["handlers"]["default"]["stream"] = buf
    logging.config.dictConfig(cfg)
    logging.getLogger("uvicorn.error").error("bad header Authorization: Bearer %s", SECRET)
    out = buf.getvalue()
    assert out and SECRET not in out and "[REDACTED:" in out
    assert isinstance(logging.getLogger().handlers[0].formatter, JsonFormatter)


def test_server_logs_carry_no_secret(tmp_path: Path) -> None:
    """A real `cleanroom serve`: secrets in headers, query strings and error paths never reach its log."""
    from support.server import server_env, start_server

    server = start_server(tmp_path / "data", "--models", "echo", "--model", "chatty=support.hold_model:chatty_factory",
                          tls=False, env=server_env(CLEANROOM_LOG_LEVEL="debug"))  # fmt: skip
    secrets = [SECRET, EMAIL, "hunter2-Pa55", "sk-ant-api03-" + "x" * 93 + "AA"]
    try:
        api_key = server.create_tenant("alpha")["api_key"]
        secrets.append(api_key)
        with httpx.Client(base_url=server.url, timeout=30) as http:
            http.post("/v1/models/echo/infer", content=f"not sealed {SECRET}".encode(),
                      headers={"Authorization": f"Bearer {api_key}", "X-Api-Key": secrets[3],
                               "Content-Type": "application/vnd.cleanroom.sealed"})  # fmt: skip
            http.post("/v1/models/echo/infer", content=b"x", headers={"Authorization": f"Bearer {SECRET}"})
            http.get(f"/v1/nope?password=hunter2-Pa55&email={EMAIL}&token={SECRET}")
            http.get("/healthz", headers={"Cookie": f"session={SECRET}"})
        # A model that prints what it was given (stdout, stderr in pieces, the binary buffer, a thread's
        # traceback): the secrets in its input reach the log only redacted.
        said = f"token {SECRET} mail {EMAIL} password=hunter2-Pa55".encode()
        payload = safetensors.torch.save({"input": torch.tensor(list(said), dtype=torch.uint8)})
        assert server.client("alpha").infer("chatty", payload)
    finally:
        server.stop()
    log = server.log_path.read_text(errors="replace")
    assert "model saw: token [REDACTED:" in log and "raw token [REDACTED:" in log, log[-3000:]
    assert "RuntimeError: cannot handle token [REDACTED:" in log, log[-3000:]
    assert "/v1/models/echo/infer" in log, f"no access log lines were written:\n{log[-2000:]}"
    for secret in secrets:
        assert secret not in log, f"{secret[:8]}... leaked into the server log"
