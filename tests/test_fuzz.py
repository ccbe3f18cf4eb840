"""Hostile input against a real server: schemathesis from the published schema, then hypothesis-driven
mutations of real sealed requests, random headers and raw malformed HTTP. Never a 5xx, every error is the
JSON error body, and the server is healthy (and still serves real requests) afterwards."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cleanroom.crypto.sealed import CONTENT_TYPE
from support.hardening import open_socket, read_response, server_errors_in_log, serving_tenants
from support.server import start_server

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "docs" / "openapi.json").read_text())
FUZZ_SETTINGS = settings(
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    handle = start_server(tmp_path_factory.mktemp("fuzz") / "data", "--models", "echo")
    with serving_tenants(handle, "alpha", "beta"):
        yield handle


def assert_sound(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and error["code"] and isinstance(error["message"], str)


def assert_still_serving(server: Any) -> None:
    assert server.process.poll() is None, "the server died"
    assert server.healthy()
    with server.client("alpha") as client:
        assert client.infer("echo", b"still serving") == b"still serving"
    problems = server_errors_in_log(server.log_path)
    assert not problems, "server errors in the log:\n" + "\n".join(problems[:10])


def test_served_schema_is_the_checked_in_one(server: Any) -> None:
    with server.http() as http:
        assert http.get("/openapi.json").json() == SCHEMA


# --- schemathesis ----------------------------------------------------------------------------------------
def test_schemathesis_finds_no_server_error_or_schema_violation(server: Any) -> None:
    import requests
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.generation.modes import GenerationMode
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    schemathesis.serializer.alias(CONTENT_TYPE, "application/octet-stream")
    schema = schemathesis.openapi.from_dict(SCHEMA)
    strategies = []
    for result in schema.get_all_operations():
        operation = result.ok()
        strategies.append(operation.as_strategy(GenerationMode.POSITIVE))
        if operation.path_parameters or operation.body:  # only these can be made invalid
            strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
        if "model" in operation.path:  # a served model, so bodies get past the 404 into the sealed parser
            strategies += [operation.as_strategy(mode, path_parameters={"model": "echo"}) for mode in GenerationMode]
    keys = [server.tenants["alpha"]["api_key"], server.tenants["beta"]["api_key"]]
    authorization = st.sampled_from(
        [
            None,
            f"Bearer {keys[0]}",
            f"Bearer {keys[1]}",
            "Bearer cr_" + "x" * 36,
            "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
            "Bearer ",
            keys[0],
        ]
    )
    session = requests.Session()
    session.verify = server.cert
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    seen: set[int] = set()

    @settings(FUZZ_SETTINGS, max_examples=250)
    @given(case=st.one_of(strategies), auth=authorization)
    def run(case: Any, auth: str | None) -> None:
        if auth is not None:
            case.headers = {**(case.headers or {}), "Authorization": auth}
        response = case.call(base_url=server.url, session=session, timeout=30, verify=server.cert)
        seen.add(response.status_code)
        case.validate_response(response, checks=checks)

    run()
    session.close()
    assert {200, 400, 401} <= seen, f"the fuzzer never reached the interesting answers: {sorted(seen)}"
    assert_still_serving(server)


# --- sealed bodies and headers ----------------------------------------------------------------------------
def base_bodies(server: Any) -> list[bytes]:
    bodies = []
    for tenant in ("alpha", "beta"):
        with server.client(tenant) as client:
            for payload in (b"", b"x", b"fuzz me " * 64):
                bodies.append(client.seal_request("echo", payload).body)
    return bodies


@st.composite
def mutated_body(draw: st.DrawFn, bodies: list[bytes]) -> bytes:
    body = bytearray(draw(st.sampled_from(bodies)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "splice", "length", "zero"]))
        at = draw(st.integers(0, max(0, len(body) - 1)))
        if kind == "flip" and body:
            body[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del body[at:]
        elif kind == "insert":
            body[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del body[at : at + draw(st.integers(1, 64))]
        elif kind == "splice":  # the tail of another tenant's or request's body
            other = draw(st.sampled_from(bodies))
            body[at:] = other[draw(st.integers(0, len(other))) :]
        elif kind == "length" and len(body) >= at + 4:  # length fields: make them huge, zero or negative-looking
            body[at : at + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x80\x00\x00\x00"]))
        elif kind == "zero":
            body[at : at + 32] = bytes(len(body[at : at + 32]))
    return bytes(body)


HEADER_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_!#$%&'*+.^`|~", min_size=1, max_size=40)
# h11 (the client) refuses values with surrounding whitespace; raw-socket fuzzing below covers those
HEADER_VALUE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200).map(str.strip)
CONTENT_TYPES = st.sampled_from(
    [
        CONTENT_TYPE,
        CONTENT_TYPE.upper(),
        f"{CONTENT_TYPE}; charset=binary",
        f"{CONTENT_TYPE} ;",
        "application/json",
        "application/octet-stream",
        "",
        ";",
        "multipart/form-data; boundary=x",
        "application/vnd.cleanroom.sealed+json",
    ]
)


def test_mutated_sealed_bodies_and_random_headers_never_cause_a_server_error(server: Any) -> None:
    bodies = base_bodies(server)
    keys = [server.tenants[t]["api_key"] for t in ("alpha", "beta")]
    authorization = st.one_of(
        st.sampled_from([f"Bearer {keys[0]}", f"Bearer {keys[1]}"]),
        st.sampled_from(
            [
                "",
                "Bearer",
                "bearer " + keys[0],
                "Bearer  " + keys[0],
                f"Bearer {keys[0][:-1]}",
                "Bearer cr_" + "A" * 5000,
            ]
        ),
        HEADER_VALUE,
    )
    statuses: dict[int, int] = {}

    with server.http() as http:

        @settings(FUZZ_SETTINGS, max_examples=300)
        @given(
            body=mutated_body(bodies),
            hostile=st.integers(0, 9).map(lambda n: n >= 7),
            content_type=CONTENT_TYPES,
            auth=authorization,
            extra=st.lists(st.tuples(HEADER_NAME, HEADER_VALUE), max_size=6),
            model=st.sampled_from(["echo", "nope", "ECHO", "..", "e%00cho"]),
        )
        def run(
            body: bytes, hostile: bool, content_type: str, auth: str, extra: list[tuple[str, str]], model: str
        ) -> None:
            if not hostile:  # most bodies go in a well-formed envelope, to reach the sealed-message parser
                content_type, auth, model = CONTENT_TYPE, f"Bearer {keys[len(body) % 2]}", "echo"
            headers = [
                ("Content-Type", content_type),
                ("Authorization", auth),
                *[
                    (k, v)
                    for k, v in extra
                    if k.lower() not in ("content-length", "transfer-encoding", "host", "connection", "expect")
                ],
            ]
            response = http.post(f"/v1/models/{model}/infer", content=body, headers=headers)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert_sound(response)

        run()
    # Hostile envelopes are refused before the parser (401 bad key, 404 bad model, 415 bad type: which of
    # them a random draw reaches first varies); well-formed envelopes reach the parser and get 400.
    assert 400 in statuses and set(statuses) & {401, 404, 415}, statuses
    assert statuses[400] > 150, f"too few bodies reached the sealed-message parser: {statuses}"
    assert_still_serving(server)


# --- raw HTTP ---------------------------------------------------------------------------------------------
TOKEN = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)


@st.composite
def raw_request(draw: st.DrawFn) -> bytes:
    method = draw(
        st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "TRACE", "CONNECT", "PRI"]) | TOKEN
    )
    path = draw(
        st.sampled_from(
            [
                "/healthz",
                "/v1/models/echo/infer",
                "*",
                "/%00",
                "/../../etc/passwd",
                "http://evil/x",
                "/" + "a" * 5000,
                "/v1/models/%2e%2e/infer",
                "",
            ]
        )
    )
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/9", "http/1.1", ""]))
    lines = [f"{method} {path} {version}".encode("latin-1")]
    headers = draw(
        st.lists(
            st.sampled_from(
                [
                    b"Host: localhost",
                    b"Content-Length: 5",
                    b"Content-Length: -1",
                    b"Content-Length: 99999999999999999999",
                    b"Content-Length: 5, 6",
                    b"Content-Length: abc",
                    b"Transfer-Encoding: chunked",
                    b"Transfer-Encoding: gzip",
                    b"Transfer-Encoding: chunked, identity",
                    b"Expect: 100-continue",
                    b"Connection: upgrade",
                    b"Upgrade: websocket",
                    b"Upgrade: h2c",
                    b"X-Null: a\x00b",
                    b"NoColonHere",
                    b": empty-name",
                    b"Bad Name: x",
                    b" folded: continuation",
                    b"X-High: \xff\xfe",
                    f"Content-Type: {CONTENT_TYPE}".encode(),
                ]
            )
            | st.binary(max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b),
            max_size=8,
        )
    )
    body = draw(
        st.sampled_from([b"", b"hello", b"0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n", b"zz\r\nx\r\n", b"\x00" * 32])
    )
    return b"\r\n".join(lines + headers) + b"\r\n\r\n" + body


def test_raw_malformed_http_gets_4xx_json_or_a_closed_connection(server: Any) -> None:
    context = ssl.create_default_context(cafile=server.cert)
    answered: dict[int, int] = {}

    @settings(FUZZ_SETTINGS, max_examples=200)
    @given(raw=raw_request())
    def run(raw: bytes) -> None:
        with open_socket(server.url, context, timeout_s=15) as sock:
            try:
                sock.sendall(raw)
                status, _, body = read_response(sock, head_request=raw.startswith(b"HEAD "))
            except (ConnectionError, ssl.SSLError, TimeoutError, OSError):
                return  # closing on garbage is a fine answer; what matters is what comes back, and health
        answered[status] = answered.get(status, 0) + 1
        assert status < 500, (raw[:200], status, body[:200])
        if status >= 400 and body:
            assert "code" in json.loads(body)["error"], body[:200]

    run()
    assert 400 in answered, answered
    assert_still_serving(server)
