"""Other clients than ours against a real `cleanroom serve`, and `Client` in odd but legal setups.

The shared TLS server (conftest's `shared_server`, one tenant of this module's own) is driven by curl,
urllib.request, http.client, requests and aiohttp, and by raw sockets for what a client library offers
on its own: an `Upgrade: h2c` request (curl --http2 on http://, a websocket-configured proxy in front), the
HTTP/2 preface, ALPN h2, no or another SNI name. `Client` meets env proxies, a loopback server named as
localhost or [::1], a base URL with a path, and small fake upstreams that refuse, reset, or send more than
they announce. test_independent_client, test_client_redteam, test_design_contracts, test_tls* are not
repeated.

Broken before the fixes: an Upgrade request's body was dropped (curl --http2 http://... got 400
invalid_sealed_message) and, sent in a later packet, parsed as a second request (`GET /metrics` in the body
was answered: request smuggling past a proxy in front); ALPN offering h2 and http/1.1 got no answer;
HTTP_PROXY/HTTPS_PROXY/ALL_PROXY pointing at a dead proxy broke `Client` and the admin CLI on 127.0.0.1
(ConnectError; a socks5:// one an ImportError when the client was made), and a plain-HTTP loopback server
behind HTTP_PROXY had its API key sent to the proxy. Left as is: httpcore reuses a connection whose
server sent more than Content-Length, so the surplus is read as the next answer; sealing refuses it.
"""

from __future__ import annotations

import asyncio
import http.client
import importlib.util
import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.client import Client, ClientError, UnexpectedResponse
from cleanroom.crypto.sealed import CONTENT_TYPE
from cleanroom.keys.public_key import TenantPublicKey
from support.hardening import address, admin_create_tenant, read_response
from support.listener import ThreadedListener, read_request, sealed_answer

PAYLOAD = b"other clients \x00\xff" * 400  # ~6 KiB sealed: curl's Expect threshold on older versions is 1 KiB
CURL = shutil.which("curl")


@pytest.fixture(scope="module")
def server(shared_server: Any) -> Any:
    admin_create_tenant(shared_server, f"other-clients-{uuid.uuid4().hex[:8]}")
    return shared_server


@pytest.fixture(scope="module")
def tenant(server: Any) -> dict[str, Any]:
    return next(v for k, v in server.tenants.items() if k.startswith("other-clients-"))


@pytest.fixture(scope="module")
def client(server: Any, tenant: dict[str, Any]) -> Iterator[Client]:
    with Client(server.url, api_key=tenant["api_key"], public_key=tenant["public_key"], verify=server.cert) as c:
        yield c


def tls_context(server: Any, alpn: list[str] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=server.cert)
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def infer_headers(tenant: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant['api_key']}", "Content-Type": CONTENT_TYPE}


def infer_head(tenant: dict[str, Any], extra: str) -> bytes:
    lines = "".join(f"{k}: {v}\r\n" for k, v in infer_headers(tenant).items())
    return f"POST /v1/models/echo/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}{extra}\r\n".encode("latin-1")


def read_until_closed(sock: socket.socket, wait_s: float = 1.0) -> bytes:
    """Everything the server sends until it closes or stays quiet for `wait_s`."""
    sock.settimeout(wait_s)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionError, ssl.SSLError):
        pass
    return data


# --- curl --------------------------------------------------------------------------------------------------
CURL_CASES = {
    "expect-100-continue": ["-H", "Expect: 100-continue", "--data-binary", "@BODY"],
    "chunked-from-stdin": ["-X", "POST", "-H", "Transfer-Encoding: chunked", "-T", "-"],
    "http1.0": ["--http1.0", "--data-binary", "@BODY"],
    "compressed": ["--compressed", "--data-binary", "@BODY"],
    "http2-alpn": ["--http2", "--data-binary", "@BODY"],
    "http2-prior-knowledge": ["--http2-prior-knowledge", "--data-binary", "@BODY"],  # over TLS: ALPN decides
}


# curl is a client program, not a service these tests start: a host without it has no curl to be
# compatible with (the Debian CI image has it; these cases ran there and here).
@pytest.mark.skipif(CURL is None, reason="no curl binary")
@pytest.mark.parametrize("case", sorted(CURL_CASES))
def test_curl_round_trips(server: Any, tenant: dict[str, Any], client: Client, case: str, tmp_path: Path) -> None:
    sealed = client.seal_request("echo", PAYLOAD)
    (tmp_path / "body").write_bytes(sealed.body)
    args = [a.replace("@BODY", f"@{tmp_path / 'body'}") for a in CURL_CASES[case]]
    headers = [x for k, v in infer_headers(tenant).items() for x in ("-H", f"{k}: {v}")]
    command = [CURL, "-sS", "-v", "--max-time", "10", "--cacert", server.cert, "-o", str(tmp_path / "out")]
    command += ["-D", str(tmp_path / "head"), "-w", "%{http_code} %{http_version}", *headers, *args]
    done = subprocess.run(
        [*command, f"{server.url}/v1/models/echo/infer"],
        input=sealed.body if "-T" in args else None,
        capture_output=True,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.decode() == "200 1.1"  # --http2 offered h2 by ALPN: answered over HTTP/1.1
    assert sealed.open_response((tmp_path / "out").read_bytes()) == PAYLOAD
    head = (tmp_path / "head").read_text("latin-1").lower()
    assert "content-encoding" not in head  # --compressed: a sealed body is never re-encoded
    if case == "expect-100-continue":
        assert "100 continue" in head


# --- raw sockets: HTTP/2 and Upgrade ---------------------------------------------------------------------
def test_http2_preface_is_a_json_400_and_a_close(server: Any) -> None:
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")  # + empty SETTINGS
    host, port = address(server.url)
    started = time.monotonic()
    with tls_context(server).wrap_socket(socket.create_connection((host, port)), server_hostname=host) as sock:
        sock.sendall(preface)
        answer = read_until_closed(sock, wait_s=5)
    assert answer.startswith(b"HTTP/1.1 400 ") and b'"malformed_http"' in answer
    assert time.monotonic() - started < 4  # closed by the server, not our wait


def upgrade_head(tenant: dict[str, Any], length: int, extra: str = "") -> bytes:
    framing = f"Content-Length: {length}\r\n" if length >= 0 else "Transfer-Encoding: chunked\r\n"
    return infer_head(
        tenant, f"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMA\r\n{extra}{framing}"
    )


@pytest.mark.parametrize("split", ["one-write", "body-later", "expect-100"])
def test_an_upgrade_request_is_served_over_http_1_1(
    server: Any, tenant: dict[str, Any], client: Client, split: str
) -> None:
    """What `curl --http2 http://...` sends: RFC 9110 §7.8 lets the server ignore Upgrade; the body counts."""
    sealed = client.seal_request("echo", PAYLOAD)
    head = upgrade_head(tenant, len(sealed.body), "Expect: 100-continue\r\n" if split == "expect-100" else "")
    host, port = address(server.url)
    with tls_context(server).wrap_socket(
        socket.create_connection((host, port), timeout=10), server_hostname=host
    ) as sock:
        if split == "one-write":
            sock.sendall(head + sealed.body)
        else:
            sock.sendall(head)
            if split == "expect-100":
                assert sock.recv(100).startswith(b"HTTP/1.1 100 ")
            time.sleep(0.05)
            sock.sendall(sealed.body)
        status, _, body = read_response(sock)
        assert status == 200 and sealed.open_response(body) == PAYLOAD
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # the connection is still HTTP/1.1
        assert read_response(sock)[0] == 200


@pytest.mark.parametrize("split", [True, False])
def test_an_upgrade_requests_body_is_never_a_second_request(server: Any, tenant: dict[str, Any], split: bool) -> None:
    """A proxy in front frames the body by Content-Length; we must too, or its content is a smuggled request."""
    smuggled = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    head = upgrade_head(tenant, len(smuggled))
    host, port = address(server.url)
    with tls_context(server).wrap_socket(
        socket.create_connection((host, port), timeout=10), server_hostname=host
    ) as sock:
        sock.sendall(head if split else head + smuggled)
        if split:
            time.sleep(0.1)
            sock.sendall(smuggled)
        answers = read_until_closed(sock, wait_s=1.0)
    assert answers.count(b"HTTP/1.1 ") == 1 and b"# TYPE" not in answers
    assert answers.startswith(b"HTTP/1.1 400 ") and b"invalid_sealed_message" in answers


def test_an_upgrade_request_with_a_chunked_body_is_refused_and_closed(server: Any, tenant: dict[str, Any]) -> None:
    host, port = address(server.url)
    with tls_context(server).wrap_socket(
        socket.create_connection((host, port), timeout=10), server_hostname=host
    ) as sock:
        sock.sendall(upgrade_head(tenant, -1) + b"1e\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n")
        answers = read_until_closed(sock, wait_s=3)
    assert answers.count(b"HTTP/1.1 ") == 1 and b'"unsupported_upgrade"' in answers


# --- TLS handshakes other clients make -----------------------------------------------------------------
@pytest.mark.parametrize(("offered", "selected"), [(["h2", "http/1.1"], "http/1.1"), (["h2"], None)])
def test_alpn_never_selects_h2(server: Any, offered: list[str], selected: str | None) -> None:
    host, port = address(server.url)
    with tls_context(server, offered).wrap_socket(socket.create_connection((host, port)), server_hostname=host) as sock:
        assert sock.selected_alpn_protocol() == selected
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(sock)[0] == 200


@pytest.mark.parametrize("sni", [None, "elsewhere.example"])
def test_no_sni_or_another_name_is_still_served(server: Any, sni: str | None) -> None:
    """No virtual hosting: a client behind an IP literal sends no SNI; the certificate is still checked."""
    context = tls_context(server)
    context.check_hostname = False
    host, port = address(server.url)
    with context.wrap_socket(socket.create_connection((host, port)), server_hostname=sni) as sock:
        assert sock.version() == "TLSv1.3"
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(sock)[0] == 200


# --- Python HTTP stacks ------------------------------------------------------------------------------------
def test_urllib_request(server: Any, tenant: dict[str, Any], client: Client) -> None:
    sealed = client.seal_request("echo", PAYLOAD)
    request = urllib.request.Request(
        f"{server.url}/v1/models/echo/infer", data=sealed.body, headers=infer_headers(tenant)
    )
    with urllib.request.urlopen(request, context=tls_context(server), timeout=10) as answer:
        assert sealed.open_response(answer.read()) == PAYLOAD
    key = urllib.request.Request(f"{server.url}/v1/tenants/self/public-key", headers=infer_headers(tenant))
    with urllib.request.urlopen(key, context=tls_context(server), timeout=10) as answer:
        assert json.loads(answer.read())["public_key"] == tenant["public_key"]


def test_http_client_keep_alive_and_a_body_without_content_length(
    server: Any, tenant: dict[str, Any], client: Client
) -> None:
    host, port = address(server.url)
    connection = http.client.HTTPSConnection(host, port, context=tls_context(server), timeout=10)
    try:
        sockets = []
        for chunked in (False, True, False):  # chunked: http.client sends no Content-Length
            sealed = client.seal_request("echo", PAYLOAD)
            body: Any = iter([sealed.body[:1000], sealed.body[1000:]]) if chunked else sealed.body
            connection.request("POST", "/v1/models/echo/infer", body, infer_headers(tenant), encode_chunked=chunked)
            answer = connection.getresponse()
            assert answer.status == 200 and sealed.open_response(answer.read()) == PAYLOAD
            sockets.append(connection.sock)
        assert sockets[0] is not None and sockets.count(sockets[0]) == 3  # one connection, kept alive
    finally:
        connection.close()


def test_requests_session_plain_and_streamed(server: Any, tenant: dict[str, Any], client: Client) -> None:
    requests = pytest.importorskip("requests")
    with requests.Session() as session:
        for streamed in (False, True):
            sealed = client.seal_request("echo", PAYLOAD)
            data = iter([sealed.body[:7], sealed.body[7:]]) if streamed else sealed.body
            answer = session.post(
                f"{server.url}/v1/models/echo/infer",
                data=data,
                headers=infer_headers(tenant),
                verify=server.cert,
                timeout=10,
            )
            assert answer.status_code == 200 and sealed.open_response(answer.content) == PAYLOAD


def test_aiohttp(server: Any, tenant: dict[str, Any], client: Client) -> None:
    aiohttp = pytest.importorskip("aiohttp")
    sealed = client.seal_request("echo", PAYLOAD)

    async def go() -> tuple[int, bytes]:
        async with aiohttp.ClientSession() as session:
            url = f"{server.url}/v1/models/echo/infer"
            async with session.post(url, data=sealed.body, headers=infer_headers(tenant), ssl=tls_context(server)) as r:
                return r.status, await r.read()

    status, body = asyncio.run(go())
    assert status == 200 and sealed.open_response(body) == PAYLOAD


def test_httpx_async_with_http2_enabled_falls_back_to_1_1(server: Any, tenant: dict[str, Any], client: Client) -> None:
    pytest.importorskip("h2")
    sealed = client.seal_request("echo", PAYLOAD)

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(http2=True, verify=tls_context(server), timeout=10) as http:
            return await http.post(
                f"{server.url}/v1/models/echo/infer", content=sealed.body, headers=infer_headers(tenant)
            )

    answer = asyncio.run(go())
    assert answer.http_version == "HTTP/1.1" and sealed.open_response(answer.content) == PAYLOAD


# --- Client: URLs, names, proxies ------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["trailing-slash", "localhost"])
def test_client_url_forms(server: Any, tenant: dict[str, Any], form: str) -> None:
    url = server.url + "/" if form == "trailing-slash" else server.url.replace("127.0.0.1", "localhost")
    with Client(url, api_key=tenant["api_key"], verify=server.cert) as c:
        assert c.infer("echo", b"forms") == b"forms"


DEAD_PROXIES = ["http://127.0.0.1:9", "socks5://127.0.0.1:9"]


@pytest.mark.parametrize("proxy", DEAD_PROXIES)
@pytest.mark.parametrize("variable", ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "https_proxy"])
def test_env_proxies_do_not_apply_to_a_loopback_server(
    server: Any, tenant: dict[str, Any], monkeypatch: pytest.MonkeyPatch, variable: str, proxy: str
) -> None:
    monkeypatch.setenv(variable, proxy)
    started = time.monotonic()
    with Client(server.url, api_key=tenant["api_key"], verify=server.cert, timeout_s=5) as c:
        assert c.infer("echo", b"direct") == b"direct"
    assert time.monotonic() - started < 3


def test_admin_api_does_not_go_through_an_env_proxy(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from cleanroom.admin_client import AdminAPI

    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:9")
    api = AdminAPI(json.loads((Path(server.data_dir) / "server.json").read_text()))
    try:
        assert any(
            name.startswith("other-clients-") for name in json.dumps(api.request("GET", "/v1/admin/tenants")).split('"')
        )
    finally:
        api.close()


# --- fake upstreams on a raw socket ---------------------------------------------------------------------
PRIVATE = ec.generate_private_key(ec.SECP384R1())
KEY = TenantPublicKey("t_0123456789abcdef", "hk_0123456789abcdef", PRIVATE.public_key())
API_KEY = "cr_" + "B" * 36


class Upstream(ThreadedListener):
    """A listener whose `answer(sock, head, body)` plays each request; records heads and connections."""

    def __init__(self, answer: Callable[[socket.socket, bytes, bytes], None], host: str = "127.0.0.1") -> None:
        self.answer, self.heads = answer, []
        super().__init__(host)

    def serve(self, sock: socket.socket) -> None:
        while (request := read_request(sock)) is not None:
            self.heads.append(request[0])
            self.answer(sock, *request)


def honest(sock: socket.socket, head: bytes, body: bytes, extra: bytes = b"") -> None:
    if head.split()[1].endswith(b"/v1/tenants/self/public-key"):
        document = {"tenant_id": KEY.tenant_id, "key_id": KEY.key_id, "public_key": KEY.token(), "chain": []}
        document |= {"suite": "DHKEM(P-384,HKDF-SHA384)/HKDF-SHA384/AES-256-GCM", "fingerprint": KEY.fingerprint()}
        payload, kind = json.dumps(document).encode(), b"application/json"
    else:
        payload, kind = sealed_answer(body, PRIVATE), CONTENT_TYPE.encode()
    sock.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: " + kind + b"\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload + extra
    )


@contextmanager
def upstream(answer: Callable[[socket.socket, bytes, bytes], None], host: str = "127.0.0.1") -> Iterator[Upstream]:
    server = Upstream(answer, host)
    try:
        yield server
    finally:
        server.close()


def test_a_plain_http_loopback_server_is_never_reached_through_http_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The proxy would get the request in clear, API key included; the base URL's path prefix is kept."""
    with upstream(honest) as proxy, upstream(honest) as fake:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        with Client(f"{fake.url}/tenant-a/", api_key=API_KEY) as c:
            assert c.infer("echo", b"prefixed") == b"prefixed"
        assert proxy.heads == [] and proxy.connections == 0
        paths = [h.split()[1] for h in fake.heads]
        assert paths == [b"/tenant-a/v1/tenants/self/public-key", b"/tenant-a/v1/models/echo/infer"]


def test_ipv6_loopback_literal(monkeypatch: pytest.MonkeyPatch) -> None:
    if not socket.has_ipv6:  # a property of the host's network stack, not a service we could start
        pytest.skip("no IPv6")
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:9")
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no ::1 on this host")
    with upstream(honest, "::1") as fake, Client(fake.url, api_key=API_KEY, public_key=KEY) as c:
        assert c.infer("echo", b"v6") == b"v6"
        assert fake.heads[0].split(b"\r\n")[1].lower() == f"host: [::1]:{fake.port}".encode()


def test_env_proxy_is_used_for_a_remote_host_and_sees_no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sealed traffic over TLS may cross a proxy: it gets a CONNECT, never the Authorization header."""

    def refuse(sock: socket.socket, head: bytes, body: bytes) -> None:
        sock.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    with upstream(refuse) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        client = Client("https://cleanroom.invalid", api_key=API_KEY, public_key=KEY, timeout_s=5)
        with client, pytest.raises(httpx.ProxyError):
            client.infer("echo", b"x")
        assert proxy.heads and proxy.heads[0].startswith(b"CONNECT cleanroom.invalid:443 ")
        assert all(API_KEY.encode() not in h for h in proxy.heads)


def test_a_socks_proxy_without_socksio_is_a_value_error_naming_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("socksio") is not None:  # then SOCKS works and the error cannot happen
        pytest.skip("socksio is installed: the SOCKS proxy is usable")
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:9")
    with pytest.raises(ValueError, match="NO_PROXY"):
        Client("https://cleanroom.invalid", api_key=API_KEY)


def test_a_proxys_html_502_is_a_client_error_not_a_json_traceback() -> None:
    page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"

    def bad_gateway(sock: socket.socket, head: bytes, body: bytes) -> None:
        sock.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(page), page))

    with (
        upstream(bad_gateway) as fake,
        Client(fake.url, api_key=API_KEY, public_key=KEY) as c,
        pytest.raises(ClientError) as info,
    ):
        c.infer("echo", b"x")
    assert (info.value.status, info.value.code) == (502, "http_error") and "502 Bad Gateway" in info.value.message
    assert info.value.__context__ is None and info.value.__cause__ is None


def test_connection_refused_and_reset_are_httpx_errors_in_bounded_time() -> None:
    """README: the network is `httpx.HTTPError`; never a hang, never an answer."""
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    started = time.monotonic()
    with Client(f"http://127.0.0.1:{port}", api_key=API_KEY, public_key=KEY) as c, pytest.raises(httpx.ConnectError):
        c.infer("echo", b"x")

    def reset(sock: socket.socket, head: bytes, body: bytes) -> None:
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: " + CONTENT_TYPE.encode() + b"\r\nContent-Length: 500\r\n\r\nCRS1"
        )
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()

    with (
        upstream(reset) as fake,
        Client(fake.url, api_key=API_KEY, public_key=KEY, timeout_s=5) as c,
        pytest.raises(httpx.HTTPError),
    ):
        c.infer("echo", b"x")
    assert time.monotonic() - started < 3


def test_bytes_past_the_announced_length_are_never_an_answer() -> None:
    """A server (or proxy) that sends more than its Content-Length: httpcore would keep the connection and
    read the surplus (here a forged response) as the answer to the next request. The client refuses the
    answer that came with a surplus (`response_framing`) and drops the connection, so the next call opens
    a new one and no byte of the surplus is ever returned."""
    forged = b"HTTP/1.1 200 OK\r\nContent-Type: " + CONTENT_TYPE.encode() + b"\r\nContent-Length: 4\r\n\r\nFAKE"
    with upstream(lambda sock, head, body: honest(sock, head, body, extra=forged)) as fake:
        with Client(fake.url, api_key=API_KEY, public_key=KEY) as c:
            for payload in (b"first", b"second"):
                with pytest.raises(UnexpectedResponse) as caught:
                    c.infer("echo", payload)
                assert caught.value.code == "response_framing"
        assert fake.connections == 2
