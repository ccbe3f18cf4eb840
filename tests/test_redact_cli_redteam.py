"""Red-team tests of `cleanroom redact`, the streaming log redactor operators put in front of other
people's logs (`kubectl logs ... | cleanroom redact`, `journalctl -f | cleanroom redact`).

The contract: one line out per line in, bytes out as they came in except the findings, and the output of
a stream is what `redact()` gives for each whole line, however the bytes were split into reads. Each
test below is an attack; those marked "found" failed before the fix they name.

The real CLI runs as a subprocess where the process matters (pipes, signals, memory, latency); the
streaming class runs in-process where only the splitting does (every byte offset).
"""

from __future__ import annotations

import logging
import os
import random
import select
import signal
import string
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import redaction_corpus as corpus
from cleanroom.scrubbers.logs import RedactingFilter, StreamingRedactor, redact

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "import sys; from cleanroom.cli import main; sys.exit(main())", "redact"]
AKIA = "AKIAIOSFODNN7EXAMPLE"
EMAIL = "bob.smith@example.com"
_RNG = random.Random(20251129)
_B64 = string.ascii_letters + string.digits + "+/"
PEM_BODY = ["".join(_RNG.choice(_B64) for _ in range(64)) for _ in range(6)] + ["Zm9vYmFyYmF6=="]
PEM = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(PEM_BODY) + "\n-----END RSA PRIVATE KEY-----\n"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # An explicit PYTHONPATH (the old tree, to show a test fails there) comes first.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO / "src")) if p)
    return env


def _cli(data: bytes, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*CLI, *args], input=data, capture_output=True, timeout=timeout, cwd=REPO, env=_env())


def _expected(text: str) -> str:
    """What a stream must give: `redact()` of each whole line."""
    return "".join(redact(line) for line in text.splitlines(keepends=True) if line)


def _samples_by_type() -> dict[str, str]:
    """One corpus line per sensitive type (the first the generator makes), newline-free."""
    out: dict[str, str] = {}
    for sample in corpus.generate(per_type=3, per_negative=0):
        for _, _, kind in sample.positives:
            if kind not in out and "\n" not in sample.line:
                out[kind] = sample.line
    return out


SAMPLES = _samples_by_type()


# ------------------------------------------------------------------------------------------------------
# bytes as they come: encodings, control characters, line endings (one CLI run for all)
# ------------------------------------------------------------------------------------------------------
def test_cli_bytes_and_line_endings_come_out_as_they_came_in() -> None:
    lines = [
        b"caf\xe9 latin-1 " + AKIA.encode() + b" na\xefve\n",  # latin-1 log
        b"\xff lone 0xff " + EMAIL.encode() + b"\n",
        b"nul\x00" + AKIA.encode() + b"\x00byte\n",
        b"crlf " + EMAIL.encode() + b"\r\n",
        b"lone cr " + AKIA.encode() + b"\rsame line\n",
        "utf-8 caf\u00e9 \u2603 ".encode() + EMAIL.encode() + b"\n",
        b"\xed\xa0\x80 encoded surrogate, invalid UTF-8\n",
        b"no final newline " + AKIA.encode(),
    ]
    data = b"".join(lines)
    result = _cli(data)
    assert result.returncode == 0 and result.stderr == b""
    out = result.stdout
    assert AKIA.encode() not in out and EMAIL.encode() not in out
    assert out.count(b"\n") == data.count(b"\n") and out.count(b"\r") == data.count(b"\r")
    expected = _expected(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
    assert out == expected
    for raw in (
        b"caf\xe9 ",
        b" na\xefve\n",
        b"\xff lone",
        b"nul\x00",
        b"\x00byte",
        b"\r\n",
        b"\rsame",
        b"\xed\xa0\x80",
    ):
        assert raw in out


def test_cli_empty_input_gives_empty_output() -> None:
    result = _cli(b"")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_a_utf8_character_split_across_reads_is_decoded_whole() -> None:
    """A pipe that delivers one byte at a time: multi-byte characters and secrets arrive in pieces."""
    text = f"caf\u00e9 \u2603 \U0001f600 token {AKIA} mail {EMAIL} \u00e9nd\n"
    result = _slow_pipe(text.encode(), step=1)
    assert result == _expected(text).encode()


# ------------------------------------------------------------------------------------------------------
# found: ANSI colour around a secret (`\x1b[31mAKIA...`) read as the word `mAKIA...`; it passed
# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "line",
    [
        f"\x1b[31m{AKIA}\x1b[0m\n",
        f"ERROR \x1b[1;31mkey={AKIA}\x1b[0m done\n",
        f"\x1b[32m{SAMPLES['github']}\x1b[0m\n" if "github" in SAMPLES else f"\x1b[32m{AKIA}\x1b[m\n",
        f"\x1b]0;title\x07\x1b[2K{AKIA}\n",
    ],
)
def test_ansi_escapes_around_a_secret_do_not_hide_it(line: str) -> None:
    stream = StreamingRedactor()
    out = stream.feed(line) + stream.flush()
    assert AKIA not in out and "[REDACTED:" in out
    assert out.count("\n") == line.count("\n") and out.count("\x1b") == line.count("\x1b")
    # The same in `redact()` and through a logging handler's filter: a coloured log message (a dev
    # formatter, uvicorn's `color_message`) is no hiding place either.
    assert redact(line) == out
    record = logging.LogRecord("app", logging.INFO, __file__, 1, line.rstrip("\n"), None, None)
    RedactingFilter().filter(record)
    assert record.getMessage() == out.rstrip("\n")


def test_cli_ansi_coloured_secret() -> None:
    data = f"\x1b[31m{AKIA}\x1b[0m\n\x1b[33mWARN\x1b[0m user \x1b[4m{EMAIL}\x1b[24m\n".encode()
    out = _cli(data).stdout
    assert AKIA.encode() not in out and EMAIL.encode() not in out
    assert out.startswith(b"\x1b[31m[REDACTED:AWS_ACCESS_KEY_ID]\x1b[0m\n") and out.count(b"\n") == 2


# ------------------------------------------------------------------------------------------------------
# every secret / PII type split at every byte offset across two reads
# ------------------------------------------------------------------------------------------------------
def test_corpus_has_the_types() -> None:
    assert len(SAMPLES) >= len(corpus.ALL_TYPES) - 2, sorted(set(corpus.ALL_TYPES) - set(SAMPLES))


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_every_type_split_at_every_offset(kind: str) -> None:
    text = SAMPLES[kind] + "\nafter line\n"
    expected = _expected(text)
    for cut in range(1, len(text)):
        stream = StreamingRedactor()
        out = stream.feed(text[:cut]) + stream.feed(text[cut:]) + stream.flush()
        assert out == expected, (kind, cut)


def test_every_type_through_a_one_byte_pipe() -> None:
    """The real CLI, its stdin written one byte at a time with pauses: reads come back tiny."""
    text = "".join(line + "\n" for line in SAMPLES.values())
    assert _slow_pipe(text.encode(), step=1, pause_every=7) == _expected(text).encode()


def _slow_pipe(data: bytes, *, step: int, pause_every: int = 1) -> bytes:
    proc = subprocess.Popen(CLI, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=REPO, env=_env())  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    got: dict[str, bytes] = {}
    readers = [
        threading.Thread(target=lambda: got.__setitem__("out", proc.stdout.read())),  # type: ignore[union-attr]
        threading.Thread(target=lambda: got.__setitem__("err", proc.stderr.read())),  # type: ignore[union-attr]
    ]
    for reader in readers:
        reader.start()
    try:
        for n, i in enumerate(range(0, len(data), step)):
            proc.stdin.write(data[i : i + step])
            proc.stdin.flush()
            if n % pause_every == 0:
                time.sleep(0.0002)
        proc.stdin.close()
        proc.wait(timeout=120)
    finally:
        proc.kill()
        for reader in readers:
            reader.join(timeout=10)
    assert proc.returncode == 0 and got["err"] == b"", got["err"]
    return got["out"]


# ------------------------------------------------------------------------------------------------------
# PEM private-key blocks
# ------------------------------------------------------------------------------------------------------
def test_pem_across_lines_split_at_sampled_offsets() -> None:
    text = "before " + EMAIL + "\n" + PEM + "after\n"
    expected = _expected_whole(text)
    for cut in [*range(1, 80), *range(80, len(text), 7)]:
        stream = StreamingRedactor()
        out = stream.feed(text[:cut]) + stream.feed(text[cut:]) + stream.flush()
        assert out == expected, cut
        assert not any(b in out for b in PEM_BODY)


def _expected_whole(text: str) -> str:
    out = redact(text)
    assert out.count("\n") == text.count("\n")
    return out


def test_pem_with_crlf_line_endings_keeps_them() -> None:
    """found: the placeholder of a CRLF block ended in bare `\n`s (one line out per line in, but the `\r`s
    were lost)."""
    text = "x\r\n" + PEM.replace("\n", "\r\n") + "after " + EMAIL + "\r\n"
    for cut in range(1, len(text), 11):
        stream = StreamingRedactor()
        out = stream.feed(text[:cut]) + stream.feed(text[cut:]) + stream.flush()
        assert out.count("\r\n") == text.count("\r\n") and out.count("\n") == text.count("\n"), cut
        assert out.startswith("x\r\n[REDACTED:PRIVATE_KEY]\r\n") and out.endswith("after [REDACTED:EMAIL]\r\n")
        assert not any(b in out for b in PEM_BODY)


def test_ansi_coloured_card_keeps_its_own_last4_not_the_colour_digits() -> None:
    from cleanroom.scrubbers.logs import Redactor

    stream = StreamingRedactor(Redactor(keep_card_last4=True))
    out = stream.feed("\x1b[31m4111111111111111\x1b[0m paid\n") + stream.flush()
    assert "[REDACTED:CREDIT_CARD:1111]" in out and "4111111111111111" not in out


def test_pem_with_escaped_newlines_in_one_line() -> None:
    line = 'k8s secret: {"tls.key": "' + PEM.replace("\n", "\\n") + '"} ' + EMAIL + "\n"
    for cut in range(1, len(line), 5):
        stream = StreamingRedactor()
        out = stream.feed(line[:cut]) + stream.feed(line[cut:]) + stream.flush()
        assert not any(b in out for b in PEM_BODY) and EMAIL not in out and out.count("\n") == 1, cut


def test_pem_begin_without_end_is_flushed_redacted_at_eof() -> None:
    data = ("-----BEGIN PRIVATE KEY-----\n" + "\n".join(PEM_BODY) + "\n").encode()
    result = _cli(data)
    assert result.returncode == 0 and result.stdout.count(b"\n") == data.count(b"\n")
    assert not any(b.encode() in result.stdout for b in PEM_BODY)


def test_pem_begin_without_end_holds_back_a_bounded_amount() -> None:
    stream = StreamingRedactor(max_hold_chars=4096)
    body = "".join("".join(_RNG.choice(_B64) for _ in range(64)) + "\n" for _ in range(400))  # ~26 KB
    out = stream.feed("-----BEGIN PRIVATE KEY-----\n")
    largest_hold = 0  # lines read but not yet written
    for i in range(0, len(body), 65):
        out += stream.feed(body[i : i + 65])
        largest_hold = max(largest_hold, 1 + body[: i + 65].count("\n") - out.count("\n"))
    out += stream.feed("normal line " + EMAIL + "\n") + stream.flush()
    assert largest_hold * 65 < 4096 + 200
    assert out.count("\n") == body.count("\n") + 2 and out.endswith("normal line [REDACTED:EMAIL]\n")
    assert not any(line in out for line in body.splitlines())


# ------------------------------------------------------------------------------------------------------
# found: long lines. The CLI read a whole line before redacting (a 64 MiB line: 256 MiB resident), and
# the 1 MiB cut split a secret that straddled it (a spaced card number, `password: <cut> value`, a key in a
# run of punctuation)
# ------------------------------------------------------------------------------------------------------
_STRADDLERS = [AKIA, "4111 1111 1111 1111", "password: Hunter2!x9q", EMAIL, '"api_key": "' + "k9Xr2" * 6 + '"']


@pytest.mark.parametrize("secret", _STRADDLERS)
@pytest.mark.parametrize("filler", [",", "word "])
def test_secret_straddling_the_long_line_cut(secret: str, filler: str) -> None:
    value = secret.split()[-1].strip('"')
    for pad in range(0, 620, 5):
        line = filler * (5000 // len(filler) - pad) + " " + secret + " " + "y" * pad + ",," * 300 + "\n"
        stream = StreamingRedactor(max_line_chars=4096, overlap_chars=512)
        out = "".join(stream.feed(line[i : i + 1000]) for i in range(0, len(line), 1000)) + stream.flush()
        assert value not in out, pad
        assert out.count("\n") == 1 and out.endswith(",,\n")


@pytest.mark.parametrize("sep", [" ", ","])
def test_a_long_line_dense_with_findings_is_cut_between_them(sep: str) -> None:
    """found: a cut at a fixed point split an email of a comma-separated run (and a first fix, moving the
    cut past one finding after another, reached the window's end and cut the last one short there)."""
    line = sep.join(f"user{i}@example.com" for i in range(3000)) + "\n"
    for chunk in (97, 1000):
        stream = StreamingRedactor(max_line_chars=4096, overlap_chars=512)
        out = "".join(stream.feed(line[i : i + chunk]) for i in range(0, len(line), chunk)) + stream.flush()
        assert out == redact(line), chunk


def test_long_line_fed_a_byte_at_a_time_is_linear() -> None:
    stream = StreamingRedactor()
    start = time.perf_counter()
    for _ in range(500_000):
        stream.feed("a")
    assert time.perf_counter() - start < 2.0  # it was quadratic: ~6 s for these 500 KB, now 0.1 s
    assert stream.flush() == "a" * 500_000


def _rss_run(tmp_path: Path, data: bytes) -> tuple[int, bytes]:
    """The CLI's peak resident set (KiB) on `data`, measured in a wrapper that has no other children."""
    src, dst = tmp_path / "in.log", tmp_path / "out.log"
    src.write_bytes(data)
    code = (
        "import resource, subprocess, sys\n"
        f"r = subprocess.run({CLI!r}, stdin=open({str(src)!r}, 'rb'), stdout=open({str(dst)!r}, 'wb'))\n"
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, cwd=REPO, env=_env())
    rc, rss = result.stdout.split()
    assert rc == b"0", result.stderr
    return int(rss), dst.read_bytes()


def test_64mib_line_without_newline_bounded_memory_secret_at_end(tmp_path: Path) -> None:
    base_rss, _ = _rss_run(tmp_path, b"hello\n")
    line = b"word " * ((64 << 20) // 5) + AKIA.encode()
    rss, out = _rss_run(tmp_path, line)
    del line
    assert rss - base_rss < 48 << 10, (base_rss, rss)  # was ~190 MiB over the baseline
    assert out.endswith(b"word [REDACTED:AWS_ACCESS_KEY_ID]") and b"\n" not in out
    assert len(out) == (64 << 20) // 5 * 5 + len("[REDACTED:AWS_ACCESS_KEY_ID]")


def test_cli_secret_straddling_the_1mib_cut(tmp_path: Path) -> None:
    """The old CLI cut a last line with no newline 8 KiB before its end; a key lying across that point
    passed (the tail after the key holds no whitespace, so the cut could not move)."""
    tail = 8192 + 7
    data = b"first\n" + b"," * (3 << 20) + AKIA.encode() + b"," * (tail - len(AKIA))
    result = _cli(data)
    assert AKIA.encode() not in result.stdout and result.stdout.startswith(b"first\n,,,")
    assert len(result.stdout) == len(data) - len(AKIA) + len("[REDACTED:AWS_ACCESS_KEY_ID]")


# ------------------------------------------------------------------------------------------------------
# the process: a reader that leaves, Ctrl-C, latency
# ------------------------------------------------------------------------------------------------------
def test_cli_into_head_exits_quietly() -> None:
    data = b"".join(b"line %d user %s\n" % (i, EMAIL.encode()) for i in range(200_000))
    proc = subprocess.Popen([*CLI], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=REPO, env=_env())  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    writer = threading.Thread(target=_write_ignoring_epipe, args=(proc.stdin, data))
    writer.start()
    first = proc.stdout.readline()
    proc.stdout.close()  # `| head -1`
    err = proc.stderr.read()
    proc.wait(timeout=60)
    writer.join()
    assert first == b"line 0 user [REDACTED:EMAIL]\n"
    assert err == b"" and proc.returncode in (0, -signal.SIGPIPE)


def _write_ignoring_epipe(pipe: object, data: bytes) -> None:
    try:
        pipe.write(data)  # type: ignore[attr-defined]
        pipe.close()  # type: ignore[attr-defined]
    except BrokenPipeError:
        pass


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_cli_line_comes_out_promptly_and_ctrl_c_flushes_redacted() -> None:
    """`journalctl -f | cleanroom redact`: stdin stays open; each line must come out at once (it sat in an
    8 KiB stdout buffer without --line-buffered). Then Ctrl-C: the half line read so far is written
    redacted, no traceback."""
    # Ctrl-C from a terminal reaches a process whose SIGINT is at its default. A child inherits an ignored
    # SIGINT (a test that ran earlier in this pytest worker may leave one; so do `nohup` and `cmd &` in
    # scripts), and Python then installs no KeyboardInterrupt handler at all: the signal would be a no-op.
    proc = subprocess.Popen(CLI, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=REPO, env=_env(), preexec_fn=_default_sigint)  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for n in range(3):
            proc.stdin.write(f"event {n} from {EMAIL}\n".encode())
            proc.stdin.flush()
            deadline = time.monotonic() + (20 if n == 0 else 1.5)  # the first waits for the import
            got = b""
            while not got.endswith(b"\n") and time.monotonic() < deadline:
                ready, _, _ = select.select([proc.stdout], [], [], 0.05)
                if ready:
                    got += os.read(proc.stdout.fileno(), 4096)
            assert got == f"event {n} from [REDACTED:EMAIL]\n".encode(), n
        proc.stdin.write(f"half a line {AKIA} ".encode())
        proc.stdin.flush()
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert b"Traceback" not in err and err == b""
    assert out == b"half a line [REDACTED:AWS_ACCESS_KEY_ID] "
    assert proc.returncode == 130


@pytest.mark.parametrize("closed", [">&-", "<&-"])
def test_cli_with_stdout_or_stdin_closed_says_so(closed: str) -> None:
    """found: `unexpected AttributeError ... a file in the data dir may be corrupt` for a closed stdout."""
    script = " ".join(f"'{a}'" for a in CLI) + f" {closed}"
    result = subprocess.run(["sh", "-c", script], input=b"a " + EMAIL.encode() + b"\n", capture_output=True,
                            timeout=60, cwd=REPO, env=_env())  # fmt: skip
    assert result.returncode == 2 and result.stdout == b""
    assert result.stderr == b"cleanroom: redact needs an open stdin and stdout\n"


def test_cli_a_begin_marker_then_silence_does_not_hold_the_stream() -> None:
    """found: in `journalctl -f | cleanroom redact`, a line that only mentions `-----BEGIN PRIVATE KEY-----`
    held back every line after it until 64 KiB more arrived or the input ended."""
    proc = subprocess.Popen(CLI, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=REPO, env=_env())  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        got = b""
        for n, (line, limit_s) in enumerate([(b"expected -----BEGIN PRIVATE KEY----- in tls.key\n", 20.0),
                                             (f"next {EMAIL}\n".encode(), 3.0)]):  # fmt: skip
            proc.stdin.write(line)
            proc.stdin.flush()
            deadline = time.monotonic() + limit_s
            while got.count(b"\n") <= n and time.monotonic() < deadline:
                ready, _, _ = select.select([proc.stdout], [], [], 0.05)
                if ready:
                    got += os.read(proc.stdout.fileno(), 4096)
        assert got.count(b"\n") == 2 and got.endswith(b"next [REDACTED:EMAIL]\n"), got
        assert got.startswith(b"expected [REDACTED:PRIVATE_KEY]")
        proc.stdin.close()
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
