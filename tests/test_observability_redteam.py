"""What cleanroom says about itself — logs, /metrics, /healthz, /readyz, error bodies, CLI output — attacked
through one real server (DEBUG logs) with a marker planted in every place an attacker controls.

A marker is `PREFIX + place` (letters and digits: no secret or PII pattern), so the redactor cannot save
us: what is checked is that cleanroom never copies the input at all. Where a marker may come back by
design (the caller's own model name in its own 404, a path in the access log) the test names it, and
docs/threat-model.md ("What cleanroom says about itself") holds the decision.

The user models the server loads are the factories at the bottom of this file (`--model
NAME=test_observability_redteam:FACTORY`; the server's PYTHONPATH has tests/).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import struct
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

PREFIX = "obsmk" + secrets.token_hex(4)
CONTENT_TYPE = "application/vnd.cleanroom.sealed"
# A secret-shaped string the redactor knows (GitHub token), carried in payloads next to the markers.
PAYLOAD_SECRET = "ghp_" + "Zq9" * 12
# Distinct bad names for the cardinality attack: enough that growth would show, small enough for 2 cores.
CARDINALITY_N = int(os.environ.get("CLEANROOM_TEST_CARDINALITY_N", "1000"))


def mark(place: str) -> str:
    return f"{PREFIX}{place}"


# Markers that may come back, and where (everything else must appear nowhere):
# - the URL path is written to the access log (method, path, status: what an operator needs to debug);
#   paths name models, batch ids and admin targets, never secrets (the redactor still runs on them);
PATH_MARKERS = {mark(p) for p in ("model", "path", "admintenant", "adminaction", "batchid")}
# - a model's own output (its logging, print and warnings) carries what the model put there;
MODEL_OUTPUT_MARKERS = {mark(p) for p in ("payloadlog", "payloadprint", "payloadwarn")}
# - the tenant name is the operator's own label: `tenant list` and `audit show` print it.
TENANT_NAME = mark("tenantname")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from support.server import server_env, start_server

    base = tmp_path_factory.mktemp("obs")
    env = server_env(
        CLEANROOM_LOG_LEVEL="debug",
        CLEANROOM_TRUSTED_PROXIES='["127.0.0.1/32"]',
        CLEANROOM_MAX_BODY_BYTES=str(1 << 20),
    )
    handle = start_server(
        base / "data",
        "--models",
        "echo",
        "--model",
        "raiser=test_observability_redteam:raiser_factory",
        "--model",
        "chatty=test_observability_redteam:chatty_factory",
        env=env,
        tls=False,
    )
    try:
        handle.create_tenant("alpha")
        handle.create_tenant("beta")
        handle.create_tenant(TENANT_NAME)
        run_attacks(handle)
        yield handle
    finally:
        handle.stop()


def admin_token(server: Any) -> str:
    return (Path(server.data_dir) / "admin.token").read_text().strip()


def secrets_of(server: Any) -> list[str]:
    return [admin_token(server), PAYLOAD_SECRET, *(t["api_key"] for t in server.tenants.values())]


def sealed_body(server: Any, tenant: str, payload: bytes, model: str = "echo", **kw: Any) -> bytes:
    from cleanroom.client import Client
    from cleanroom.crypto.sealed import seal_request

    with Client(server.url, api_key=server.tenants[tenant]["api_key"]) as client:
        key = client.public_key()
        return seal_request(key.key, key.key_id, payload, tenant_id=key.tenant_id, model=model, **kw).body


def with_key_id(body: bytes, key_id: str) -> bytes:
    """The same sealed request claiming another key id (the HPKE info binds it: it cannot open)."""
    old = body[5]
    return body[:5] + bytes([len(key_id)]) + key_id.encode() + body[6 + old :]


def tensors_payload(text: str, kind: str) -> bytes:
    import torch
    from safetensors.torch import save

    return save(
        {
            "input": torch.frombuffer(bytearray(text.encode()), dtype=torch.uint8),
            "kind": torch.frombuffer(bytearray(kind.encode()), dtype=torch.uint8),
        }
    )


def raw_safetensors(header: dict[str, Any], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


# --- the attacks (run once, by the fixture; every answer is kept for the checks) -----------------------
ANSWERS: dict[str, httpx.Response] = {}


def hostile_headers(api_key: str | None) -> dict[str, str]:
    headers = {
        "User-Agent": mark("useragent"),
        "X-Forwarded-For": "203.0.113.7",  # from a trusted proxy: the resolved source goes to the audit
        "Referer": f"https://{mark('referer')}.example/",
        "Cookie": f"session={mark('cookie')}",
        "X-Custom-Thing": mark("customheader"),
        "Content-Type": CONTENT_TYPE,
    }
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def run_attacks(server: Any) -> None:
    alpha, beta = server.tenants["alpha"]["api_key"], server.tenants["beta"]["api_key"]
    payload = (mark("payload") + " " + PAYLOAD_SECRET + " " * 48).encode()
    query = f"?token={mark('query')}&q={mark('query')}&email=x{mark('query')}"
    expiring = server.cli(
        "tenant", "keys", "add", "alpha", "--expires-in-days", "0.00002", "--data-dir", str(server.data_dir), "--json"
    )
    expires_at = time.monotonic() + 0.00002 * 86400 + 0.5
    added = server.cli("tenant", "keys", "add", "alpha", "--data-dir", str(server.data_dir), "--json")
    revoked = json.loads(added.stdout)
    server.cli("tenant", "keys", "revoke", "alpha", revoked["credential_id"], "--data-dir", str(server.data_dir))
    server.tenants["revoked"] = revoked
    server.tenants["expired"] = json.loads(expiring.stdout)

    def fresh(**kw: Any) -> bytes:
        return sealed_body(server, "alpha", payload, **kw)

    tampered = bytearray(fresh())
    tampered[-20] ^= 1
    replayed = fresh()
    cases: list[tuple[str, str, str, str | None, bytes]] = [
        ("no_key", "POST", "/v1/models/echo/infer", None, fresh()),
        ("marker_key", "POST", "/v1/models/echo/infer", mark("apikey"), fresh()),
        ("shaped_key", "POST", "/v1/models/echo/infer", "cr_" + (mark("crkey") + "A" * 36)[:36], fresh()),
        ("revoked_key", "POST", "/v1/models/echo/infer", revoked["api_key"], fresh()),
        ("unknown_model", "POST", f"/v1/models/{mark('model')}/infer", alpha, fresh()),
        ("unknown_model_unauthenticated", "POST", f"/v1/models/{mark('model')}/infer", None, fresh()),
        ("oversized", "POST", "/v1/models/echo/infer", alpha, fresh() + payload * ((2 << 20) // len(payload))),
        ("tampered", "POST", "/v1/models/echo/infer", alpha, bytes(tampered)),
        ("replayed_first", "POST", "/v1/models/echo/infer", alpha, replayed),
        ("replayed", "POST", "/v1/models/echo/infer", alpha, replayed),
        ("stale", "POST", "/v1/models/echo/infer", alpha, fresh(ts=int(time.time()) - 7 * 86400)),
        ("sealed_for_beta", "POST", "/v1/models/echo/infer", alpha, sealed_body(server, "beta", payload)),
        ("sealed_for_another_model", "POST", "/v1/models/echo/infer", alpha, fresh(model="chatty")),
        ("marker_key_id", "POST", "/v1/models/echo/infer", alpha, with_key_id(fresh(), mark("keyid"))),
        ("not_sealed", "POST", "/v1/models/echo/infer", alpha, payload),
        ("truncated", "POST", "/v1/models/echo/infer", alpha, fresh()[:200]),
        ("another_tenants_key", "POST", "/v1/models/echo/infer", beta, fresh()),
        ("unknown_path", "GET", f"/v1/{mark('path')}", alpha, b""),
        ("unknown_path_post", "POST", f"/{mark('path')}/infer", None, payload),
        ("wrong_method", "DELETE", "/v1/models/echo/infer", alpha, b""),
        ("admin_bad_token", "GET", "/v1/admin/tenants", mark("admintoken"), b""),
        ("admin_unknown_tenant", "GET", f"/v1/admin/tenants/{mark('admintenant')}/keys", admin_token(server), b""),
        ("admin_unknown_action", "POST", f"/v1/admin/keys/{mark('adminaction')}", admin_token(server), payload),
        ("batch_not_sealed", "POST", "/v1/batches", alpha, payload),
        ("batch_status", "GET", f"/v1/batches/{mark('batchid')}", alpha, b""),
        ("batch_results", "GET", f"/v1/batches/{mark('batchid')}/results", alpha, b""),
        ("batch_cancel", "DELETE", f"/v1/batches/{mark('batchid')}", alpha, b""),
        ("public_key_bad_key", "GET", "/v1/tenants/self/public-key", mark("apikey"), b""),
    ]
    with httpx.Client(base_url=server.url, timeout=60) as http:
        time.sleep(max(0.0, expires_at - time.monotonic()))
        cases.append(("expired_key", "POST", "/v1/models/echo/infer", server.tenants["expired"]["api_key"], fresh()))
        for place, method, path, key, body in cases:
            ANSWERS[place] = http.request(method, path + query, content=body or None, headers=hostile_headers(key))
        admin_json = {**hostile_headers(admin_token(server)), "Content-Type": "application/json"}
        for place, doc in (
            ("admin_bad_tenant_name", {"name": mark("admintenantname") + "!"}),
            ("admin_bad_weight", {"name": "ok", "weight": mark("adminweight")}),
        ):
            ANSWERS[place] = http.post("/v1/admin/tenants", json=doc, headers=admin_json)
        headers = hostile_headers(alpha)
        for place, name, value in (
            ("forwarded_for_marker", "X-Forwarded-For", mark("xff")),
            ("content_type_marker", "Content-Type", f"application/{mark('contenttype')}"),
            ("content_encoding_marker", "Content-Encoding", mark("encoding")),
        ):
            ANSWERS[place] = http.post("/v1/models/echo/infer", content=fresh(), headers={**headers, name: value})
        ANSWERS["method_marker"] = http.request(mark("METHOD").upper(), "/v1/models/echo/infer", headers=headers)
        ANSWERS["admin_bad_action_body"] = http.post(
            "/v1/admin/keys/revoke", json={"credential": mark("admincredential")}, headers=admin_json
        )
        # Through a model: cleanroom's own failures on the plaintext, and what a model does with it.
        for place, model, body in (
            ("model_raises", "raiser", tensors_payload(mark("payloadraise") + PAYLOAD_SECRET, "plain")),
            ("model_raises_coded", "raiser", tensors_payload(mark("payloadcode") + " x", "code")),
            ("model_raises_chained", "raiser", tensors_payload(mark("payloadraise") + PAYLOAD_SECRET, "chain")),
            ("model_logs", "chatty", tensors_payload(mark("payloadlog") + " " + PAYLOAD_SECRET, "log")),
            ("model_prints", "chatty", tensors_payload(mark("payloadprint") + " " + PAYLOAD_SECRET, "print")),
            ("model_warns", "chatty", tensors_payload(mark("payloadwarn") + " " + PAYLOAD_SECRET, "warn")),
            ("not_safetensors", "chatty", (mark("payloadraw") + PAYLOAD_SECRET).encode()),
            ("bad_tensor_dtype", "chatty", raw_safetensors({"x": {"dtype": mark("dtype")}}, b"")),
        ):
            sealed = sealed_body(server, "alpha", body, model=model)
            ANSWERS[place] = http.post(f"/v1/models/{model}/infer", content=sealed, headers=hostile_headers(alpha))
    # cleanroom's own log lines for what it did are written before the access line; let the server flush.
    time.sleep(0.3)


def leaks(text: str) -> set[str]:
    """Every marker in `text`, as `PREFIX<place>` strings."""
    found = set()
    start = text.find(PREFIX)
    while start >= 0:
        end = start + len(PREFIX)
        while end < len(text) and text[end].isalnum():
            end += 1
        found.add(text[start:end])
        start = text.find(PREFIX, end)
    return found


def log_records(server: Any) -> list[tuple[str, dict[str, Any] | None]]:
    """(line, parsed JSON record or None for a line that is not one of the runtime's JSON records)."""
    out: list[tuple[str, dict[str, Any] | None]] = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        out.append((line, record if isinstance(record, dict) else None))
    return out


# --- error bodies --------------------------------------------------------------------------------------
# An unparsable X-Forwarded-For from a trusted proxy falls back to the peer address (not the marker).
SUCCEEDS = {"replayed_first", "model_logs", "model_prints", "model_warns", "forwarded_for_marker"}


def test_every_attack_got_a_json_4xx_that_echoes_nothing(server: Any) -> None:
    problems = []
    for place, answer in ANSWERS.items():
        if place in SUCCEEDS:
            assert answer.status_code == 200, (place, answer.text)
            continue
        assert 400 <= answer.status_code < 500, (place, answer.status_code, answer.text)
        error = answer.json()["error"]
        assert set(error) == {"code", "message"} and set(answer.json()) == {"error"}, (place, answer.text)
        echoed = leaks(answer.text)
        # By design: the caller's own model name in its own 404 (it sent it in the URL, after
        # authenticating; JSON with nosniff and a `default-src 'none'` CSP is no reflection surface), and
        # the admin's own tenant name in the admin's 404. And a model's own words: a CleanroomError raised by
        # model code keeps its code and message (docs/threat-model.md: a model's own output).
        allowed = {
            "unknown_model": {mark("model")},
            "admin_unknown_tenant": {mark("admintenant")},
            "model_raises_coded": {mark("payloadcode")},
        }.get(place, set())
        if echoed - allowed:
            problems.append((place, answer.status_code, answer.text))
        problems += [(place, "secret", s[:8]) for s in secrets_of(server) if s in answer.text]
    assert not problems, problems


def test_the_statuses_are_the_documented_ones(server: Any) -> None:
    """Each error path really was reached (a marker check on the wrong path proves nothing)."""
    codes = {place: ANSWERS[place].json()["error"]["code"] for place in ANSWERS if place not in SUCCEEDS}
    assert codes["no_key"] == codes["marker_key"] == codes["shaped_key"] == "unauthenticated"
    assert codes["revoked_key"] == "credential_revoked" and codes["expired_key"] == "credential_expired"
    assert codes["unknown_model"] == "unknown_model" and codes["unknown_model_unauthenticated"] == "unauthenticated"
    assert codes["oversized"] == "payload_too_large" and codes["tampered"] == "decryption_failed"
    assert codes["replayed"] == "replayed_request" and codes["stale"] == "stale_request"
    assert codes["sealed_for_beta"] == codes["marker_key_id"] == codes["another_tenants_key"] == "unknown_key_id"
    assert codes["sealed_for_another_model"] == "context_mismatch"
    assert codes["admin_bad_token"] == "bad_admin_token" and codes["admin_unknown_tenant"] == "unknown_tenant"
    assert codes["model_raises"] == codes["model_raises_chained"] == "model_rejected_input"
    assert codes["model_raises_coded"] == mark("payloadcode")
    assert codes["not_safetensors"] == codes["bad_tensor_dtype"] == "invalid_payload"
    assert codes["content_type_marker"] == "unsupported_media_type"
    assert codes["content_encoding_marker"] == "unsupported_content_encoding"
    assert codes["method_marker"] == "malformed_http"  # httptools knows the methods; cleanroom never sees it


def test_a_tensor_name_from_the_payload_is_not_echoed(server: Any) -> None:
    """runtime/tensors.py names a malformed entry by its position: its name is plaintext from inside the
    sealed payload, and the 422's message travels unsealed."""
    body = raw_safetensors({mark("tensorname"): {"dtype": "U8", "shape": [4], "data_offsets": [0, 9]}}, b"\0" * 9)
    sealed = sealed_body(server, "alpha", body, model="chatty")
    with httpx.Client(base_url=server.url, timeout=60) as http:
        answer = http.post("/v1/models/chatty/infer", content=sealed, headers=hostile_headers(
            server.tenants["alpha"]["api_key"]))  # fmt: skip
    assert answer.status_code == 422
    assert not leaks(answer.text), answer.text


# --- the server's own output (log file = its stdout and stderr) ----------------------------------------
def test_no_marker_and_no_secret_reaches_the_server_output(server: Any) -> None:
    records = log_records(server)
    assert any(r and r.get("logger") == "uvicorn.access" for _, r in records), "no access log lines"
    problems = []
    for line, record in records:
        for secret in secrets_of(server):
            if secret in line and not (secret == PAYLOAD_SECRET and record is None):  # a model's print: below
                problems.append(("secret", secret[:8], line))
        found = leaks(line)
        if not found:
            continue
        logger = (record or {}).get("logger", "")
        allowed = set()
        if logger == "uvicorn.access":
            allowed = PATH_MARKERS
        elif record is None or not (logger.startswith("cleanroom") or logger.startswith("uvicorn")):
            allowed = MODEL_OUTPUT_MARKERS  # the model's own output, not cleanroom's words
        if found - allowed:
            problems.append((logger, sorted(found - allowed), line[:300]))
    assert not problems, problems


def test_the_access_log_drops_query_strings(server: Any) -> None:
    """No route takes a query string, and a query is where callers put tokens the redactor may not know
    (`?q=<anything>`): the access line keeps the path and says a query was dropped."""
    lines = [r["msg"] for _, r in log_records(server) if r and r.get("logger") == "uvicorn.access"]
    assert lines
    assert not [line for line in lines if mark("query") in line]
    assert any("/v1/batches?[REDACTED:QUERY]" in line for line in lines)


def test_cleanroom_never_logs_payload_bytes_even_at_debug(server: Any) -> None:
    """cleanroom's own records (cleanroom.*, uvicorn.*) never hold a payload marker, at DEBUG, whatever the
    model did; the model's exception is logged by type only."""
    payload_marks = {mark(p) for p in ("payload", "payloadraise", "payloadraw", "dtype")} | MODEL_OUTPUT_MARKERS
    own = [
        line
        for line, record in log_records(server)
        if record and str(record.get("logger", "")).startswith(("cleanroom", "uvicorn"))
    ]
    assert not [line for line in own if leaks(line) & payload_marks]
    assert any("model raiser raised ValueError" in line for line in own)
    assert not [line for line in own if "Traceback" in line]


def test_a_models_logging_and_warnings_go_through_the_redactor(server: Any) -> None:
    """Model code's `logging` and `warnings.warn` are JSON records behind the redacting filter: the secret
    is redacted, the plaintext marker (no secret pattern) is the model's own output and stays."""
    records = log_records(server)
    for marker in (mark("payloadlog"), mark("payloadwarn")):
        lines = [(line, record) for line, record in records if marker in line]
        assert lines, f"{marker} was not written at all"
        for line, record in lines:
            assert record is not None, f"not a redacted JSON record: {line[:200]}"
            assert PAYLOAD_SECRET not in line and "[REDACTED:" in line


def test_a_models_print_is_outside_the_promise(server: Any) -> None:
    """What a model writes to stdout itself is not a log record: no handler, no filter. Documented as not
    redacted (docs/threat-model.md); this pins down that it is at least never attributed to cleanroom."""
    lines = [(line, record) for line, record in log_records(server) if mark("payloadprint") in line]
    assert lines
    assert all(record is None for _, record in lines)


# --- /metrics ------------------------------------------------------------------------------------------
def series(text: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_labels_come_from_bounded_sets(server: Any) -> None:
    with httpx.Client(base_url=server.url) as http:
        text = http.get("/metrics").text
        models = set(http.get("/readyz").json()["models"])
    assert not leaks(text)
    assert not [s for s in secrets_of(server) if s in text]
    tenant_ids = {t["tenant_id"] for t in server.tenants.values() if "tenant_id" in t}
    for name, labels in series(text):
        for key, value in labels:
            if key == "tenant_id":
                assert value in tenant_ids, (name, labels)
            elif key == "model":
                assert value in models or value.startswith("/v1/"), (name, labels)
            elif key in ("code", "outcome", "reason"):
                assert value.replace("_", "").isalnum() and len(value) <= 40, (name, labels)
    assert TENANT_NAME not in text


def test_every_error_code_cleanroom_raises_is_a_metric_label() -> None:
    """The other half of bounding `code`/`outcome`: a code cleanroom raises is counted as itself, not as
    "other" (a `code="..."` added in src/ without listing it in metrics.RAISED_CODES fails here)."""
    import re

    from cleanroom.server.metrics import OTHER_CODE, code_label

    src = Path(__file__).resolve().parents[1] / "src" / "cleanroom"
    literals = {code for path in src.rglob("*.py") for code in re.findall(r'\bcode="([a-z0-9_]+)"', path.read_text())}
    assert len(literals) > 30
    assert [code for code in sorted(literals) if code_label(code) == OTHER_CODE] == []
    assert code_label("unknown_model") == "unknown_model" and code_label("model_rejected_input") != OTHER_CODE
    assert code_label(mark("payloadcode")) == OTHER_CODE


def test_attacker_strings_create_no_metric_series(server: Any) -> None:
    """Cardinality attack: thousands of distinct bad model names, paths, batch ids and keys add no series.
    One of each kind first, so the fixed per-code series exist before counting."""
    alpha = server.tenants["alpha"]["api_key"]
    auth = {"Authorization": f"Bearer {alpha}", "Content-Type": CONTENT_TYPE}

    def attack(http: httpx.Client, i: int) -> None:
        http.post(f"/v1/models/{PREFIX}m{i}/infer", headers=auth)
        if i % 4 == 0:
            http.get(f"/{PREFIX}p{i}", headers=auth)
            http.get(f"/v1/batches/{PREFIX}b{i}", headers=auth)
            http.post("/v1/models/echo/infer", headers={"Authorization": f"Bearer {PREFIX}k{i}"})

    with httpx.Client(base_url=server.url, timeout=60) as http:
        attack(http, 0)
        before = series(http.get("/metrics").text)
        for i in range(1, CARDINALITY_N + 1):
            attack(http, i)
        after_text = http.get("/metrics").text
    after = series(after_text)
    assert after - before == set(), sorted(after - before)[:10]
    assert not leaks(after_text)


# --- /healthz and /readyz (unauthenticated) -------------------------------------------------------------
def test_probes_reveal_no_tenant_key_or_path(server: Any) -> None:
    with httpx.Client(base_url=server.url) as http:
        health = http.get("/healthz")
        ready = http.get("/readyz")
    assert health.json() == {"status": "ok"}
    text = ready.text
    forbidden = [*secrets_of(server), str(server.data_dir), str(Path(server.data_dir).parent)]
    for tenant in server.tenants.values():
        forbidden += [tenant["tenant_id"], tenant.get("credential_id", "")]
    forbidden += [TENANT_NAME, "alpha", "beta"]
    assert not [f for f in forbidden if f and f in text]
    # What it does say (accepted for an operator probe; docs/threat-model.md): readiness, model names,
    # memory locking, hardening and the device (CPU model, core count, torch and driver versions).
    assert set(ready.json()) <= {"status", "models", "memory", "hardening", "device"}


# --- the audit log's plaintext fields and the CLI ------------------------------------------------------
def test_audit_show_holds_no_marker_or_secret(server: Any) -> None:
    out = server.cli("audit", "show", "--data-dir", str(server.data_dir), "--json")
    text = out.stdout.decode() + out.stderr.decode()
    assert '"event"' in text or "event" in text
    assert not leaks(text) - {TENANT_NAME}, sorted(leaks(text))
    assert not [s[:8] for s in secrets_of(server) if s in text]


def test_cli_shows_the_api_key_once_and_never_again(server: Any) -> None:
    data_dir = str(server.data_dir)
    created = server.cli("tenant", "create", "gamma", "--data-dir", data_dir)
    shown = created.stdout.decode() + created.stderr.decode()
    api_key = next(word for word in shown.split() if word.startswith("cr_"))
    assert shown.count(api_key) == 1
    keys = [*secrets_of(server), api_key]
    for args in (
        ("tenant", "list", "--json"),
        ("tenant", "keys", "list", "alpha"),
        ("keys", "status", "--json"),
        ("doctor", "--json", "--no-kms"),
    ):
        result = server.cli(*args, "--data-dir", data_dir, check=False)
        text = result.stdout.decode() + result.stderr.decode()
        assert not [k[:8] for k in keys if k in text], args


@pytest.mark.parametrize("kind", ["malformed", "real"])
def test_cli_errors_never_echo_the_api_key(server: Any, kind: str) -> None:
    """`infer --api-key K` failing (bad key, unreachable server) says why without repeating K."""
    key = mark("cliapikey") if kind == "malformed" else server.tenants["alpha"]["api_key"]
    for url in (server.url, "http://127.0.0.1:9"):
        result = subprocess.run(
            [sys.executable, "-m", "cleanroom", "infer", "nosuchmodel", "--url", url, "--api-key", key],
            input=b"hello",
            capture_output=True,
            timeout=60,
        )
        assert result.returncode != 0
        text = result.stdout.decode() + result.stderr.decode()
        assert key not in text and not leaks(text), text


def test_batch_jobs_say_nothing_of_their_items(server: Any) -> None:
    """A batch's model name and items are inside the sealed batch: a batch for an unknown model is refused
    without naming it, and items a model refuses with input-made codes leave no trace outside the sealed
    results (status document, /metrics, cleanroom's log)."""
    from cleanroom.batch_client import BatchClient
    from cleanroom.client import ClientError

    items = [tensors_payload(mark("payloadbatch") + f"{i} " + PAYLOAD_SECRET, "code") for i in range(3)]
    with server.client("alpha") as client:
        batches = BatchClient(client)
        with pytest.raises(ClientError) as refused:
            batches.submit(mark("batchmodel"), items)
        assert refused.value.status == 404 and not leaks(str(refused.value))
        with batches.submit("raiser", items) as handle:
            status = batches.wait(handle.batch_id, timeout_s=60, poll_s=0.1)
            results = batches.fetch(handle)
    assert not leaks(json.dumps(status)) and PAYLOAD_SECRET not in json.dumps(status)
    assert len(results) == 3 and not any(r.ok for r in results)
    with httpx.Client(base_url=server.url) as http:
        assert not leaks(http.get("/metrics").text)
    own = [line for line, r in log_records(server) if r and str(r.get("logger")).startswith(("cleanroom", "uvicorn"))]
    assert not [line for line in own if mark("payloadbatch") in line or mark("batchmodel") in line]


def test_a_sealed_system_says_so_without_kms_detail(server: Any) -> None:
    """The KMS-side failure path (`keys revoke --system`): the answer and the log name the state, not the
    KMS's key names, files or exception text."""
    data_dir = str(server.data_dir)
    body = sealed_body(server, "alpha", (mark("payloadkms") + PAYLOAD_SECRET).encode())
    server.cli("keys", "revoke", "--system", "--data-dir", data_dir)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            answer = http.post("/v1/models/echo/infer", content=body, headers=hostile_headers(
                server.tenants["alpha"]["api_key"]))  # fmt: skip
    finally:
        server.cli("keys", "revoke", "--system", "--data-dir", data_dir, check=False)
        server.cli("keys", "restore", "--system", "--data-dir", data_dir)
    assert 400 <= answer.status_code < 600 and set(answer.json()["error"]) == {"code", "message"}
    assert data_dir not in answer.text and "kms" not in answer.json()["error"]["message"].lower()
    assert not leaks(answer.text)
    own = [line for line, r in log_records(server) if r and str(r.get("logger")).startswith(("cleanroom", "uvicorn"))]
    assert not [line for line in own if data_dir + "/kms" in line or mark("payloadkms") in line]
    assert not [line for line in own if PAYLOAD_SECRET in line]
    with server.client("alpha") as client:
        assert client.infer("echo", b"back") == b"back"


def test_an_unreachable_kms_is_reported_without_its_token(tmp_path: Path) -> None:
    """A `serve` that fails fast on its KMS (DEBUG logs) names the KMS and the reason, never the token
    (`doctor` prints the same status line)."""
    from support.server import server_env

    token = "hvs." + mark("vaulttoken")
    env = server_env(
        CLEANROOM_KMS="vault",
        CLEANROOM_VAULT_ADDR="http://127.0.0.1:9",
        CLEANROOM_VAULT_TOKEN=token,
        CLEANROOM_LOG_LEVEL="debug",
    )
    serve = ["serve", "--no-tls", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(tmp_path / "data")]
    result = subprocess.run(
        [sys.executable, "-m", "cleanroom", *serve], capture_output=True, timeout=60, env=env, cwd=tmp_path
    )
    text = result.stdout.decode() + result.stderr.decode()
    assert result.returncode != 0 and "kms_unavailable" in text, text[-2000:]
    assert token not in text and not leaks(text), text[-2000:]


def raw_answer(server: Any, request: bytes) -> tuple[int, dict[str, Any]]:
    import socket

    from support.hardening import address

    with socket.create_connection(address(server.url), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_protocol_level_refusals_echo_nothing(server: Any) -> None:
    """Answers written below the app (431, 400 malformed) and their log lines carry none of the request."""
    big = f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {mark('bigheader')}{'A' * 20000}\r\n\r\n"
    bad_line = f"GET /{mark('badline')} HTTP/1.1 {mark('badline')}\r\nHost: x\r\n\r\n"
    bad_header = f"GET /healthz HTTP/1.1\r\nHost: x\r\n{mark('badheader')} \x01: y\r\n\r\n"
    for request, status, code in (
        (big, 431, "request_header_too_large"),
        (bad_line, 400, "malformed_http"),
        (bad_header, 400, "malformed_http"),
    ):
        answer = raw_answer(server, request.encode("latin-1"))
        assert answer == (status, {"error": {"code": code, "message": answer[1]["error"]["message"]}})
        assert not leaks(json.dumps(answer[1]))
    time.sleep(0.2)
    found = set().union(*(leaks(line) for line, _ in log_records(server)))
    assert not found & {mark("bigheader"), mark("badline"), mark("badheader")}


# --- the user models the server loads -----------------------------------------------------------------
def _text(inputs: Mapping[str, Any]) -> str:
    return bytes(inputs["input"].numpy()).decode("utf-8", "replace").strip()


def _kind(inputs: Mapping[str, Any]) -> str:
    return bytes(inputs["kind"].numpy()).decode()


def raiser_factory():  # type: ignore[no-untyped-def]
    """Raises with its input in the message (and, `chain`, in a chained decoder error too)."""

    def run(inputs: Mapping[str, Any]) -> dict[str, Any]:
        text = _text(inputs)
        if _kind(inputs) == "code":  # model code choosing its own error code from its input
            from cleanroom.errors import InvalidPayload

            raise InvalidPayload("the model refused this input", code=text.split()[0].lower())
        if _kind(inputs) == "chain":
            try:
                json.loads(text)
            except ValueError as exc:
                raise ValueError(f"cannot take {text}") from exc
        raise ValueError(f"cannot take {text}")

    return run


def chatty_factory():  # type: ignore[no-untyped-def]
    """Tells the world about its input in one of the three ways model code does: logging, print, warnings."""

    def run(inputs: Mapping[str, Any]) -> dict[str, Any]:
        text, kind = _text(inputs), _kind(inputs)
        if kind == "log":
            logging.getLogger(__name__).warning("model saw %s", text)
        elif kind == "print":
            print(f"model saw {text}", flush=True)
        elif kind == "warn":
            warnings.warn(f"model saw {text}", UserWarning, stacklevel=1)
        return {"output": inputs["input"].clone()}

    return run
