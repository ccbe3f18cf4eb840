"""A ninth labelled corpus for the log redactor: client-side, desktop, mobile and data-export formats.

The eight other corpora centre on server, infrastructure, business, network and ML-serving logs. This one
reproduces what reaches a log from the other end of the wire and from the places data is exported to:
browser HAR exports (header, cookie and query-string name/value pairs, form `postData`, `serverIPAddress`,
`data:` URIs) and devtools console output (JS object literals with unquoted keys, axios errors,
`localStorage` reads), frontend telemetry (Sentry events, DSNs, `sentry-trace`/`baggage`; Datadog logs and
RUM JSON with decimal 64-bit trace ids; Segment and Amplitude events), Android logcat (OkHttp, Firebase,
TelephonyManager, Chromium console, `host/1.2.3.4:443` sockets), iOS unified logging (`<private>`) and crash
reports (incident ids, binary image UUIDs, memory addresses), Windows Event Log XML (4624/4625, Sysmon
command lines: `net user x PASS /add`, `cmdkey /pass:`, `psexec -p`), PowerShell transcripts
(`ConvertTo-SecureString '…' -AsPlainText`, `$env:X = "…"`, `@{ Authorization = "Bearer …" }`,
`[Environment]::SetEnvironmentVariable("NAME", "value")`), registry exports and `reg query`/`reg add`,
PHP/Laravel/Django/Rails/Spring Boot debug output (`print_r`, `var_dump`, `serialize`, `APP_KEY=base64:`,
`django-insecure-`, request `META`, Rails parameters, actuator `/env`, Hibernate binders, Spring's generated
password), OAuth/OIDC flows (codes, PKCE verifiers, client secrets in form bodies, tokens in redirect
fragments, token responses, JWKS public keys, SAML assertions), SQL statements and dumps with literal PII
(`INSERT … VALUES`, mysqldump, `COPY … FROM stdin`, password hashes, `CREATE LOGIN … PASSWORD = N'…'`),
CSV/TSV/semicolon exports with headers, Markdown tables and YAML front matter, MQTT/IoT (mosquitto,
`mosquitto_pub -P`, LoRaWAN app keys, Azure IoT device strings), Kafka `ConsumerRecord` reprs and
`rabbitmqctl add_user`, mail headers and bodies (DKIM, `Received:`, one-time codes, reset links); values
wrapped in (), [], <>, {}, «», 「」, 【】, “”, backticks, followed by `.` `,` `;` `!` `?` `…`, after
full-width `：`/`＝` or `=>`/`->`/`:=` separators, under key names in ten languages, in upper and lower case.

Look-alikes that must survive byte-identical: UUIDs and braced GUIDs, Windows SIDs, FILETIMEs, record ids,
hashes (MD5/SHA-1/SHA-256, upper case too), Sentry event ids and DSN public keys, `release@version` tags,
decimal Datadog trace ids (some Luhn-valid), W3C/Sentry trace headers, `data:` URIs, JWKS moduli, X.509
certificates, DKIM body hashes and signatures, SAML ids and digests, OAuth `client_id`s and `state`s,
Android build fingerprints and ids, IMEIs (Luhn-valid, under their key), iOS build numbers and memory
addresses, order numbers, SKUs, KB and CVE ids, versions, timestamps, Luhn-invalid card-like numbers,
mod-97-invalid IBAN-like strings, masks (`<private>`, `[FILTERED]`, `********`) and templates.

Written before reading the redactor's rules. Policy followed (docs/logging.md and the other corpora):
127.0.0.1, 0.0.0.0 and `::1` are kept and not labelled; every other address is an address (documentation
ranges too); a cookie's value is sensitive; a value under a credential key is a credential whatever its
shape (a UUID under `password`); an OAuth authorization code and a PKCE verifier are credentials (RFC 6749
§10.5, RFC 7636); password hashes (bcrypt, argon2, Django PBKDF2) are credentials (crackable offline, like
a Digest response); public material is not: certificates, JWKS moduli, DKIM signatures, Sentry DSN keys.

Every sensitive value on a line is a positive span with its type, every look-alike that must survive
byte-identical is a negative span with its kind (`mk(..., ("value", "~kind"))`).
"""

# ruff: noqa: E501, RUF001, RUF002  (test data: long literal tokens and log lines, full-width separators)

from __future__ import annotations

import base64
import hashlib
import random
import string

from redaction_corpus import (
    ALNUM,
    B64,
    B64URL,
    DIGITS,
    HEX,
    LOWER,
    UPPER,
    Sample,
    gen_github,
    gen_jwt,
    gen_stripe,
    mixed,
    weighted_families,
)
from redaction_corpus import _rand as r
from redaction_corpus import all_types as all_types  # re-exported: the tests call corpus.all_types
from redaction_corpus import negative_kinds as negative_kinds
from redaction_corpus_eighth import aws_key_id, aws_secret, hexs, openai_key
from redaction_corpus_seventh import (
    email,
    iban,
    iban_bad,
    ipv4,
    ipv6,
    luhn_bad,
    luhn_complete,
    luhn_ok,
    mac,
    masked_pan,
    pan,
    phone,
    ssn_dashed,
    uuid4,
)
from redaction_corpus_unseen import Frag, mk

R = random.Random
B64ALPHA = string.ascii_letters + string.digits + "+/"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def ts(rng: R) -> str:
    return f"2026-11-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{r(rng, DIGITS, 3)}Z"


def hms(rng: R) -> str:
    return f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{r(rng, DIGITS, 3)}"


# ---------------------------------------------------------------- sensitive values

_PW_WORDS = ["Winter", "Harbor", "Saffron", "kestrel", "Juniper", "velvet", "Cobalt", "mango", "Sierra", "ember"]


def password(rng: R) -> str:
    k = rng.randrange(6)
    if k == 0:
        return rng.choice(_PW_WORDS) + str(rng.randrange(10, 9999)) + rng.choice("!#$%*?@")
    if k == 1:
        return mixed(rng, ALNUM + "!#%*+-._~@", rng.randrange(12, 26))
    if k == 2:
        return rng.choice(_PW_WORDS).lower() + "." + rng.choice(_PW_WORDS).lower() + str(rng.randrange(10, 99))
    if k == 3:
        return mixed(rng, ALNUM, rng.randrange(14, 30))
    if k == 4:
        return rng.choice(["P@ssw0rd1", "Welcome2026!", "Passw0rd!", "Qwerty123$", "Summer2026#", "admin12345"])
    return rng.choice(_PW_WORDS) + "_" + r(rng, DIGITS, 4) + rng.choice(["", "!", "&x", "$"])


def simple_password(rng: R) -> str:
    """A password with no characters a shell, CSV cell or query string would quote."""
    return rng.choice(_PW_WORDS) + r(rng, DIGITS, rng.randrange(3, 6)) + rng.choice(["", "x", "Q"])


def opaque(rng: R) -> str:
    k = rng.randrange(4)
    if k == 0:
        return mixed(rng, ALNUM, rng.randrange(32, 48))
    if k == 1:
        return mixed(rng, B64URL, 43)
    if k == 2:
        return "ya29." + mixed(rng, B64URL, rng.randrange(100, 160))
    return gen_jwt(rng)


def api_key(rng: R) -> str:
    return rng.choice([mixed(rng, ALNUM, 32), hexs(rng, 32), mixed(rng, ALNUM, 40), hexs(rng, 40)])


def cookie_value(rng: R) -> str:
    return rng.choice([r(rng, LOWER + DIGITS, 32), b64u(rng.randbytes(32)), f"s%3A{mixed(rng, B64URL, 32)}.{mixed(rng, ALNUM, 43)}",
                       mixed(rng, ALNUM, 64)])  # fmt: skip


def oauth_code(rng: R) -> str:
    return rng.choice(["4/0A" + mixed(rng, B64URL, 70), mixed(rng, ALNUM, 40), "SplxlOBeZQQYbYS6WxSbIA" + mixed(rng, ALNUM, 10),
                       r(rng, HEX, 8) + "-" + r(rng, HEX, 4) + "." + mixed(rng, ALNUM, 30)])  # fmt: skip


def code_verifier(rng: R) -> str:
    return mixed(rng, ALNUM + "-._~", rng.choice([43, 64, 96]))


def client_secret(rng: R) -> str:
    return rng.choice(["GOCSPX-" + mixed(rng, B64URL, 28), r(rng, ALNUM, 3) + "8Q~" + mixed(rng, ALNUM + "~._-", 31),
                       mixed(rng, ALNUM, 40), b64(rng.randbytes(30))])  # fmt: skip


def refresh_token(rng: R) -> str:
    return rng.choice(["1//0" + mixed(rng, B64URL, 100), mixed(rng, ALNUM, 48), "rt_" + mixed(rng, ALNUM, 40)])


def password_hash(rng: R) -> str:
    b62 = string.ascii_letters + string.digits + "./"
    return rng.choice([
        f"$2b$12${r(rng, b62, 53)}", f"$2y$10${r(rng, b62, 53)}",
        f"$argon2id$v=19$m=65536,t=3,p=4${b64(rng.randbytes(16)).rstrip('=')}${b64(rng.randbytes(32)).rstrip('=')}",
        f"pbkdf2_sha256$600000${mixed(rng, ALNUM, 22)}${b64(rng.randbytes(32))}",
    ])  # fmt: skip


def fcm_token(rng: R) -> str:
    return mixed(rng, B64URL, 22) + ":APA91b" + mixed(rng, B64URL, 134)


def app_key_b64(rng: R) -> str:
    return "base64:" + b64(rng.randbytes(32))


def django_key(rng: R) -> str:
    return "django-insecure-" + r(rng, LOWER + DIGITS + "!@#%^&*(-_=+)", 50)


def csrf(rng: R) -> str:
    return b64(rng.randbytes(64)) if rng.random() < 0.5 else mixed(rng, B64URL, 86)


def card(rng: R) -> str:
    return pan(rng, "  -")


def gh(rng: R) -> str:
    return gen_github(rng)


def ip_any(rng: R) -> tuple[str, str]:
    return (ipv4(rng), "ipv4") if rng.random() < 0.7 else (ipv6(rng), "ipv6")


# ---------------------------------------------------------------- look-alikes


def guid(rng: R) -> str:
    u = uuid4(rng)
    return "{" + (u.upper() if rng.random() < 0.6 else u) + "}"


def sid(rng: R) -> str:
    return f"S-1-5-21-{rng.randrange(10**9, 4 * 10**9)}-{rng.randrange(10**9, 4 * 10**9)}-{rng.randrange(10**9, 4 * 10**9)}-{rng.randrange(500, 5000)}"


def filetime(rng: R) -> str:
    return str(rng.randrange(133_000_000_000_000_000, 134_000_000_000_000_000))


def dd_trace(rng: R) -> str:
    """A Datadog 64-bit decimal trace id; a third of them Luhn-valid with a Visa prefix (19 digits)."""
    if rng.random() < 0.33:
        return luhn_complete(rng, "4", 19)
    return str(rng.getrandbits(63))


def md5(rng: R) -> str:
    return hexs(rng, 32)


def sha1(rng: R) -> str:
    return hexs(rng, 40)


def sha256(rng: R) -> str:
    h = hexs(rng, 64)
    return h.upper() if rng.random() < 0.4 else h


def release(rng: R) -> str:
    return rng.choice([f"web-frontend@{rng.randrange(1, 9)}.{rng.randrange(40)}.{rng.randrange(99)}",
                       f"com.example.shop@{rng.randrange(1, 9)}.{rng.randrange(20)}.{rng.randrange(9)}+{rng.randrange(100, 999)}",
                       f"api@{hexs(rng, 12)}", f"@acme/ui@^{rng.randrange(1, 9)}.{rng.randrange(20)}.0", f"react-dom@18.{rng.randrange(4)}.{rng.randrange(9)}"])  # fmt: skip


def data_uri(rng: R) -> str:
    raw = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + rng.randbytes(rng.randrange(40, 120))
    return "data:image/png;base64," + b64(raw)


def jwk_modulus(rng: R) -> str:
    return b64u(b"\xc1" + rng.randbytes(255))


def x509(rng: R) -> str:
    """A certificate's base64 DER: `MII` + length, then `CCA` (the tbsCertificate SEQUENCE) + random."""
    return "MII" + rng.choice("CDE") + r(rng, B64ALPHA, 2) + "CCA" + b64(rng.randbytes(rng.choice([180, 300])))


def build_fingerprint(rng: R) -> str:
    dev = rng.choice(["oriole", "panther", "husky", "a54x", "beyond1"])
    return f"google/{dev}/{dev}:14/UP1A.{rng.randrange(230000, 240000)}.{rng.randrange(1, 30):03d}/{rng.randrange(10**7, 10**8)}:user/release-keys"


def imei(rng: R) -> str:
    return luhn_complete(rng, rng.choice(["35", "86", "01", "99"]), 15)


def mem_addr(rng: R) -> str:
    return "0x" + rng.choice(["00000001", "0000000"]) + r(rng, HEX, 8)


def order_no(rng: R) -> str:
    return rng.choice([f"ORD-2026-{r(rng, DIGITS, 6)}", f"#{rng.randrange(10**8, 10**9)}", f"INV{r(rng, DIGITS, 10)}",
                       f"SKU-{r(rng, UPPER, 3)}-{r(rng, DIGITS, 5)}", f"PO{r(rng, DIGITS, 8)}"])  # fmt: skip


def version(rng: R) -> str:
    return rng.choice([f"{rng.randrange(1, 20)}.{rng.randrange(30)}.{rng.randrange(200)}", f"10.0.{rng.randrange(17000, 26000)}.{rng.randrange(5000)}",
                       f"v{rng.randrange(1, 5)}.{rng.randrange(30)}.{rng.randrange(20)}-beta.{rng.randrange(9)}", f"17.{rng.randrange(6)}.{rng.randrange(3)} (21B{rng.randrange(10, 99)})"])  # fmt: skip


def luhn_bad_grouped(rng: R) -> str:
    d = luhn_bad(rng)
    return rng.choice(
        [d, " ".join(d[i : i + 4] for i in range(0, 16, 4)), "-".join(d[i : i + 4] for i in range(0, 16, 4))]
    )


def iban_bad_any(rng: R) -> str:
    v = iban_bad(rng)
    return " ".join(v[i : i + 4] for i in range(0, len(v), 4)) if rng.random() < 0.4 else v


def neg_any(rng: R) -> Frag:
    k = rng.randrange(14)
    return [
        (uuid4(rng), "~uuid"), (guid(rng), "~guid"), (sha256(rng), "~sha256"), (md5(rng), "~md5"), (order_no(rng), "~order_no"),
        (version(rng), "~version"), (luhn_bad_grouped(rng), "~luhn_invalid"), (iban_bad_any(rng), "~iban_invalid"),
        (ts(rng), "~timestamp"), (filetime(rng), "~filetime"), (sha1(rng), "~sha1"), (sid(rng), "~sid"),
        (masked_pan(rng), "~masked_pan"), (release(rng), "~release_tag"),
    ][k]  # fmt: skip


# ---------------------------------------------------------------- families


def f_har(rng: R) -> Sample:
    k = rng.randrange(9)
    if k == 0:
        name = rng.choice(["Authorization", "authorization", "AUTHORIZATION"])
        scheme = rng.choice(["Bearer", "bearer", "BEARER"])
        return mk('          {"name": "', name, '", "value": "', scheme, " ", (opaque(rng), "authorization"), '"},')
    if k == 1:
        return mk('          {"name": "', rng.choice(["Cookie", "cookie"]), '", "value": "sessionid=', (cookie_value(rng), "cookie"),
                  "; csrftoken=", (cookie_value(rng), "cookie"), '"},')  # fmt: skip
    if k == 2:
        key = rng.choice(["access_token", "token", "api_key", "apikey"])
        val = (opaque(rng), "oauth_token") if "token" in key else (api_key(rng), "api_key")
        return mk(
            '"queryString": [{"name": "',
            key,
            '", "value": "',
            val,
            '"}, {"name": "page", "value": "',
            str(rng.randrange(1, 9)),
            '"}],',
        )
    if k == 3:
        return mk('"postData": {"mimeType": "application/x-www-form-urlencoded", "text": "username=', (email(rng).replace("@", "%40"), "email"),
                  "&password=", (simple_password(rng), "password"), '&remember=1"},')  # fmt: skip
    if k == 4:
        ip, kind = ip_any(rng)
        shown = f"[{ip}]" if kind == "ipv6" and rng.random() < 0.5 else ip
        start = 1 if shown.startswith("[") else 0
        return mk('"serverIPAddress": "', shown[:start], (ip, kind), shown[start + len(ip) :], '", "connection": "', str(rng.randrange(1000, 99999)),
                  '", "startedDateTime": "', (ts(rng), "~timestamp"), '", "_requestId": "', (f"{rng.randrange(1000, 99999)}.{rng.randrange(1, 999)}", "~request_id"), '"')  # fmt: skip
    if k == 5:
        return mk(
            '"content": {"size": ',
            str(rng.randrange(100, 9000)),
            ', "mimeType": "image/png"}, "url": "',
            (data_uri(rng), "~data_uri"),
            '"',
        )
    if k == 6:
        name = rng.choice(["x-api-key", "X-API-Key", "api-key", "X-Goog-Api-Key", "apikey"])
        return mk('          {"name": "', name, '", "value": "', (api_key(rng), "api_key"), '"},')
    if k == 7:
        return mk('"redirectURL": "https://app.example.com/callback#access_token=', (opaque(rng), "oauth_token"),
                  "&token_type=Bearer&expires_in=3600&state=", (hexs(rng, 32), "~oauth_state"), '",')  # fmt: skip
    return mk('"response": {"status": 200, "headers": [{"name": "etag", "value": "W/\\"', (hexs(rng, 40), "~etag"),
              '\\""}, {"name": "x-request-id", "value": "', (uuid4(rng), "~uuid"), '"}, {"name": "sentry-trace", "value": "',
              (f"{hexs(rng, 32)}-{hexs(rng, 16)}-1", "~trace_id"), '"}]}')  # fmt: skip


def f_console(rng: R) -> Sample:
    src = f"{rng.choice(['main', 'app', 'chunk-vendors', 'index'])}.{hexs(rng, 8)}.js:{rng.randrange(1, 900)}"
    k = rng.randrange(7)
    if k == 0:
        return mk(
            f"VM{rng.randrange(100, 9999)}:3 {{email: '",
            (email(rng), "email"),
            "', password: '",
            (password(rng).replace("'", ""), "password"),
            "', remember: true}",
        )
    if k == 1:
        return mk(src, " [auth] got token ", (gen_jwt(rng), "jwt"), rng.choice(["", " (expires in 3600s)"]))
    if k == 2:
        return mk(src, " AxiosError: Request failed with status code 403\n    config: {url: '/api/v2/orders', method: 'get', headers: {Accept: 'application/json, text/plain, */*', Authorization: 'Bearer ",
                  (opaque(rng), "authorization"), "'}, timeout: 0}")  # fmt: skip
    if k == 3:
        return mk(
            "> localStorage.getItem('",
            rng.choice(["auth_token", "access_token", "refreshToken"]),
            "')\n< '",
            (mixed(rng, ALNUM, 44), "oauth_token"),
            "'",
        )
    if k == 4:
        return mk("%c[Segment]%c identify user_", str(rng.randrange(1, 99999)), ' {email: "', (email(rng), "email"), '", phone: "', (phone(rng), "phone"),
                  '", plan: "pro"} color: #52bd94')  # fmt: skip
    if k == 5:
        return mk(src, " [Vue warn]: Failed to resolve component ", (f"webpack://{rng.choice(['shop', 'admin'])}/./src/components/Card.vue?{hexs(rng, 4)}", "~source_path"),
                  " build ", (sha1(rng), "~sha1"), " v", (version(rng), "~version"))  # fmt: skip
    return mk(
        src, " POST https://api.example.com/v1/session?api_key=", (api_key(rng), "api_key"), " 401 (Unauthorized)"
    )


def f_sentry(rng: R) -> Sample:
    k = rng.randrange(5)
    if k == 0:
        ip, kind = ip_any(rng)
        return mk('{"event_id":"', (hexs(rng, 32), "~event_id"), '","release":"', (release(rng), "~release_tag"), '","user":{"id":"', str(rng.randrange(1, 10**6)),
                  '","email":"', (email(rng), "email"), '","ip_address":"', (ip, kind), '"},"contexts":{"trace":{"trace_id":"', (hexs(rng, 32), "~trace_id"),
                  '","span_id":"', (hexs(rng, 16), "~span_id"), '"}}}')  # fmt: skip
    if k == 1:
        return mk('"request":{"url":"https://shop.example.com/checkout","headers":[["Authorization","Bearer ', (opaque(rng), "authorization"),
                  '"],["Cookie","session=', (cookie_value(rng), "cookie"), '"],["User-Agent","Mozilla/5.0"]]}')  # fmt: skip
    if k == 2:
        # a DSN's key is public by Sentry's word, but the redactor's policy (docs/logging.md) takes a URL's
        # random user-info as a credential: labelled as one
        return mk("Sentry.init({ dsn: 'https://", (hexs(rng, 32), "secret"), f"@o{rng.randrange(10**5, 10**7)}.ingest.sentry.io/{rng.randrange(10**6, 10**7)}', release: '",
                  (release(rng), "~release_tag"), "' })")  # fmt: skip
    if k == 3:
        return mk("sentry-trace: ", (f"{hexs(rng, 32)}-{hexs(rng, 16)}-1", "~trace_id"), "\nbaggage: sentry-trace_id=", (hexs(rng, 32), "~trace_id"),
                  ",sentry-public_key=", (hexs(rng, 32), "~sentry_dsn_key"), ",sentry-release=web%40", (version(rng), "~version"), ",sentry-environment=production")  # fmt: skip
    return mk('{"breadcrumbs":[{"category":"fetch","data":{"method":"POST","url":"/api/login","status_code":401}},{"category":"console","message":"login failed for ',
              (email(rng), "email"), '"}],"exception":{"values":[{"type":"TypeError","value":"card ', (card(rng), "credit_card"), ' declined"}]}}')  # fmt: skip


def f_datadog(rng: R) -> Sample:
    k = rng.randrange(5)
    if k == 0:
        ip, kind = ip_any(rng)
        return mk('{"status":"info","service":"web-store","dd":{"trace_id":"', (dd_trace(rng), "~dd_trace_id"), '","span_id":"', (dd_trace(rng), "~dd_trace_id"),
                  '"},"usr":{"id":"', str(rng.randrange(1, 10**6)), '","email":"', (email(rng), "email"), '"},"network":{"client":{"ip":"', (ip, kind), '"}}}')  # fmt: skip
    if k == 1:
        return mk(
            rng.choice(["DD_API_KEY=", "export DD_API_KEY=", "dd-api-key: ", "DD-API-KEY: "]),
            (hexs(rng, 32), "api_key"),
        )
    if k == 2:
        return mk(
            rng.choice(["DD_APP_KEY=", "DD-APPLICATION-KEY: ", "dd_application_key: "]), (hexs(rng, 40), "api_key")
        )
    if k == 3:
        return mk('{"type":"resource","resource":{"url":"https://api.example.com/v1/me?access_token=', (opaque(rng).replace(".", "_"), "oauth_token"),
                  '","status_code":200,"duration":', str(rng.randrange(10**6, 10**9)), '},"session":{"id":"', (uuid4(rng), "~uuid"), '"},"date":', str(rng.randrange(1_700_000_000_000, 1_800_000_000_000)), "}")  # fmt: skip
    return mk("dd.trace_id=", (dd_trace(rng), "~dd_trace_id"), " dd.span_id=", (dd_trace(rng), "~dd_trace_id"), " dd.service=checkout dd.version=",
              (version(rng), "~version"), " order=", (order_no(rng), "~order_no"), " charged card ending ", (masked_pan(rng), "~masked_pan"))  # fmt: skip


def f_segment(rng: R) -> Sample:
    k = rng.randrange(4)
    if k == 0:
        return mk(
            'analytics.identify("user_',
            str(rng.randrange(1, 99999)),
            '", {email: "',
            (email(rng), "email"),
            '", phone: "',
            (phone(rng), "phone"),
            '", plan: "team"})',
        )
    if k == 1:
        ip, kind = ip_any(rng)
        return mk('{"type":"track","event":"Order Completed","userId":"u', str(rng.randrange(1, 10**5)), '","anonymousId":"', (uuid4(rng), "~uuid"),
                  '","messageId":"ajs-next-', (hexs(rng, 32), "~message_id"), '","context":{"ip":"', (ip, kind), '","traits":{"email":"', (email(rng), "email"),
                  '"}},"properties":{"order_id":"', (order_no(rng), "~order_no"), '","revenue":', f"{rng.uniform(5, 500):.2f}", "}}")  # fmt: skip
    if k == 2:
        return mk('{"api_key":"', (hexs(rng, 32), "api_key"), '","events":[{"user_id":"', (email(rng), "email"), '","device_id":"', (uuid4(rng), "~uuid"),
                  '","insert_id":"', (uuid4(rng), "~uuid"), '","session_id":', str(rng.randrange(1_700_000_000_000, 1_800_000_000_000)), ',"ip":"$remote"}]}')  # fmt: skip
    return mk("[Amplitude] Event: purchase { user_properties: { phone: '", (phone(rng), "phone"), "', iban: '", (iban(rng), "iban"), "' }, event_id: ",
              str(rng.randrange(1, 999)), " }")  # fmt: skip


def _logcat(rng: R) -> str:
    return f"11-{rng.randrange(1, 29):02d} {hms(rng)}  {rng.randrange(1000, 32000):5d}  {rng.randrange(1000, 32000):5d} {rng.choice('VDIWE')} "


def f_logcat(rng: R) -> Sample:
    p = _logcat(rng)
    k = rng.randrange(9)
    if k == 0:
        return mk(
            p, "OkHttp  : ", rng.choice(["Authorization", "authorization"]), ": Bearer ", (opaque(rng), "authorization")
        )
    if k == 1:
        return mk(
            p,
            'OkHttp  : {"email":"',
            (email(rng), "email"),
            '","password":"',
            (password(rng).replace('"', ""), "password"),
            '"}',
        )
    if k == 2:
        return mk(
            p,
            "FirebaseMessaging: ",
            rng.choice(["FCM token: ", "Refreshed token: ", "onNewToken "]),
            (fcm_token(rng), "fcm_token"),
        )
    if k == 3:
        return mk(p, "ActivityManager: Start proc ", str(rng.randrange(1000, 32000)), ":com.example.shop/u0a", str(rng.randrange(100, 400)),
                  " for activity; fingerprint=", (build_fingerprint(rng), "~build_fingerprint"), " android_id=", (r(rng, HEX, 16), "~android_id"))  # fmt: skip
    if k == 4:
        return mk(p, "TelephonyManager: imei=", (imei(rng), "~imei"), " line1Number=", (phone(rng), "phone"))
    if k == 5:
        return mk(
            p,
            'chromium: [INFO:CONSOLE(1)] "login ok for ',
            (email(rng), "email"),
            '", source: https://app.example.com/main.',
            (hexs(rng, 8), "~hash"),
            ".js (1)",
        )
    if k == 6:
        ip = ipv4(rng)
        return mk(p, "System.err: java.net.SocketTimeoutException: failed to connect to api.example.com/", (ip, "ipv4"), " (port 443) from /",
                  (ipv4(rng), "ipv4"), " (port ", str(rng.randrange(30000, 60000)), ") after 10000ms")  # fmt: skip
    if k == 7:
        return mk(
            p,
            "AdvertisingIdClient: adid=",
            (uuid4(rng), "~uuid"),
            " limitAdTracking=false build=",
            (f"UP1A.{rng.randrange(230000, 240000)}.{rng.randrange(1, 30):03d}", "~build_id"),
        )
    return mk(
        p,
        "PaymentSheet: card=",
        (card(rng), "credit_card"),
        " exp=",
        f"{rng.randrange(1, 13):02d}/{rng.randrange(27, 32)}",
        " order=",
        (order_no(rng), "~order_no"),
    )


def f_ios(rng: R) -> Sample:
    k = rng.randrange(6)
    pre = f"2026-11-{rng.randrange(1, 29):02d} {hms(rng)}{r(rng, DIGITS, 3)}+0000 0x{r(rng, HEX, 6)}   Default     0x0   {rng.randrange(100, 9999)}   0    Shop: "
    if k == 0:
        return mk(
            pre, "[Auth] signed in ", ("<private>", "~private_mask"), " with token ", ("<private>", "~private_mask")
        )
    if k == 1:
        return mk(pre, "[Auth] user=", (email(rng), "email"), " token=", (opaque(rng), "oauth_token"))
    if k == 2:
        return mk("Incident Identifier: ", (uuid4(rng).upper(), "~uuid"), "\nCrashReporter Key:   ", (sha1(rng), "~sha1"), "\nHardware Model:      iPhone15,3\nOS Version:          iPhone OS ",
                  (version(rng), "~version"), "\nDate/Time:           2026-11-29 14:02:11.1234 +0000")  # fmt: skip
    if k == 3:
        return mk("0x104a3c000 - 0x104a43fff Shop arm64  <", (hexs(rng, 32), "~image_uuid"), "> /private/var/containers/Bundle/Application/", (uuid4(rng).upper(), "~uuid"),
                  "/Shop.app/Shop\n0   libswiftCore.dylib            ", (mem_addr(rng), "~memory_address"), " _assertionFailure(_:_:file:line:flags:) + 312")  # fmt: skip
    if k == 4:
        return mk(pre, "Task <", (uuid4(rng).upper(), "~uuid"), ">.<1> finished with error [-1001] NSErrorFailingURLStringKey=https://api.example.com/v1/me?token=",
                  (opaque(rng).replace(".", "-"), "oauth_token"), ", NSLocalizedDescription=The request timed out.")  # fmt: skip
    ip, kind = ip_any(rng)
    return mk(pre, "[Net] connection to ", (ip, kind), " port 443 ready, phone on file ", (phone(rng), "phone"))


def f_winevent(rng: R) -> Sample:
    k = rng.randrange(5)
    head = ('<Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event"><System><Provider Name="Microsoft-Windows-Security-Auditing" Guid="',
            (guid(rng), "~guid"), f'"/><EventID>{rng.choice([4624, 4625, 4648])}</EventID><EventRecordID>', (str(rng.randrange(10**6, 10**9)), "~record_id"),
            "</EventRecordID><Computer>DC01.corp.example.com</Computer></System><EventData>")  # fmt: skip
    if k <= 1:
        ip, kind = ip_any(rng)
        if kind == "ipv4" and rng.random() < 0.3:
            val: list[Frag] = ["::ffff:", (ip, "ipv4")]
        else:
            val = [(ip, kind)]
        return mk(*head, '<Data Name="TargetUserSid">', (sid(rng), "~sid"), '</Data><Data Name="TargetUserName">jdoe</Data><Data Name="IpAddress">', *val,
                  '</Data><Data Name="IpPort">', str(rng.randrange(1024, 65535)), '</Data><Data Name="LogonGuid">', (guid(rng), "~guid"), "</Data></EventData></Event>")  # fmt: skip
    pw = simple_password(rng)
    cmd: list[Frag] = rng.choice([
        ["net user svc_backup ", (pw, "password"), " /add"],
        ["cmdkey /add:fs01.corp.example.com /user:CORP\\admin /pass:", (pw, "password")],
        ["PsExec.exe \\\\10.20.30.40 -u CORP\\admin -p ", (pw, "password"), " cmd.exe"],
        ["net use Z: \\\\fs01\\share ", (pw, "password"), " /user:CORP\\jdoe"],
    ])  # fmt: skip
    if "10.20.30.40" in cmd[0]:
        first = str(cmd[0])
        i = first.index("10.20.30.40")
        cmd = [first[:i], ("10.20.30.40", "ipv4"), first[i + 11 :], *cmd[1:]]
    return mk("Sysmon EventID=1 UtcTime=", (ts(rng), "~timestamp"), " ProcessGuid=", (guid(rng), "~guid"), " CommandLine: ", *cmd, " Hashes: SHA256=",
              (sha256(rng).upper(), "~sha256"), ",IMPHASH=", (md5(rng).upper(), "~md5"))  # fmt: skip


def f_powershell(rng: R) -> Sample:
    k = rng.randrange(9)
    ps = rng.choice(["PS C:\\Users\\jdoe> ", "PS C:\\> ", "PS /home/jdoe> "])
    pw = simple_password(rng)
    if k == 0:
        return mk(ps, '$env:GITHUB_TOKEN = "', (gh(rng), "github_token"), '"')
    if k == 1:
        q = rng.choice(["'", '"'])
        return mk(ps, "$secure = ConvertTo-SecureString ", q, (pw, "password"), q, " -AsPlainText -Force")
    if k == 2:
        return mk(
            ps,
            "$cred = New-Object System.Management.Automation.PSCredential ('admin', (ConvertTo-SecureString -String '",
            (pw, "password"),
            "' -AsPlainText -Force))",
        )
    if k == 3:
        return mk(
            ps,
            'Invoke-RestMethod -Uri https://api.example.com/v1/items -Headers @{ Authorization = "Bearer ',
            (opaque(rng), "authorization"),
            '" }',
        )
    if k == 4:
        return mk(
            ps,
            'Invoke-WebRequest https://api.example.com/v2/export -Headers @{"X-Api-Key"="',
            (api_key(rng), "api_key"),
            '"}',
        )
    if k == 5:
        return mk(
            ps,
            '[Environment]::SetEnvironmentVariable("AWS_SECRET_ACCESS_KEY", "',
            (aws_secret(rng), "aws_secret"),
            '", "User")',
        )
    if k == 6:
        return mk(
            ps,
            '$env:AWS_ACCESS_KEY_ID="',
            (aws_key_id(rng), "aws_key_id"),
            '"; $env:OPENAI_API_KEY="',
            (openai_key(rng), "openai_key"),
            '"',
        )
    if k == 7:
        return mk("**********************\nWindows PowerShell transcript start\nStart time: ", (f"2026112{rng.randrange(10)}{r(rng, DIGITS, 6)}", "~timestamp"),
                  "\nUsername: CORP\\jdoe\nMachine: WS01 (Microsoft Windows NT ", (version(rng), "~version"), ")\nHost Application: powershell.exe\nProcess ID: ",
                  str(rng.randrange(1000, 30000)), "\n**********************")  # fmt: skip
    return mk(ps, "Get-FileHash .\\setup.exe\n\nAlgorithm       Hash                                                                   Path\n---------       ----                                                                   ----\nSHA256          ",
              (hexs(rng, 64).upper(), "~sha256"), "       C:\\Users\\jdoe\\Downloads\\setup.exe")  # fmt: skip


def f_registry(rng: R) -> Sample:
    k = rng.randrange(5)
    pw = simple_password(rng)
    if k == 0:
        return mk("[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon]\n\"AutoAdminLogon\"=\"1\"\n\"DefaultUserName\"=\"kiosk\"\n\"DefaultPassword\"=\"",
                  (pw, "password"), '"')  # fmt: skip
    if k == 1:
        return mk(
            "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon\n    DefaultUserName    REG_SZ    kiosk\n    DefaultPassword    REG_SZ    ",
            (pw, "password"),
        )
    if k == 2:
        return mk(
            '"ConnectionString"="Server=sql01;Database=app;User Id=sa;Password=',
            (pw, "password"),
            ';"\n"ProxyPassword"="',
            (simple_password(rng), "password"),
            '"',
        )
    if k == 3:
        return mk("reg add HKCU\\Software\\Acme\\Sync /v ApiKey /t REG_SZ /d ", (api_key(rng), "api_key"), " /f")
    return mk("[HKEY_LOCAL_MACHINE\\SOFTWARE\\Classes\\CLSID\\", (guid(rng), "~guid"), ']\n"InstallDate"=dword:', (r(rng, HEX, 8), "~dword"), '\n"ProductId"="',
              (f"00330-{r(rng, DIGITS, 5)}-{r(rng, DIGITS, 5)}-AA{r(rng, DIGITS, 3)}", "~product_id"), '"\n"DisplayVersion"="', (version(rng), "~version"), '"')  # fmt: skip


def f_webfw(rng: R) -> Sample:
    k = rng.randrange(12)
    pw = simple_password(rng)
    if k == 0:
        lead, tail = rng.choice([("APP_KEY=", ""), ("  'key' => '", "',"), ('"APP_KEY": "', '"')])
        return mk(lead, (app_key_b64(rng), "secret"), tail)
    if k == 1:
        return mk(f"[2026-11-{rng.randrange(1, 29):02d} {hms(rng)[:8]}] production.ERROR: SQLSTATE[HY000] [1045] Access denied for user 'forge'@'", (ipv4(rng), "ipv4"),
                  "' (using password: YES) {\"exception\":\"[object] (PDOException(code: 1045))\"}")  # fmt: skip
    if k == 2:
        return mk(
            "Array\n(\n    [email] => ",
            (email(rng), "email"),
            "\n    [password] => ",
            (pw, "password"),
            "\n    [remember] => 1\n)",
        )
    if k == 3:
        return mk(
            'array(2) {\n  ["username"]=>\n  string(5) "admin"\n  ["password"]=>\n  string(',
            str(len(pw)),
            ') "',
            (pw, "password"),
            '"\n}',
        )
    if k == 4:
        e = email(rng)
        return mk(
            f'a:2:{{s:5:"email";s:{len(e)}:"', (e, "email"), f'";s:8:"password";s:{len(pw)}:"', (pw, "password"), '";}'
        )
    if k == 5:
        return mk("SECRET_KEY = '", (django_key(rng), "secret"), "'")
    if k == 6:
        return mk("DATABASES: {'default': {'ENGINE': 'django.db.backends.postgresql', 'NAME': 'app', 'USER': 'app', 'PASSWORD': '", ("********************", "~masked"),
                  "', 'HOST': '", (ipv4(rng), "ipv4"), "', 'PORT': '5432'}}")  # fmt: skip
    if k == 7:
        key, val = rng.choice([("HTTP_AUTHORIZATION", lambda: ["Bearer ", (opaque(rng), "authorization")]), ("HTTP_X_API_KEY", lambda: [(api_key(rng), "api_key")]),
                               ("HTTP_COOKIE", lambda: ["sessionid=", (cookie_value(rng), "cookie"), "; csrftoken=", (cookie_value(rng), "cookie")]),
                               ("REMOTE_ADDR", lambda: [(ipv4(rng), "ipv4")])])  # fmt: skip
        return mk(key, " = '", *val(), "'")
    if k == 8:
        return mk('Started POST "/users/sign_in" for ', (ipv4(rng), "ipv4"), " at 2026-11-29 14:02:11 +0000\n  Parameters: {\"authenticity_token\"=>\"", (csrf(rng), "csrf_token"),
                  '", "user"=>{"email"=>"', (email(rng), "email"), '", "password"=>"', ("[FILTERED]", "~masked"), '"}, "commit"=>"Log in"}')  # fmt: skip
    if k == 9:
        key = rng.choice(
            [
                "spring.datasource.password",
                "spring.mail.password",
                "spring.security.oauth2.client.registration.google.client-secret",
                "app.jwt.secret",
            ]
        )
        if rng.random() < 0.5:
            return mk(
                '{"name":"',
                key,
                '","value":"',
                (pw, "password" if "password" in key else "secret"),
                '","origin":"class path resource [application.properties] - 12:28"}',
            )
        return mk('"', key, '":{"value":"', ("******", "~masked"), '"}')
    if k == 10:
        val2 = rng.choice(
            [(email(rng), "email"), (phone(rng), "phone"), (ssn_dashed(rng), "ssn"), (card(rng), "credit_card")]
        )
        return mk(
            "TRACE o.h.type.descriptor.sql.BasicBinder - binding parameter [",
            str(rng.randrange(1, 9)),
            "] as [VARCHAR] - [",
            val2,
            "]",
        )
    return mk(
        "\nUsing generated security password: ",
        (uuid4(rng), "password"),
        "\n\nThis generated password is for development use only.",
    )


def f_oauth(rng: R) -> Sample:
    k = rng.randrange(10)
    cid = rng.choice(
        [f"{r(rng, DIGITS, 12)}-{r(rng, LOWER + DIGITS, 32)}.apps.googleusercontent.com", uuid4(rng), "web-portal"]
    )
    if k == 0:
        return mk(
            "GET /oauth/callback?code=",
            (oauth_code(rng), "oauth_code"),
            "&state=",
            (hexs(rng, 32), "~oauth_state"),
            "&scope=openid%20email%20profile HTTP/1.1",
        )
    if k == 1:
        return mk("POST /oauth2/token body: grant_type=authorization_code&code=", (oauth_code(rng), "oauth_code"), "&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&client_id=",
                  (cid, "~client_id"), "&client_secret=", (client_secret(rng), "client_secret"), "&code_verifier=", (code_verifier(rng), "oauth_code"))  # fmt: skip
    if k == 2:
        return mk('{"access_token":"', (opaque(rng), "oauth_token"), '","token_type":"Bearer","expires_in":3599,"refresh_token":"', (refresh_token(rng), "oauth_token"),
                  '","scope":"openid email","id_token":"', (gen_jwt(rng), "jwt"), '"}')  # fmt: skip
    if k == 3:
        return mk(
            "Location: https://app.example.com/cb#access_token=",
            (opaque(rng), "oauth_token"),
            "&token_type=bearer&expires_in=3600&state=",
            (uuid4(rng), "~oauth_state"),
        )
    if k == 4:
        cred = b64(f"{cid}:{client_secret(rng)}".encode())
        return mk(
            "POST /oauth/token HTTP/1.1\r\nAuthorization: Basic ",
            (cred, "authorization"),
            "\r\nContent-Type: application/x-www-form-urlencoded",
        )
    if k == 5:
        return mk(
            '{"keys":[{"kty":"RSA","use":"sig","kid":"',
            (hexs(rng, 40), "~kid"),
            '","n":"',
            (jwk_modulus(rng), "~jwk_public"),
            '","e":"AQAB","alg":"RS256"}]}',
        )
    if k == 6:
        return mk("msal: acquire_token_for_client tenant=", (uuid4(rng), "~tenant_id"), " client_id=", (uuid4(rng), "~client_id"), " client_secret=",
                  (r(rng, ALNUM, 3) + "8Q~" + mixed(rng, ALNUM + "~._-", 31), "client_secret"))  # fmt: skip
    if k == 7:
        ip = ipv4(rng)
        return mk("type=LOGIN_ERROR, realmId=", (uuid4(rng), "~uuid"), ", clientId=", (cid, "~client_id"), ", userId=null, ipAddress=", (ip, "ipv4"),
                  ", error=invalid_user_credentials, auth_method=openid-connect, username=", (email(rng), "email"))  # fmt: skip
    if k == 8:
        return mk('<saml2:Assertion ID="_', (hexs(rng, 40), "~saml_id"), '" IssueInstant="', (ts(rng), "~timestamp"), '"><ds:DigestValue>', (b64(hashlib.sha256(rng.randbytes(8)).digest()), "~digest_value"),
                  '</ds:DigestValue><saml2:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">', (email(rng), "email"), "</saml2:NameID>")  # fmt: skip
    return mk("<ds:X509Certificate>", (x509(rng), "~x509_cert"), "</ds:X509Certificate>")


def f_sql(rng: R) -> Sample:
    k = rng.randrange(8)
    pw = simple_password(rng)
    if k == 0:
        return mk("INSERT INTO users (id, email, phone, created_at) VALUES (", str(rng.randrange(1, 10**6)), ", '", (email(rng), "email"), "', '", (phone(rng), "phone"),
                  "', '", (ts(rng), "~timestamp"), "');")  # fmt: skip
    if k == 1:
        return mk("INSERT INTO `customers` VALUES (", str(rng.randrange(1, 999)), ",'Jane Doe','", (email(rng), "email"), "','", (card(rng), "credit_card"), "','", (ts(rng)[:10], "~timestamp"),
                  "'),(", str(rng.randrange(1000, 2000)), ",'Li Wei','", (email(rng), "email"), "','", (luhn_bad(rng), "~luhn_invalid"), "','", (ts(rng)[:10], "~timestamp"), "');")  # fmt: skip
    if k == 2:
        return mk("COPY public.accounts (id, iban, ssn, order_no) FROM stdin;\n", str(rng.randrange(1, 10**5)), "\t", (iban(rng).replace(" ", ""), "iban"), "\t", (ssn_dashed(rng), "ssn"),
                  "\t", (order_no(rng), "~order_no"), "\n\\.")  # fmt: skip
    if k == 3:
        return mk(
            "UPDATE users SET password_hash = '",
            (password_hash(rng), "password_hash"),
            "', updated_at = now() WHERE id = ",
            str(rng.randrange(1, 10**6)),
            ";",
        )
    if k == 4:
        return mk(
            "LOG:  statement: SELECT * FROM customers WHERE email = '",
            (email(rng), "email"),
            "' AND ssn = '",
            (ssn_dashed(rng), "ssn"),
            "' LIMIT 1",
        )
    if k == 5:
        return mk(*rng.choice([
            ["ALTER USER 'app'@'%' IDENTIFIED WITH mysql_native_password BY '", (pw, "password"), "';"],
            ["SET PASSWORD FOR 'app'@'localhost' = '", (pw, "password"), "';"],
            ["CREATE LOGIN app_reader WITH PASSWORD = N'", (pw, "password"), "', CHECK_POLICY = OFF;"],
            ["CREATE USER app WITH ENCRYPTED PASSWORD '", (pw, "password"), "';"],
        ]))  # fmt: skip
    if k == 6:
        return mk("SELECT id FROM orders WHERE order_no = '", (order_no(rng), "~order_no"), "' AND invoice = '", (luhn_bad_grouped(rng), "~luhn_invalid"), "' AND iban_hint = '",
                  (iban_bad_any(rng), "~iban_invalid"), "' AND created_at > '", (ts(rng), "~timestamp"), "'")  # fmt: skip
    return mk(
        "INSERT INTO payouts (iban, amount, ref) VALUES ('",
        (iban(rng), "iban"),
        "', ",
        f"{rng.uniform(1, 900):.2f}",
        ", '",
        (uuid4(rng), "~uuid"),
        "');",
    )


def f_csv(rng: R) -> Sample:
    k = rng.randrange(5)
    if k == 0:
        ip, kind = ip_any(rng)
        return mk(
            "email,phone,card_number,ip_address,created_at\n",
            (email(rng), "email"),
            ",",
            (phone(rng), "phone"),
            ",",
            (card(rng), "credit_card"),
            ",",
            (ip, kind),
            ",",
            (ts(rng), "~timestamp"),
        )
    if k == 1:
        return mk(
            "email\tphone\tssn\torder\n",
            (email(rng), "email"),
            "\t",
            (phone(rng), "phone"),
            "\t",
            (ssn_dashed(rng), "ssn"),
            "\t",
            (order_no(rng), "~order_no"),
        )
    if k == 2:
        return mk(
            "Name;IBAN;Betrag;Verwendungszweck\nJane Doe;",
            (iban(rng), "iban"),
            ";12,50;Rechnung ",
            (order_no(rng), "~order_no"),
        )
    if k == 3:
        return mk(
            '"Doe, Jane","',
            (email(rng), "email"),
            '","',
            (phone(rng), "phone"),
            '","',
            (version(rng), "~version"),
            '","',
            (uuid4(rng), "~uuid"),
            '"',
        )
    return mk("order_id,card_hint,iban_hint,sku\n", (order_no(rng), "~order_no"), ",", (luhn_bad_grouped(rng), "~luhn_invalid"), ",", (iban_bad_any(rng), "~iban_invalid"), ",",
              (f"SKU-{r(rng, UPPER, 3)}-{r(rng, DIGITS, 5)}", "~order_no"))  # fmt: skip


def f_markdown(rng: R) -> Sample:
    k = rng.randrange(5)
    if k == 0:
        return mk(
            "| Name | Email | Phone |\n|------|-------|-------|\n| Jane Doe | ",
            (email(rng), "email"),
            " | ",
            (phone(rng), "phone"),
            " |",
        )
    if k == 1:
        key, val = rng.choice([("password", lambda: (simple_password(rng), "password")), ("api_key", lambda: (api_key(rng), "api_key")),
                               ("client_secret", lambda: (client_secret(rng), "client_secret")), ("token", lambda: (mixed(rng, ALNUM, 40), "oauth_token"))])  # fmt: skip
        return mk("| Key | Value |\n| --- | --- |\n| ", key, " | ", val(), " |")
    if k == 2:
        lead = rng.choice(["**Password:** ", "- **Password**: ", "* Password: `"])
        return mk(lead, (simple_password(rng), "password"), "`" if lead.endswith("`") else "")
    if k == 3:
        return mk("---\ntitle: Release notes\nauthor_email: ", (email(rng), "email"), "\napi_token: ", (mixed(rng, ALNUM, 40), "oauth_token"), "\ndate: ", (ts(rng)[:10], "~timestamp"),
                  "\nversion: ", (version(rng), "~version"), "\n---")  # fmt: skip
    return mk(
        "| build | sha | order |\n|---|---|---|\n| ",
        (version(rng), "~version"),
        " | ",
        (sha1(rng), "~sha1"),
        " | ",
        (order_no(rng), "~order_no"),
        " |",
    )


def f_mqtt(rng: R) -> Sample:
    k = rng.randrange(7)
    pw = simple_password(rng)
    if k == 0:
        return mk(str(rng.randrange(1_700_000_000, 1_800_000_000)), ": New client connected from ", (ipv4(rng), "ipv4"), ":", str(rng.randrange(1024, 65535)),
                  " as sensor-", str(rng.randrange(99)), " (p2, c1, k60, u'device01').")  # fmt: skip
    if k == 1:
        flag = rng.choice(["-P ", "-P '", "--pw "])
        return mk(
            "mosquitto_pub -h broker.example.com -p 8883 -u device01 ",
            flag,
            (pw, "password"),
            "'" if flag.endswith("'") else "",
            " -t 'sensors/temp' -m '21.5'",
        )
    if k == 2:
        return mk(
            "HostName=hub01.azure-devices.net;DeviceId=sensor-",
            str(rng.randrange(99)),
            ";SharedAccessKey=",
            (b64(rng.randbytes(32)), "secret"),
        )
    if k == 3:
        return mk(
            "mqtt:\n  broker: ", (ipv4(rng), "ipv4"), "\n  username: homeassistant\n  password: ", (pw, "password")
        )
    if k == 4:
        return mk('MQT: tele/tasmota_', r(rng, UPPER + DIGITS, 6), '/STATE = {"Time":"', (ts(rng)[:19], "~timestamp"), '","Wifi":{"SSId":"home","BSSId":"', (mac(rng), "~mac"),
                  '","IP":"', (ipv4(rng), "ipv4"), '"}}')  # fmt: skip
    if k == 5:
        return mk('{"dev_eui":"', (r(rng, "0123456789ABCDEF", 16), "~dev_eui"), '","join_eui":"', (r(rng, "0123456789ABCDEF", 16), "~dev_eui"), '","app_key":"',
                  (hexs(rng, 32).upper(), "secret"), '"}')  # fmt: skip
    return mk(
        "paho: Sending CONNECT (u1, p1, wr0, wq0, wf0, c1, k60) client_id=b'sensor-",
        str(rng.randrange(99)),
        "' session=",
        (uuid4(rng), "~uuid"),
    )


def f_broker(rng: R) -> Sample:
    k = rng.randrange(5)
    if k == 0:
        ip, kind = ip_any(rng)
        return mk("ConsumerRecord(topic='user-events', partition=", str(rng.randrange(12)), ", offset=", str(rng.randrange(10**8)), ", timestamp=", (str(rng.randrange(1_700_000_000_000, 1_800_000_000_000)), "~timestamp"),
                  ", timestamp_type=0, key=b'", (uuid4(rng), "~uuid"), "', value=b'{\"email\": \"", (email(rng), "email"), "\", \"ip\": \"", (ip, kind),
                  "\"}', headers=[('authorization', b'Bearer ", (opaque(rng), "authorization"), "')], checksum=None)")  # fmt: skip
    if k == 1:
        return mk(
            (uuid4(rng), "~uuid"),
            '\t{"user":{"email":"',
            (email(rng), "email"),
            '","phone":"',
            (phone(rng), "phone"),
            '"}}',
        )
    if k == 2:
        return mk(
            rng.choice(["rabbitmqctl add_user ", "rabbitmqctl change_password "]),
            rng.choice(["svc_orders", "admin", "monitor"]),
            " ",
            (simple_password(rng), "password"),
        )
    if k == 3:
        return mk(
            "accepting AMQP connection <0.",
            str(rng.randrange(100, 9999)),
            ".0> (",
            (ipv4(rng), "ipv4"),
            ":",
            str(rng.randrange(30000, 60000)),
            " -> ",
            (ipv4(rng), "ipv4"),
            ":5672)",
        )
    return mk(
        "sasl.mechanism=PLAIN sasl.username=",
        (r(rng, UPPER + DIGITS, 16), "~cluster_key_id"),
        " sasl.password=",
        (mixed(rng, B64, 64), "password"),
    )


def f_mail(rng: R) -> Sample:
    k = rng.randrange(6)
    if k == 0:
        return mk('From: "Jane Doe" <', (email(rng), "email"), ">\nTo: ", (email(rng), "email"), ", ", (email(rng), "email"), "\nReceived: from mail.example.org (mail.example.org [",
                  (ipv4(rng), "ipv4"), "]) by mx.example.com with ESMTPS id ", (r(rng, ALNUM, 12), "~smtp_id"), "; Sun, 29 Nov 2026 14:02:11 +0000")  # fmt: skip
    if k == 1:
        return mk("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=sel1; h=from:to:subject:date; bh=", (b64(rng.randbytes(32)), "~dkim"),
                  "; b=", (b64(rng.randbytes(256)), "~dkim"))  # fmt: skip
    if k == 2:
        code = r(rng, DIGITS, rng.choice([6, 8]))
        return mk(
            rng.choice(["Your one-time password is ", "Your verification code is ", "Votre code de vérification : "]),
            (code, "password"),
            ". It expires in 10 minutes.",
        )
    if k == 3:
        return mk(
            "Reset your password: https://app.example.com/reset?token=",
            (mixed(rng, ALNUM, 40), "oauth_token"),
            "\nIf you did not ask for this, ignore this mail.",
        )
    if k == 4:
        if rng.random() < 0.5:  # a VERP bounce address: the recipient's address is inside the local part
            return mk(
                "Return-Path: <",
                (f"bounce+{hexs(rng, 12)}-{email(rng).replace('@', '=')}@mail.example.com", "email"),
                ">",
            )
        return mk("Return-Path: <", (email(rng), "email"), ">\nMessage-Id: <", (uuid4(rng), "~uuid"), ".mail>")
    return mk(
        "X-Originating-IP: [",
        (ipv4(rng), "ipv4"),
        "]\nAuthentication-Results: mx.example.com; spf=pass smtp.mailfrom=",
        (email(rng), "email"),
    )


_PW_KEYS = [
    "Passwort",
    "contraseña",
    "mot de passe",
    "senha",
    "пароль",
    "密码",
    "パスワード",
    "wachtwoord",
    "hasło",
    "parola",
]
_EMAIL_KEYS = ["E-Mail", "correo", "courriel", "邮箱", "メール", "email"]
_SEPS = ["：", "＝", " => ", " -> ", " := ", "\t", ": ", " = ", " — "]
_WRAP = [
    ("(", ")"),
    ("[", "]"),
    ("<", ">"),
    ("{", "}"),
    ("«", "»"),
    ("「", "」"),
    ("【", "】"),
    ("“", "”"),
    ("`", "`"),
    ("'", "'"),
    ('"', '"'),
]
_TAIL = [".", ",", ";", "!", "?", "…", ").", '".', "", ""]


def f_wrap(rng: R) -> Sample:
    k = rng.randrange(5)
    if k == 0:
        return mk(rng.choice(_PW_KEYS), rng.choice(["：", "＝", ": ", "=", " = "]), (simple_password(rng), "password"))
    if k == 1:
        return mk(rng.choice(_EMAIL_KEYS), rng.choice(_SEPS), (email(rng), "email"), rng.choice(_TAIL))
    kind = rng.choice(
        [
            "email",
            "phone",
            "credit_card",
            "ssn",
            "iban",
            "ipv4",
            "ipv6",
            "jwt",
            "github_token",
            "stripe_key",
            "aws_key_id",
        ]
    )
    value = {"email": lambda: email(rng).upper() if rng.random() < 0.3 else email(rng), "phone": lambda: phone(rng), "credit_card": lambda: card(rng),
             "ssn": lambda: ssn_dashed(rng), "iban": lambda: iban(rng), "ipv4": lambda: ipv4(rng), "ipv6": lambda: ipv6(rng).upper() if rng.random() < 0.3 else ipv6(rng),
             "jwt": lambda: gen_jwt(rng), "github_token": lambda: gh(rng), "stripe_key": lambda: gen_stripe(rng), "aws_key_id": lambda: aws_key_id(rng)}[kind]()  # fmt: skip
    if k == 2:
        a, b = rng.choice(_WRAP)
        return mk(rng.choice(["see ", "value ", "got ", "→ ", ""]), a, (value, kind), b, rng.choice(_TAIL))
    if k == 3:
        return mk(
            rng.choice(["Contact: ", "done for ", "flagged ", "值："]),
            (value, kind),
            rng.choice(_TAIL),
            rng.choice(["", " Next step.", "\n"]),
        )
    return mk(neg_any(rng), " | ", (value, kind), rng.choice(_TAIL), " | ", neg_any(rng))


def f_negative(rng: R) -> Sample:
    k = rng.randrange(8)
    if k == 0:
        return mk("build ", (version(rng), "~version"), " commit ", (sha1(rng), "~sha1"), " released ", (ts(rng), "~timestamp"), " fixes ",
                  (f"CVE-{rng.randrange(2019, 2027)}-{rng.randrange(1000, 60000)}", "~cve"), " and ", (f"KB{rng.randrange(5000000, 5100000)}", "~kb"))  # fmt: skip
    if k == 1:
        return mk(
            "ETW provider ",
            (guid(rng), "~guid"),
            " session ",
            (uuid4(rng), "~uuid"),
            " FILETIME=",
            (filetime(rng), "~filetime"),
            " owner ",
            (sid(rng), "~sid"),
        )
    if k == 2:
        return mk("order ", (order_no(rng), "~order_no"), " card_hint=", (luhn_bad_grouped(rng), "~luhn_invalid"), " iban_hint=", (iban_bad_any(rng), "~iban_invalid"),
                  " paid with ", (masked_pan(rng), "~masked_pan"))  # fmt: skip
    if k == 3:
        return mk(
            "dd.trace_id=",
            (dd_trace(rng), "~dd_trace_id"),
            " dd.span_id=",
            (dd_trace(rng), "~dd_trace_id"),
            " md5=",
            (md5(rng), "~md5"),
            " sha256=",
            (sha256(rng), "~sha256"),
        )
    if k == 4:
        return mk(
            "installed ",
            (release(rng), "~release_tag"),
            " and ",
            (release(rng), "~release_tag"),
            " in ",
            str(rng.randrange(1, 90)),
            "s",
        )
    if k == 5:
        return mk('<img src="', (data_uri(rng), "~data_uri"), '" alt="logo">')
    if k == 6:
        return mk(
            "imei=",
            (imei(rng), "~imei"),
            " mac=",
            (mac(rng), "~mac"),
            " android_id=",
            (r(rng, HEX, 16), "~android_id"),
            " fp=",
            (build_fingerprint(rng), "~build_fingerprint"),
        )
    return mk("password=", (rng.choice(["<private>", "[FILTERED]", "********", "${DB_PASSWORD}", "%(password)s", "{{ .Values.password }}"]), "~masked"),
              " token=", (rng.choice(["<private>", "[FILTERED]", "***", "$TOKEN", "<redacted>"]), "~masked"), " user=jdoe")  # fmt: skip


FAMILIES = {
    "har": f_har, "console": f_console, "sentry": f_sentry, "datadog": f_datadog, "segment": f_segment, "logcat": f_logcat,
    "ios": f_ios, "winevent": f_winevent, "powershell": f_powershell, "registry": f_registry, "webfw": f_webfw, "oauth": f_oauth,
    "sql": f_sql, "csv": f_csv, "markdown": f_markdown, "mqtt": f_mqtt, "broker": f_broker, "mail": f_mail, "wrap": f_wrap,
    "negative": f_negative,
}  # fmt: skip
WEIGHTS = {"wrap": 5, "negative": 3, "webfw": 2, "oauth": 2, "har": 2, "logcat": 2, "sql": 2}


def generate(seed: int = 9099, lines: int = 3000) -> list[Sample]:
    """`lines` labelled samples (one log record each; some span several physical lines) from the formats above."""
    return weighted_families(FAMILIES, WEIGHTS, seed, lines)


__all__ = ["FAMILIES", "generate", "luhn_ok"]
