"""A fourth labelled corpus for the log redactor: real-world log *formats*, not sentences.

The other corpora place values in synthetic lines or in the tools around a service; this one reproduces the
byte layout of what logging stacks and infrastructure actually emit, with the sensitive values where those
formats put them: nginx/Apache combined access logs (secrets URL-encoded in query strings, addresses in
referers), structured JSON from structlog, pino, zap, logrus, Serilog and logstash, RFC 5424 syslog with
structured data, `kubectl get events` / `kubectl describe pod`, Postgres and MySQL server logs with
connection strings, CloudTrail and GCP audit records, `curl -v` transcripts, Python tracebacks that print
locals, Java stack traces whose exception messages carry values, `.env` / `export` / `docker run -e` /
YAML / TOML / INI dumps, HTTP header dumps in any case, CSV rows; values in single quotes and backticks,
JSON escaped inside JSON, base64-wrapped JSON, and surrounding text in other languages.

Each format also carries the look-alikes it really carries: UUIDs, git SHAs, trace/span ids, pod name
hashes, image digests, semver, dates in many spellings, durations, byte counts, paths, plain URLs,
Luhn-invalid numbers, ISBNs, order ids, memory addresses, SSH key fingerprints, AWS account ids and ARNs.

Labels use tests/redaction_corpus.py's `Sample` through tests/redaction_corpus_unseen.py's `mk`: every
sensitive value on a line is a positive span (incidental ones too, such as an access log's client
address), every look-alike a negative span. Value generators are imported from the other corpora, not
copied. Policy (docs/logging.md): IP addresses are PII (127.0.0.1 and 0.0.0.0 are not labelled); a
cookie's value is sensitive, its name and attributes are not labelled either way.
"""

# ruff: noqa: E501, RUF001  (test data: long literal tokens and log lines; full-width commas in Chinese text)

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from urllib.parse import quote

from redaction_corpus import Sample
from redaction_corpus_redteam import (
    PEM_KINDS,
    PROVIDER_TOKENS,
    p_card,
    p_email,
    p_iban,
    p_ipv4,
    p_ipv6,
    p_phone_intl,
    p_phone_nanp,
    p_ssn,
    pem_body,
    t_aws_key_id,
    t_aws_secret,
    t_jwt,
    t_opaque,
    t_password,
)
from redaction_corpus_unseen import (
    ALNUM,
    DIGITS,
    HEX,
    LOWER,
    Frag,
    _mixed,
    _r,
    mk,
    n_bytes,
    n_digest,
    n_duration,
    n_isbn,
    n_order,
    n_path,
    n_sha,
    n_span,
    n_trace,
    n_url,
    n_uuid,
    n_version,
    v_cookie,
    v_url_password,
)

B64 = ALNUM + "+/"


# ---------------------------------------------------------------------------------------------------------
# positives: (value, type)
# ---------------------------------------------------------------------------------------------------------
def provider(rng: random.Random) -> Frag:
    """A token with an issuer's prefix (GitHub, GitLab, Slack, Stripe, OpenAI, Anthropic, HF, npm, ...)."""
    name, gen = rng.choice([(n, g) for n, g in PROVIDER_TOKENS if n not in ("aws_key_id", "jwt")])
    return (gen(rng), "provider_token")


def password(rng: random.Random, quoted: bool = True) -> Frag:
    return (t_password(rng, quoted), "password")


def bare_password(rng: random.Random) -> Frag:
    """A password with no character that ends an unquoted value (`,`, `;`, `&`, `"`, space)."""
    while True:
        value = t_password(rng, quoted=False)
        if not any(c in value for c in ",;&\"' #"):
            return (value, "password")


def secret(rng: random.Random) -> Frag:
    """An opaque token of no known provider, under a key name that says it is secret."""
    return (t_opaque(rng), "secret")


def aws_id(rng: random.Random) -> Frag:
    return (t_aws_key_id(rng), "aws_key_id")


def aws_secret(rng: random.Random) -> Frag:
    return (t_aws_secret(rng), "aws_secret")


def jwt(rng: random.Random) -> Frag:
    while True:
        token = t_jwt(rng)
        if not token.endswith("."):  # an unsecured JWT's trailing dot is ambiguous at a sentence end
            return (token, "jwt")


def email(rng: random.Random) -> Frag:
    return (p_email(rng), "email")


def phone(rng: random.Random) -> Frag:
    return ((p_phone_nanp if rng.random() < 0.5 else p_phone_intl)(rng), "phone")


def card(rng: random.Random) -> Frag:
    return (p_card(rng), "credit_card")


def ssn(rng: random.Random) -> Frag:
    return (p_ssn(rng), "ssn")


def iban(rng: random.Random) -> Frag:
    return (p_iban(rng), "iban")


def ipv4(rng: random.Random) -> Frag:
    return (p_ipv4(rng), "ipv4")


def ipv6(rng: random.Random) -> Frag:
    return (p_ipv6(rng), "ipv6")


def ip(rng: random.Random) -> Frag:
    return ipv4(rng) if rng.random() < 0.75 else ipv6(rng)


def pii(rng: random.Random) -> Frag:
    return rng.choice([email, phone, card, ssn, iban, ipv4, ipv6])(rng)


def any_secret(rng: random.Random) -> Frag:
    return rng.choice([provider, provider, jwt, aws_id, secret])(rng)


# ---------------------------------------------------------------------------------------------------------
# look-alikes: (value, ~kind)
# ---------------------------------------------------------------------------------------------------------
def n_pod(rng: random.Random) -> Frag:
    name = rng.choice(["api", "billing-worker", "ingress-nginx-controller", "redis-master", "web"])
    rs = _r(rng, "bcdfghjklmnpqrstvwxz2456789", rng.choice([9, 10]))
    return (f"{name}-{rs}-{_r(rng, 'bcdfghjklmnpqrstvwxz2456789', 5)}", "~pod_name")


def n_date(rng: random.Random) -> Frag:
    d, mo, y = rng.randrange(1, 29), rng.randrange(1, 13), 2026
    h, mi, s = rng.randrange(24), rng.randrange(60), rng.randrange(60)
    mon = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][mo - 1]
    return (
        rng.choice(
            [
                f"{y}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{_r(rng, DIGITS, 6)}Z",
                f"{y}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}.{_r(rng, DIGITS, 3)} UTC",
                f"{mon} {d:2d} {h:02d}:{mi:02d}:{s:02d}",
                f"{d:02d}.{mo:02d}.{y} {h:02d}:{mi:02d}",
                f"{y}/{mo:02d}/{d:02d} {h:02d}:{mi:02d}:{s:02d}",
                f"Sun, {d:02d} {mon} {y} {h:02d}:{mi:02d}:{s:02d} GMT",
                f"{d:02d}/{mon}/{y}:{h:02d}:{mi:02d}:{s:02d} +0000",
                f"{mo:02d}/{d:02d}/{y} {h % 12 + 1}:{mi:02d}:{s:02d} PM",
                str(1764300000 + rng.randrange(10**7)),
                f"{1764300000 + rng.randrange(10**7)}.{_r(rng, DIGITS, 3)}",
                str(1764300000000 + rng.randrange(10**10)),
            ]
        ),
        "~date",
    )


def n_ts(rng: random.Random) -> Frag:
    return (
        f"2026-11-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{_r(rng, DIGITS, 3)}Z",
        "~date",
    )


def n_memaddr(rng: random.Random) -> Frag:
    return ("0x7f" + _r(rng, HEX, 10), "~address")


def n_fingerprint(rng: random.Random) -> Frag:
    return ("SHA256:" + base64.b64encode(rng.randbytes(32)).decode().rstrip("="), "~fingerprint")


def n_account(rng: random.Random) -> Frag:
    return (_r(rng, DIGITS, 12), "~account_id")


def n_luhn_bad(rng: random.Random) -> Frag:
    return n_order(rng)


def n_port(rng: random.Random) -> str:
    return str(rng.randrange(1024, 65535))


def n_status(rng: random.Random) -> str:
    return rng.choice(["200", "201", "204", "301", "302", "400", "401", "403", "404", "500", "502"])


def n_ua(rng: random.Random) -> str:
    return rng.choice(
        [
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
            "curl/8.5.0",
            "python-requests/2.32.3",
            "Go-http-client/2.0",
            "kube-probe/1.31",
            "aws-cli/2.22.4 md/Botocore#1.35.70 ua/2.0 os/linux#6.8.0 md/arch#x86_64 lang/python#3.12.6",
        ]
    )


def n_any(rng: random.Random) -> Frag:
    return rng.choice(
        [
            n_uuid,
            n_sha,
            n_trace,
            n_span,
            n_digest,
            n_version,
            n_date,
            n_duration,
            n_bytes,
            n_path,
            n_url,
            n_luhn_bad,
            n_isbn,
            n_pod,
            n_memaddr,
            n_account,
        ]
    )(rng)


def _jq(value: str) -> str:
    """A value as it sits inside a JSON string (without the quotes)."""
    return json.dumps(value)[1:-1]


# ---------------------------------------------------------------------------------------------------------
# formats
# ---------------------------------------------------------------------------------------------------------
def f_access_log(rng: random.Random) -> Sample:
    """nginx/Apache combined: client, ident, user, [time], "request", status, bytes, "referer", "agent"."""
    method = rng.choice(["GET", "POST", "GET", "PUT"])
    head: list[Frag] = [
        ip(rng),
        " - - [",
        (f"29/Nov/2026:{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d} +0000", "~date"),
        f'] "{method} ',
    ]
    k = rng.randrange(8)
    if k == 0:
        qk = rng.choice(["access_token", "api_key", "apikey", "token", "auth_token", "client_secret", "key"])
        req: list[Frag] = [f"/api/v2/export?{qk}=", any_secret(rng), "&format=csv&request_id=", n_uuid(rng)]
    elif k == 1:
        req = [
            "/login?user=",
            (quote(p_email(rng), safe=""), "email"),
            "&password=",
            (quote(t_password(rng), safe=""), "password"),
            "&next=%2Fdashboard",
        ]
    elif k == 2:
        req = [
            "/track?email=",
            (quote(p_email(rng), safe=""), "email"),
            "&phone=",
            (quote(p_phone_intl(rng), safe=""), "phone"),
            "&v=",
            n_version(rng),
        ]
    elif k == 3:
        req = ["/static/js/app.", (_r(rng, HEX, 20), "~content_hash"), ".js?v=", n_sha(rng)]
    elif k == 4:
        req = ["/oauth/callback?code=", (_mixed(rng, ALNUM, 40), "secret"), "&state=", n_uuid(rng)]
    elif k == 5:
        req = ["/api/orders/", n_luhn_bad(rng), "/items?page=2&size=50"]
    elif k == 6:
        req = [
            "/hooks/slack?token=",
            (_mixed(rng, ALNUM, 24), "secret"),
            "&team=T0",
            _r(rng, "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", 8),
        ]
    else:
        req = [
            "/download/report-",
            (f"2026-11-{rng.randrange(1, 29):02d}", "~date"),
            ".pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=",
            aws_id(rng),
            "%2F20261129%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=",
            (_r(rng, HEX, 64), "url_signature"),
        ]
    tail: list[Frag] = [
        f' HTTP/1.1" {n_status(rng)} ',
        n_bytes(rng) if rng.random() < 0.3 else str(rng.randrange(100, 90000)),
        ' "',
    ]
    r = rng.randrange(3)
    ref: list[Frag]
    if r == 0:
        ref = ["https://mail.example.com/inbox?to=", email(rng)]
    elif r == 1:
        ref = ["-"]
    else:
        ref = [n_url(rng)]
    end: list[Frag] = [f'" "{n_ua(rng)}"']
    if rng.random() < 0.4:
        end += [
            " rt=",
            f"{rng.random():.3f}",
            " uct=",
            f"{rng.random():.3f}",
            " upstream=",
            ipv4(rng),
            f":{n_port(rng)}",
        ]
    return mk(*head, *req, *tail, *ref, *end)


def f_apache_error(rng: random.Random) -> Sample:
    return mk(
        "[",
        (
            f"Sun Nov 29 {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{_r(rng, DIGITS, 6)} 2026",
            "~date",
        ),
        f"] [proxy:error] [pid {rng.randrange(1000, 99999)}:tid {rng.randrange(10**14, 10**15)}] [client ",
        ip(rng),
        f":{n_port(rng)}] AH01114: HTTP: failed to make connection to backend: ",
        ipv4(rng),
        ", referer: https://shop.example.com/checkout?email=",
        (quote(p_email(rng), safe="@"), "email"),
    )


def f_structlog(rng: random.Random) -> Sample:
    k = rng.randrange(5)
    base: list[Frag] = ['{"event": "']
    if k == 0:
        body: list[Frag] = [
            'login failed", "user_email": "',
            email(rng),
            '", "password": "',
            (_jq(t_password(rng)), "password"),
            '", "attempt": 3',
        ]
    elif k == 1:
        body = [
            'calling upstream", "url": "',
            n_url(rng),
            '", "headers": {"Authorization": "Bearer ',
            any_secret(rng),
            '", "Accept": "application/json"}',
        ]
    elif k == 2:
        body = [
            'payment captured", "card": "',
            card(rng),
            '", "amount_cents": ',
            str(rng.randrange(100, 99999)),
            ', "order_id": "',
            n_luhn_bad(rng),
            '"',
        ]
    elif k == 3:
        body = [
            'profile updated", "changes": {"phone": ["',
            phone(rng),
            '", "',
            phone(rng),
            '"], "ssn": "',
            ssn(rng),
            '"}',
        ]
    else:
        body = [
            'settings loaded", "config": {"database_url": "postgresql://app:',
            (v_url_password(rng), "password"),
            "@",
            rng.choice(["db", "pg-0.pg.svc"]),
            ':5432/app", "secret_key": "',
            secret(rng),
            '", "debug": false}',
        ]
    tail: list[Frag] = [
        ', "logger": "app.auth", "level": "',
        rng.choice(["info", "warning", "error"]),
        '", "timestamp": "',
        n_ts(rng),
        '", "request_id": "',
        n_uuid(rng),
        '"}',
    ]
    return mk(*base, *body, *tail)


def f_pino(rng: random.Random) -> Sample:
    host = n_pod(rng)
    head: list[Frag] = [
        '{"level":',
        rng.choice(["30", "40", "50"]),
        ',"time":',
        (str(1764300000000 + rng.randrange(10**9)), "~date"),
        f',"pid":{rng.randrange(1, 65000)},"hostname":"',
        host,
        '",',
    ]
    k = rng.randrange(4)
    if k == 0:
        body: list[Frag] = [
            '"req":{"id":',
            str(rng.randrange(1, 9999)),
            ',"method":"POST","url":"/api/login","headers":{"host":"api.example.com","authorization":"Bearer ',
            jwt(rng),
            '","cookie":"sid=',
            (v_cookie(rng), "cookie"),
            '"},"remoteAddress":"',
            ip(rng),
            '","remotePort":',
            n_port(rng),
            '},"msg":"request completed","responseTime":',
            str(rng.randrange(1, 900)),
        ]
    elif k == 1:
        body = [
            '"req":{"method":"GET","url":"/v1/items","headers":{"x-api-key":"',
            any_secret(rng),
            '","user-agent":"',
            n_ua(rng),
            '"}},"res":{"statusCode":',
            n_status(rng),
            '},"msg":"request completed"',
        ]
    elif k == 2:
        body = [
            '"err":{"type":"Error","message":"getaddrinfo ENOTFOUND cache","stack":"Error: getaddrinfo ENOTFOUND cache\\n    at GetAddrInfoReqWrap.onlookup (node:dns:109:26)"},"msg":"redis url redis://default:',
            (v_url_password(rng), "password"),
            '@cache:6379/0 unreachable"',
        ]
    else:
        body = ['"user":{"id":"', n_uuid(rng), '","email":"', email(rng), '","ip":"', ip(rng), '"},"msg":"signup"']
    return mk(*head, *body, "}")


def f_zap(rng: random.Random) -> Sample:
    if rng.random() < 0.5:
        k = rng.randrange(3)
        body: list[Frag]
        if k == 0:
            body = [
                '"msg":"connecting","dsn":"postgres://',
                rng.choice(["app", "svc_ro"]),
                ":",
                (v_url_password(rng), "password"),
                '@db.internal:5432/orders?sslmode=require"',
            ]
        elif k == 1:
            body = ['"msg":"token refreshed","access_token":"', any_secret(rng), '","expires_in":3600']
        else:
            body = [
                '"msg":"peer connected","peer":"',
                ip(rng),
                '","bytes":',
                str(rng.randrange(10**6)),
                ',"image":"',
                n_digest(rng),
                '"',
            ]
        return mk(
            '{"level":"',
            rng.choice(["info", "debug", "error"]),
            '","ts":',
            (f"{1764300000 + rng.randrange(10**6)}.{_r(rng, DIGITS, 7)}", "~date"),
            ',"caller":"server/handler.go:',
            str(rng.randrange(10, 999)),
            '",',
            *body,
            ',"trace_id":"',
            n_trace(rng),
            '","span_id":"',
            n_span(rng),
            '"}',
        )
    # development console encoder: tab separated, fields as JSON
    return mk(
        n_ts(rng),
        "\tERROR\tgrpc/auth.go:",
        str(rng.randrange(10, 400)),
        "\tauthentication failed\t",
        '{"client_ip": "',
        ip(rng),
        '", "api_key": "',
        any_secret(rng),
        '", "latency": "',
        n_duration(rng),
        '"}',
    )


def f_logrus(rng: random.Random) -> Sample:
    k = rng.randrange(4)
    head: list[Frag] = ['time="', n_ts(rng), '" level=', rng.choice(["info", "warning", "error"]), " "]
    if k == 0:
        return mk(*head, 'msg="auth failed" api_key=', any_secret(rng), " user=", email(rng), " remote=", ip(rng))
    if k == 1:
        return mk(
            *head,
            'msg="db connect" password=',
            bare_password(rng),
            " host=db.internal port=5432 took=",
            n_duration(rng),
        )
    if k == 2:
        return mk(
            *head,
            'msg="webhook delivered" url="https://hooks.example.net/',
            _r(rng, LOWER, 6),
            '" status=200 id=',
            n_uuid(rng),
            " bytes=",
            n_bytes(rng),
        )
    return mk(*head, 'msg="customer updated" phone="', phone(rng), '" iban="', iban(rng), '" order=', n_luhn_bad(rng))


def f_serilog(rng: random.Random) -> Sample:
    if rng.random() < 0.6:
        k = rng.randrange(3)
        if k == 0:
            return mk(
                '{"@t":"',
                n_ts(rng),
                '","@mt":"User {Email} signed in from {ClientIp}","@l":"Information","Email":"',
                email(rng),
                '","ClientIp":"',
                ip(rng),
                '","SourceContext":"Acme.Web.AccountController","RequestId":"',
                (
                    f"0HN{_r(rng, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789', 9)}:0000000{rng.randrange(1, 9)}",
                    "~request_id",
                ),
                '"}',
            )
        if k == 1:
            return mk(
                '{"@t":"',
                n_ts(rng),
                '","@mt":"Opening {ConnectionString}","ConnectionString":"Server=tcp:acme.database.windows.net,1433;Initial Catalog=orders;User ID=app;Password=',
                bare_password(rng),
                ';Encrypt=True;"}',
            )
        return mk(
            '{"@t":"',
            n_ts(rng),
            '","@mt":"Charged {Card} for {Amount}","@l":"Warning","Card":"',
            card(rng),
            '","Amount":',
            str(rng.randrange(1, 9999)),
            ',"TraceId":"',
            n_trace(rng),
            '","SpanId":"',
            n_span(rng),
            '"}',
        )
    return mk(
        "[",
        (f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}", "~date"),
        " ERR] Login for ",
        email(rng),
        " failed; ApiKey=",
        any_secret(rng),
        " (elapsed ",
        n_duration(rng),
        ")",
    )


def f_logstash(rng: random.Random) -> Sample:
    return mk(
        '{"@timestamp":"',
        n_ts(rng),
        '","@version":"1","message":"',
        rng.choice(["order placed by ", "password reset requested by "]),
        email(rng),
        '","host":{"name":"',
        n_pod(rng),
        '","ip":["',
        ipv4(rng),
        '","',
        ipv6(rng),
        '"]},"fields":{"auth_token":"',
        secret(rng),
        '","build":"',
        n_sha(rng),
        '"},"tags":["_grokparsefailure"]}',
    )


def f_syslog(rng: random.Random) -> Sample:
    pri = rng.choice(["<34>1", "<165>1", "<86>1", "<13>1"])
    k = rng.randrange(4)
    head: list[Frag] = [
        pri,
        " ",
        n_ts(rng),
        " ",
        rng.choice(["web-01.example.com", "bastion", "mymachine.example.com"]),
        " ",
    ]
    if k == 0:
        return mk(
            *head,
            f"sshd {rng.randrange(100, 65000)} - - Accepted publickey for deploy from ",
            ip(rng),
            f" port {n_port(rng)} ssh2: ED25519 ",
            n_fingerprint(rng),
        )
    if k == 1:
        return mk(
            *head,
            f'app {rng.randrange(100, 65000)} ID47 [exampleSDID@32473 iut="3" eventSource="Application" user="',
            email(rng),
            '" password="',
            (_jq(t_password(rng)).replace("]", "").replace('"', ""), "password"),
            '"] login attempt from ',
            ip(rng),
        )
    if k == 2:
        return mk(
            *head,
            f'billing {rng.randrange(100, 65000)} - [meta sequenceId="{rng.randrange(1, 10**6)}" traceId="',
            n_trace(rng),
            '"] refund to ',
            iban(rng),
            " ok, ref=",
            n_luhn_bad(rng),
        )
    return mk(
        *head,
        "sudo - - - deploy : TTY=pts/0 ; PWD=/home/deploy ; USER=root ; COMMAND=/usr/bin/docker login -u ci -p ",
        bare_password(rng),
        " registry.example.com",
    )


def f_k8s(rng: random.Random) -> Sample:
    k = rng.randrange(8)
    if k == 0:
        return mk(
            f"{rng.randrange(1, 59)}m  Warning  Failed  pod/",
            n_pod(rng),
            '  Failed to pull image "registry.example.com/api@',
            n_digest(rng),
            '": unauthorized: authentication required',
        )
    if k == 1:
        return mk(
            f"{rng.randrange(1, 59)}s  Normal  Pulled  pod/",
            n_pod(rng),
            '  Successfully pulled image "ghcr.io/acme/api:',
            n_version(rng),
            '" in ',
            n_duration(rng),
            " (",
            n_duration(rng),
            " including waiting). Image size: ",
            (str(rng.randrange(10**7, 10**9)), "~bytes"),
            " bytes.",
        )
    if k == 2:
        key = rng.choice(["DB_PASSWORD", "POSTGRES_PASSWORD", "ADMIN_PASS", "SMTP_PASSWORD"])
        return mk(f"      {key}:".ljust(28), bare_password(rng))
    if k == 3:
        key = rng.choice(["API_TOKEN", "STRIPE_SECRET_KEY", "GITHUB_TOKEN", "OPENAI_API_KEY", "HF_TOKEN"])
        return mk(f"      {key}:".ljust(28), any_secret(rng))
    if k == 4:
        return mk(
            "      API_TOKEN:                 <set to the key 'token' in secret 'api-credentials'>  Optional: false"
        )
    if k == 5:
        return mk("    Container ID:   containerd://", (_r(rng, HEX, 64), "~container_id"))
    if k == 6:
        return mk("Node:             worker-3/", ipv4(rng))
    return mk("IP:               ", ipv4(rng), "  Controlled By:  ReplicaSet/", n_pod(rng))


def f_database(rng: random.Random) -> Sample:
    k = rng.randrange(7)
    pg: list[Frag] = [
        (
            f"2026-11-{rng.randrange(1, 29):02d} {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{_r(rng, DIGITS, 3)} UTC",
            "~date",
        ),
        f" [{rng.randrange(100, 99999)}] ",
    ]
    if k == 0:
        return mk(*pg, "app@orders LOG:  connection received: host=", ip(rng), f" port={n_port(rng)}")
    if k == 1:
        return mk(
            *pg,
            "postgres@postgres LOG:  statement: ALTER ROLE app WITH LOGIN PASSWORD '",
            bare_password(rng),
            "' VALID UNTIL '2027-01-01'",
        )
    if k == 2:
        return mk(
            *pg,
            "ERROR:  could not connect to server: dsn=host=db port=5432 user=app password=",
            bare_password(rng),
            " dbname=orders sslmode=require",
        )
    if k == 3:
        return mk(
            (
                f"2026-11-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{_r(rng, DIGITS, 6)}Z",
                "~date",
            ),
            f" {rng.randrange(1, 999)} [Warning] [MY-010055] [Server] IP address '",
            ipv4(rng),
            "' could not be resolved: Name or service not known",
        )
    if k == 4:
        return mk(
            "jdbc:mysql://mysql.internal:3306/shop?user=shop&password=",
            (quote(t_password(rng), safe="!*-._~"), "password"),
            "&useSSL=true",
        )
    if k == 5:
        return mk(
            "MongoServerSelectionError: connect to mongodb+srv://svc:",
            (v_url_password(rng), "password"),
            "@cluster0.",
            _r(rng, LOWER + DIGITS, 5),
            ".mongodb.net/prod?retryWrites=true timed out after ",
            n_duration(rng),
        )
    return mk(
        *pg,
        "LOG:  duration: ",
        n_duration(rng),
        "  execute <unnamed>: SELECT * FROM users WHERE email = '",
        email(rng),
        "' AND id = ",
        n_luhn_bad(rng),
    )


def f_cloud_audit(rng: random.Random) -> Sample:
    if rng.random() < 0.55:
        k = rng.randrange(2)
        ident: list[Frag] = [
            '{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"',
            (rng.choice(["AIDA", "AROA"]) + _r(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 17), "~aws_unique_id"),
            '","arn":"arn:aws:iam::',
            n_account(rng),
            ':user/deploy","accountId":"',
            n_account(rng),
            '","accessKeyId":"',
            aws_id(rng),
            '"},"eventTime":"',
            (
                f"2026-11-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z",
                "~date",
            ),
            '","eventSource":"sts.amazonaws.com","eventName":"GetSessionToken","sourceIPAddress":"',
            ip(rng),
            '","userAgent":"',
            n_ua(rng),
            '",',
        ]
        if k == 0:
            body: list[Frag] = [
                '"responseElements":{"credentials":{"accessKeyId":"',
                aws_id(rng),
                '","secretAccessKey":"',
                aws_secret(rng),
                '","sessionToken":"',
                (base64.b64encode(rng.randbytes(rng.choice([120, 240]))).decode(), "secret"),
                '","expiration":"Nov 29, 2026, 11:00:00 PM"}},',
            ]
        else:
            body = [
                '"requestParameters":{"bucketName":"acme-logs","key":"exports/',
                n_uuid(rng),
                '.csv"},"responseElements":null,',
            ]
        return mk(*ident, *body, '"requestID":"', n_uuid(rng), '","eventID":"', n_uuid(rng), '"}')
    sa = f"{rng.choice(['deployer', 'ci-runner', 'etl'])}@{rng.choice(['acme-prod', 'shop-staging-4471'])}.iam.gserviceaccount.com"
    return mk(
        '{"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","authenticationInfo":{"principalEmail":"',
        email(rng),
        '","serviceAccountDelegationInfo":[{"firstPartyPrincipal":{"principalEmail":"',
        (sa, "email"),
        '"}}]},"requestMetadata":{"callerIp":"',
        ip(rng),
        '","callerSuppliedUserAgent":"google-cloud-sdk gcloud/502.0.0"},"methodName":"google.iam.admin.v1.CreateServiceAccountKey"},"insertId":"',
        (_r(rng, LOWER + DIGITS, 12), "~insert_id"),
        '","timestamp":"',
        n_ts(rng),
        '","receiveTimestamp":"',
        n_ts(rng),
        '"}',
    )


def f_curl(rng: random.Random) -> Sample:
    k = rng.randrange(8)
    if k == 0:
        return mk("*   Trying ", ipv4(rng), f":{rng.choice(['443', '80', '8443'])}...")
    if k == 1:
        return mk("* Connected to api.example.com (", ip(rng), ") port 443 (#0)")
    if k == 2:
        return mk(
            rng.choice(["> authorization: Bearer ", "> Authorization: Bearer ", "> AUTHORIZATION: bearer "]),
            any_secret(rng),
        )
    if k == 3:
        user, pw = rng.choice(["ci", "admin", "jane"]), t_password(rng, quoted=False)
        b = base64.b64encode(f"{user}:{pw}".encode()).decode()
        return mk("> Authorization: Basic ", (b, "authorization"))
    if k == 4:
        return mk(rng.choice(["> X-Api-Key: ", "> x-api-key: ", "> X-API-KEY: ", "> x-auth-token: "]), any_secret(rng))
    if k == 5:
        return mk(
            "< set-cookie: __Host-session=", (v_cookie(rng), "cookie"), "; Path=/; Secure; HttpOnly; SameSite=Lax"
        )
    if k == 6:
        return mk("< x-request-id: ", n_uuid(rng), "\r")
    return mk(
        "< date: ",
        (
            f"Sun, {rng.randrange(1, 29):02d} Nov 2026 {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d} GMT",
            "~date",
        ),
    )


def f_headers(rng: random.Random) -> Sample:
    """Header dumps as frameworks print them: dict reprs, `Name: value` lists, mixed case."""
    k = rng.randrange(4)
    if k == 0:
        return mk(
            "request headers: {'host': 'api.example.com', 'authorization': 'Bearer ",
            any_secret(rng),
            "', 'x-forwarded-for': '",
            ip(rng),
            "', 'x-request-id': '",
            n_uuid(rng),
            "'}",
        )
    if k == 1:
        return mk(
            "Headers: Cookie: _ga=",
            ("GA1.2." + str(rng.randrange(10**9, 10**10)) + "." + str(rng.randrange(1700000000, 1770000000)), "cookie"),
            "; session=",
            (v_cookie(rng), "cookie"),
        )
    if k == 2:
        return mk("headers=map[Accept:[*/*] Authorization:[Bearer ", jwt(rng), "] X-Forwarded-For:[", ipv4(rng), "]]")
    return mk(
        "X-Api-Key=", any_secret(rng), " X-Trace-Id=", n_trace(rng), " Content-Length=", str(rng.randrange(10, 9999))
    )


def f_py_locals(rng: random.Random) -> Sample:
    k = rng.randrange(7)
    if k == 0:
        return mk(
            '  File "/srv/app/.venv/lib/python3.12/site-packages/psycopg/connection.py", line ',
            str(rng.randrange(10, 999)),
            ", in connect",
        )
    if k == 1:
        return mk("    password   = '", password(rng), "'")
    if k == 2:
        return mk("    api_key    = '", any_secret(rng), "'")
    if k == 3:
        return mk(
            "    user       = {'id': ",
            str(rng.randrange(1, 10**6)),
            ", 'email': '",
            email(rng),
            "', 'phone': '",
            phone(rng),
            "'}",
        )
    if k == 4:
        return mk("    self       = <app.clients.PaymentClient object at ", n_memaddr(rng), ">")
    if k == 5:
        return mk(
            'psycopg.OperationalError: connection failed: FATAL:  password authentication failed for user "app" (dsn=\'postgresql://app:',
            (v_url_password(rng), "password"),
            "@db:5432/app')",
        )
    return mk("    headers    = {'Authorization': 'Token ", secret(rng), "', 'X-Request-Id': '", n_uuid(rng), "'}")


def f_java(rng: random.Random) -> Sample:
    k = rng.randrange(6)
    if k == 0:
        return mk("java.sql.SQLException: Access denied for user 'shop'@'", ipv4(rng), "' (using password: YES)")
    if k == 1:
        return mk(
            "Caused by: org.springframework.boot.context.properties.bind.BindException: Failed to bind properties under 'spring.datasource.password' to java.lang.String: Property: spring.datasource.password Value: \"",
            (t_password(rng).replace('"', ""), "password"),
            '" Origin: System Environment Property "SPRING_DATASOURCE_PASSWORD"',
        )
    if k == 2:
        return mk(
            "com.stripe.exception.AuthenticationException: Invalid API Key provided: ",
            ("sk_live_" + "*" * 20 + _r(rng, ALNUM, 4), "~masked"),
            "; code: api_key_invalid; request-id: req_",
            (_r(rng, ALNUM, 14), "~request_id"),
        )
    if k == 3:
        return mk("java.lang.IllegalArgumentException: invalid IBAN ", iban(rng), " for customer ", n_uuid(rng))
    if k == 4:
        return mk(
            "\tat com.acme.billing.CardService.charge(CardService.java:",
            str(rng.randrange(10, 999)),
            ") ~[billing-",
            n_version(rng),
            ".jar:na]",
        )
    return mk(
        "javax.mail.AuthenticationFailedException: 535 5.7.8 credentials rejected for ", email(rng), " from ", ip(rng)
    )


def f_config(rng: random.Random) -> Sample:
    k = rng.randrange(12)
    if k == 0:
        return mk("DATABASE_URL=postgres://app:", (v_url_password(rng), "password"), "@db.internal:5432/app")
    if k == 1:
        return mk("export AWS_SECRET_ACCESS_KEY=", aws_secret(rng))
    if k == 2:
        return mk("export AWS_ACCESS_KEY_ID=", aws_id(rng))
    if k == 3:
        return mk(
            "docker run -d -e POSTGRES_PASSWORD=",
            bare_password(rng),
            " -e API_KEY=",
            any_secret(rng),
            " -p 5432:5432 postgres@",
            n_digest(rng),
        )
    if k == 4:
        return mk('  password: "', (t_password(rng).replace('"', "").replace("\\", ""), "password"), '"')
    if k == 5:
        return mk("  client_secret: ", secret(rng))
    if k == 6:
        return mk('api_key = "', any_secret(rng), '"')
    if k == 7:
        return mk("password = ", bare_password(rng))
    if k == 8:
        return mk(
            "SENTRY_DSN=https://",
            (_r(rng, HEX, 32), "secret"),
            "@o",
            str(rng.randrange(10**5, 10**6)),
            ".ingest.sentry.io/",
            str(rng.randrange(10**6, 10**7)),
        )
    if k == 9:
        return mk("image: ghcr.io/acme/api:", n_version(rng), "  # digest ", n_digest(rng))
    if k == 10:
        return mk("STRIPE_SECRET_KEY='", provider(rng), "'")
    return mk("[database]\nhost = db.internal\nuser = app\npassword = ", bare_password(rng), "\nport = 5432")


def f_csv(rng: random.Random) -> Sample:
    if rng.random() < 0.7:
        return mk(
            str(rng.randrange(1, 10**6)),
            ",",
            rng.choice(["Jane Doe", "Wei Zhang", "Olga Ivanova"]),
            ",",
            email(rng),
            ",",
            (p_phone_nanp(rng).replace(",", ""), "phone"),
            ",",
            card(rng),
            ",",
            n_ts(rng),
            ",",
            n_luhn_bad(rng),
        )
    return mk(
        '"',
        n_uuid(rng),
        '","',
        ssn(rng),
        '","',
        iban(rng),
        '","',
        ipv4(rng),
        '","',
        (f"{rng.randrange(1, 999)}.{rng.randrange(100):02d}", "~amount"),
        '"',
    )


def f_quoting(rng: random.Random) -> Sample:
    k = rng.randrange(7)
    if k == 0:
        return mk("set `API_KEY` to `", any_secret(rng), "` in ", n_path(rng))
    if k == 1:
        return mk("password='", (t_password(rng).replace("'", ""), "password"), "' user='app'")
    if k == 2:
        body = json.dumps({"username": "jane", "password": t_password(rng)})
        pw = json.loads(body)["password"]
        esc = json.dumps(body)[1:-1]
        at = esc.index(_jq(_jq(pw)))
        return mk(
            '{"msg":"upstream body","body":"',
            esc[:at],
            (_jq(_jq(pw)), "password"),
            esc[at + len(_jq(_jq(pw))) :],
            '","status":401}',
        )
    if k == 3:
        body = json.dumps({"user": "ci", "password": t_password(rng), "host": "db"}).encode()
        return mk("X-Config: ", (base64.b64encode(body).decode(), "password"))
    if k == 4:
        return mk("password: `", (t_password(rng).replace("`", ""), "password"), "`")
    if k == 5:
        return mk("msg='auth' token='", any_secret(rng), "' trace='", n_trace(rng), "'")
    return mk('{\\"email\\":\\"', email(rng), '\\",\\"ip\\":\\"', ipv4(rng), '\\"}')


def f_foreign(rng: random.Random) -> Sample:
    k = rng.randrange(6)
    if k == 0:
        return mk("Benutzer ", email(rng), " hat sich angemeldet, Passwort: ", bare_password(rng))
    if k == 1:
        return mk(
            "用户 ", email(rng), " 登录失败，手机号 ", (p_phone_intl(rng), "phone"), "，密码=", bare_password(rng)
        )
    if k == 2:
        return mk("Échec de connexion pour ", email(rng), " depuis ", ip(rng), " : mot de passe=", bare_password(rng))
    if k == 3:
        return mk("ユーザー ", email(rng), " のパスワード: ", bare_password(rng), " (", n_date(rng), ")")
    if k == 4:
        return mk("Ошибка оплаты: карта ", card(rng), ", заказ ", n_luhn_bad(rng), ", клиент ", email(rng))
    return mk("Pago rechazado: IBAN ", iban(rng), ", contraseña: ", bare_password(rng), ", ISBN ", n_isbn(rng))


def f_pem(rng: random.Random) -> Sample:
    kind = rng.choice(PEM_KINDS)
    body = "\\n".join(pem_body(rng))
    return mk(
        '{"level":"debug","msg":"loaded key","key":"-----BEGIN ',
        kind,
        "-----\\n",
        (body, "private_key"),
        "\\n-----END ",
        kind,
        '-----\\n","kid":"',
        n_span(rng),
        '"}',
    )


def f_negative(rng: random.Random) -> Sample:
    """Look-alike-only lines in the same formats."""
    k = rng.randrange(8)
    if k == 0:
        return mk(
            '{"level":"info","msg":"deploy finished","commit":"',
            n_sha(rng),
            '","image":"',
            n_digest(rng),
            '","version":"',
            n_version(rng),
            '","took":"',
            n_duration(rng),
            '","pod":"',
            n_pod(rng),
            '"}',
        )
    if k == 1:
        return mk(
            '127.0.0.1 - - [29/Nov/2026:10:00:00 +0000] "GET /healthz HTTP/1.1" 200 2 "-" "kube-probe/1.31" request_id=',
            n_uuid(rng),
        )
    if k == 2:
        return mk(n_date(rng), " INFO wrote ", n_bytes(rng), " to ", n_path(rng), " in ", n_duration(rng))
    if k == 3:
        return mk("order=", n_luhn_bad(rng), " isbn=", n_isbn(rng), " ref=", n_luhn_bad(rng), " trace=", n_trace(rng))
    if k == 4:
        return mk("see ", n_url(rng), " for details (build ", n_sha(rng), ", ", n_date(rng), ")")
    if k == 5:
        return mk("Accepted publickey for deploy: RSA ", n_fingerprint(rng))
    if k == 6:
        return mk("arn:aws:iam::", n_account(rng), ":role/deploy assumed, session=", n_uuid(rng), " span=", n_span(rng))
    return mk("    Image ID:       docker-pullable://registry.example.com/api@", n_digest(rng))


def f_nginx_error(rng: random.Random) -> Sample:
    """nginx error log: `client:`, `request:`, `upstream:`, `referrer:` fields after the message."""
    return mk(
        (
            f"2026/11/{rng.randrange(1, 29):02d} {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}",
            "~date",
        ),
        f" [error] {rng.randrange(1, 99)}#{rng.randrange(1, 99)}: *{rng.randrange(1, 10**6)} upstream timed out (110: Connection timed out) while reading response header from upstream, client: ",
        ip(rng),
        ', server: api.example.com, request: "GET /v1/report?access_token=',
        any_secret(rng),
        ' HTTP/1.1", upstream: "http://',
        ipv4(rng),
        f':{n_port(rng)}/v1/report", host: "api.example.com"',
    )


def f_envoy(rng: random.Random) -> Sample:
    k = rng.randrange(3)
    if k == 0:
        xff = [ip(rng), ", ", ipv4(rng)]
        return mk(
            '{"start_time":"',
            n_ts(rng),
            '","method":"GET","path":"/v1/items","response_code":',
            n_status(rng),
            ',"duration":',
            str(rng.randrange(1, 900)),
            ',"x_forwarded_for":"',
            *xff,
            '","request_id":"',
            n_uuid(rng),
            '","upstream_host":"',
            ipv4(rng),
            f':{n_port(rng)}","authority":"api.example.com"}}',
        )
    if k == 1:
        # Envoy debug header dumps: `'name', 'value'` pairs
        return mk(
            "[debug][http] [source/common/http/conn_manager_impl.cc:",
            str(rng.randrange(100, 2000)),
            "] request headers complete (end_stream=false):\\n':authority', 'api.example.com'\\n'authorization', 'Bearer ",
            any_secret(rng),
            "'\\n'x-request-id', '",
            n_uuid(rng),
            "'",
        )
    # HAProxy with captured request headers {host|authorization}
    return mk(
        ipv4(rng),
        f":{n_port(rng)} [",
        (
            f"29/Nov/2026:{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{_r(rng, DIGITS, 3)}",
            "~date",
        ),
        "] fe_https~ be_api/api1 0/0/1/12/13 200 512 - - ---- 1/1/0/0/0 0/0 {api.example.com|Bearer ",
        jwt(rng),
        '} "GET /v1/me HTTP/1.1"',
    )


def f_journald(rng: random.Random) -> Sample:
    k = rng.randrange(3)
    if k == 0:
        return mk(
            '{"__REALTIME_TIMESTAMP":"',
            (str(1764300000000000 + rng.randrange(10**12)), "~date"),
            '","_HOSTNAME":"',
            n_pod(rng),
            '","SYSLOG_IDENTIFIER":"sshd","_PID":"',
            str(rng.randrange(100, 65000)),
            '","MESSAGE":"Failed password for invalid user admin from ',
            ip(rng),
            f' port {n_port(rng)} ssh2","_BOOT_ID":"',
            (_r(rng, HEX, 32), "~boot_id"),
            '"}',
        )
    if k == 1:
        return mk(
            (
                f"Nov {rng.randrange(1, 29):2d} {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}",
                "~date",
            ),
            f" mail postfix/smtp[{rng.randrange(100, 65000)}]: ",
            (_r(rng, "0123456789ABCDEF", 10), "~queue_id"),
            ": to=<",
            email(rng),
            ">, relay=mx.example.net[",
            ipv4(rng),
            "]:25, delay=",
            f"{rng.random() * 5:.2f}",
            ", dsn=2.0.0, status=sent (250 2.0.0 OK)",
        )
    return mk(
        (
            f"Nov {rng.randrange(1, 29):2d} {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}",
            "~date",
        ),
        " bastion sshd[",
        str(rng.randrange(100, 65000)),
        "]: Accepted password for deploy from ",
        ip(rng),
        f" port {n_port(rng)} ssh2",
    )


def f_mongodb(rng: random.Random) -> Sample:
    return mk(
        '{"t":{"$date":"',
        n_ts(rng),
        '"},"s":"I","c":"NETWORK","id":22943,"ctx":"listener","msg":"Connection accepted","attr":{"remote":"',
        ip(rng) if rng.random() < 0.5 else ipv4(rng),
        f':{n_port(rng)}","uuid":{{"$uuid":"',
        n_uuid(rng),
        '"},"connectionId":',
        str(rng.randrange(1, 99999)),
        ',"connectionCount":',
        str(rng.randrange(1, 500)),
        "}}",
    )


def f_struct_dumps(rng: random.Random) -> Sample:
    """Objects printed by their language's default formatter."""
    k = rng.randrange(7)
    if k == 0:  # Go %+v
        return mk(
            "config: &{Host:db.internal Port:5432 User:app Password:",
            bare_password(rng),
            " SSLMode:require Timeout:",
            n_duration(rng),
            "}",
        )
    if k == 1:  # Java Lombok toString
        return mk(
            "Saving User(id=",
            str(rng.randrange(1, 10**6)),
            ", email=",
            email(rng),
            ", phone=",
            (p_phone_intl(rng), "phone"),
            ", password=",
            bare_password(rng),
            ")",
        )
    if k == 2:  # Ruby hash / Rails params
        return mk(
            'Parameters: {"user"=>{"email"=>"',
            email(rng),
            '", "password"=>"',
            (t_password(rng).replace('"', "").replace("\\", ""), "password"),
            '", "remember_me"=>"1"}, "commit"=>"Log in"}',
        )
    if k == 3:  # Rails with the filter on: masks survive
        return mk(
            'Parameters: {"user"=>{"email"=>"',
            email(rng),
            '", "password"=>"',
            ("[FILTERED]", "~masked"),
            '"}, "authenticity_token"=>"[FILTERED]"}',
        )
    if k == 4:  # PHP array
        return mk(
            "array (\\n  'driver' => 'mysql',\\n  'host' => '",
            ipv4(rng),
            "',\\n  'password' => '",
            (t_password(rng).replace("'", "").replace("\\", ""), "password"),
            "',\\n)",
        )
    if k == 5:  # Python dataclass repr with pydantic SecretStr
        return mk(
            "Settings(db_url='postgresql://app:",
            (v_url_password(rng), "password"),
            "@db:5432/app', api_key=SecretStr('",
            ("**********", "~masked"),
            "'), debug=False, build='",
            n_sha(rng),
            "')",
        )
    # Kafka client config dump
    return mk(
        '\tsasl.jaas.config = org.apache.kafka.common.security.plain.PlainLoginModule required username="svc-orders" password="',
        (t_password(rng).replace('"', "").replace("\\", ""), "password"),
        '";',
    )


def f_urls_misc(rng: random.Random) -> Sample:
    k = rng.randrange(6)
    if k == 0:
        return mk(
            "amqp://orders:",
            (v_url_password(rng), "password"),
            "@rabbitmq.internal:5672/%2F connection established in ",
            n_duration(rng),
        )
    if k == 1:
        return mk("connecting to rediss://:", (v_url_password(rng), "password"), "@cache.example.com:6380/0")
    if k == 2:
        return mk(
            "DefaultEndpointsProtocol=https;AccountName=acmelogs;AccountKey=",
            (base64.b64encode(rng.randbytes(64)).decode(), "secret"),
            ";EndpointSuffix=core.windows.net",
        )
    if k == 3:  # OAuth PKCE: the challenge and the state are random but not credentials
        return mk(
            "GET /authorize?response_type=code&client_id=",
            n_uuid(rng),
            "&code_challenge=",
            (_mixed(rng, ALNUM + "-_", 43), "~pkce_challenge"),
            "&code_challenge_method=S256&state=",
            (_mixed(rng, ALNUM + "-_", 43), "~oauth_state"),
        )
    if k == 4:
        return mk(
            "git credential fill: protocol=https host=github.com username=x-access-token password=", provider(rng)
        )
    return mk(
        "LDAP bind as cn=admin,dc=example,dc=com with password=",
        bare_password(rng),
        " to ldaps://",
        ipv4(rng),
        ":636 failed",
    )


def f_hard_negatives(rng: random.Random) -> Sample:
    """Numbers and ids that sit where PII does."""
    k = rng.randrange(6)
    if k == 0:
        return mk(
            "REPORT RequestId: ",
            n_uuid(rng),
            "\tDuration: ",
            (f"{rng.randrange(1, 9999)}.{rng.randrange(100):02d} ms", "~duration"),
            "\tBilled Duration: ",
            (f"{rng.randrange(1, 9999)} ms", "~duration"),
            "\tMemory Size: 512 MB\tMax Memory Used: ",
            (f"{rng.randrange(50, 512)} MB", "~bytes"),
        )
    if k == 1:
        return mk(
            'ETag: "',
            (_r(rng, HEX, 32), "~etag"),
            '" Content-Length: ',
            (str(rng.randrange(10**6, 10**10)), "~bytes"),
            " Last-Modified: ",
            (
                f"Sun, {rng.randrange(1, 29):02d} Nov 2026 {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d} GMT",
                "~date",
            ),
        )
    if k == 2:
        return mk(
            "X-Amzn-Trace-Id: Root=1-",
            (_r(rng, HEX, 8) + "-" + _r(rng, HEX, 24), "~trace_id"),
            ";Parent=",
            n_span(rng),
            ";Sampled=1",
        )
    if k == 3:
        return mk(
            "gc pause ",
            n_duration(rng),
            " heap ",
            (f"{rng.randrange(100, 999)}MB->{rng.randrange(10, 99)}MB({rng.randrange(1000, 4096)}MB)", "~bytes"),
            " pid=",
            str(rng.randrange(1000, 4194304)),
            " seq=",
            (str(rng.randrange(10**12, 10**15)), "~sequence"),
        )
    if k == 4:
        return mk(
            "mac=",
            (":".join(_r(rng, HEX, 2) for _ in range(6)), "~mac"),
            " serial=",
            (_r(rng, "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", 12), "~serial"),
            " fw=",
            n_version(rng),
        )
    return mk(
        "tracking ",
        (f"1Z{_r(rng, 'ABCDEFGHJKLMNPQRSTUVWXYZ0123456789', 6)}{_r(rng, DIGITS, 10)}", "~tracking_no"),
        " order ",
        n_luhn_bad(rng),
        " isbn ",
        n_isbn(rng),
    )


def f_more_headers(rng: random.Random) -> Sample:
    """Vendor credential headers, proxies' client-address headers, tracking parameters in referers."""
    k = rng.randrange(8)
    if k == 0:
        name = rng.choice(["PRIVATE-TOKEN", "X-Vault-Token", "X-Goog-Api-Key", "X-Auth-Token", "Api-Key"])
        return mk(f"> {name}: ", any_secret(rng))
    if k == 1:
        return mk("< Ocp-Apim-Subscription-Key: ", (_r(rng, HEX, 32), "secret"))
    if k == 2:
        return mk("X-Forwarded-For: ", ip(rng), ", ", ipv4(rng), ", ", ipv4(rng))
    if k == 3:
        return mk('Forwarded: for="[', ipv6(rng), f']:{n_port(rng)}";proto=https;by=', ipv4(rng))
    if k == 4:  # tracking parameters are click ids, not credentials
        return mk(
            ipv4(rng),
            " - - [",
            (f"29/Nov/2026:{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d} +0000", "~date"),
            '] "GET /landing?utm_source=google&gclid=',
            ("Cj0KCQiA" + _mixed(rng, ALNUM + "-_", 80), "~click_id"),
            ' HTTP/1.1" 200 1234 "https://www.facebook.com/?fbclid=',
            ("IwAR" + _mixed(rng, ALNUM + "-_", 56), "~click_id"),
            '" "',
            n_ua(rng),
            '"',
        )
    if k == 5:
        return mk(
            '{"type": "service_account", "project_id": "acme-prod", "private_key_id": "',
            (_r(rng, HEX, 40), "~key_id"),
            '", "client_email": "',
            (f"deployer@acme-prod-{rng.randrange(1000, 9999)}.iam.gserviceaccount.com", "email"),
            '", "client_id": "',
            (_r(rng, DIGITS, 21), "~client_id"),
            '"}',
        )
    if k == 6:
        return mk(
            '{"auths":{"registry.example.com":{"auth":"',
            (base64.b64encode(f"ci:{t_password(rng, quoted=False)}".encode()).decode(), "secret"),
            '"}}}',
        )
    return mk(
        "PS> $cred = New-Object PSCredential('admin', (ConvertTo-SecureString '",
        (t_password(rng).replace("'", ""), "password"),
        "' -AsPlainText -Force))",
    )


def f_keyed_pii(rng: random.Random) -> Sample:
    k = rng.randrange(5)
    if k == 0:
        return mk(
            '{"msisdn":"',
            (rng.choice(["44", "49", "33", "1"]) + _r(rng, DIGITS, 10), "phone"),
            '","operator":"',
            rng.choice(["vodafone", "o2", "orange"]),
            '"}',
        )
    if k == 1:
        return mk(
            "<Cdtr><Nm>Jane Doe</Nm></Cdtr><CdtrAcct><Id><IBAN>",
            (p_iban(rng).replace(" ", ""), "iban"),
            "</IBAN></Id></CdtrAcct>",
        )
    if k == 2:
        digits = p_card(rng).replace(" ", "").replace("-", "")
        return mk(
            "card_number=",
            (digits, "credit_card"),
            " exp=",
            f"{rng.randrange(1, 13):02d}/{rng.randrange(27, 33)}",
            " txn=",
            n_uuid(rng),
        )
    if k == 3:
        return mk('"phoneNumber":"', (p_phone_nanp(rng), "phone"), '","countryCode":"US","verified":true')
    return mk("Cookie: access_token=", jwt(rng), "; theme=dark")


FAMILIES: dict[str, Callable[[random.Random], Sample]] = {
    "access_log": f_access_log, "apache_error": f_apache_error, "structlog": f_structlog, "pino": f_pino, "zap": f_zap,
    "logrus": f_logrus, "serilog": f_serilog, "logstash": f_logstash, "syslog": f_syslog, "k8s": f_k8s,
    "database": f_database, "cloud_audit": f_cloud_audit, "curl": f_curl, "headers": f_headers,
    "py_locals": f_py_locals, "java": f_java, "config": f_config, "csv": f_csv, "quoting": f_quoting,
    "foreign": f_foreign, "pem": f_pem, "negative": f_negative, "nginx_error": f_nginx_error, "envoy": f_envoy,
    "journald": f_journald, "mongodb": f_mongodb, "struct_dumps": f_struct_dumps, "urls_misc": f_urls_misc,
    "hard_negatives": f_hard_negatives, "more_headers": f_more_headers, "keyed_pii": f_keyed_pii,
}  # fmt: skip
WEIGHTS = {"access_log": 3, "negative": 3, "config": 2, "k8s": 2, "curl": 2}


def generate(seed: int = 4242, lines: int = 5000) -> list[Sample]:
    """`lines` labelled lines drawn from the formats above."""
    rng = random.Random(seed)
    names = [n for n in FAMILIES for _ in range(WEIGHTS.get(n, 1))]
    return [FAMILIES[rng.choice(names)](rng) for _ in range(lines)]


def all_types(samples: list[Sample]) -> set[str]:
    return {kind for s in samples for _, _, kind in s.positives}
