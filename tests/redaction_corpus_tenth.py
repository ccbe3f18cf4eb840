"""A tenth labelled corpus for the log redactor: developer tooling, package managers, identity providers,
observability and chat integrations, and values in unusual encodings.

None of the nine other corpora centre on these. This one reproduces what the tools around a build and a
login write to a log, and the credential files they read echoed by `cat`, `set -x`, CI debug output and
SDK debug logging: `.npmrc` (`_authToken`, `_auth`, `_password`), `.yarnrc.yml` (`npmAuthToken`,
`npmAuthIdent`), `.pypirc`, `pip.conf` and `PIP_INDEX_URL` with user:pass, Maven `settings.xml`,
`gradle.properties`, `NuGet.Config` (`ClearTextPassword`), `.cargo/credentials.toml`, composer
`auth.json`, Docker `config.json` (`"auth"`: base64 of user:pass), `.netrc`, `.git-credentials`,
`git remote -v`, htpasswd lines, `GOPROXY`/`GOAUTH`, JFrog CLI and Nexus output, `helm repo add
--password`, Terraform Cloud `credentials.tfrc.json`; Okta/Auth0/Keycloak/Azure AD/Cognito system logs and
SDK debug output (client secrets, refresh/access/id tokens, authorization codes, SCIM bearer tokens, the
emails and phones of users); Splunk HEC, New Relic, Grafana, Honeycomb, Discord, Teams, Telegram, Twilio,
Mailgun and Postmark; values JSON-escaped (`\\u0040`), JSON-in-JSON-in-JSON (`\\\\\\"`), URL-encoded,
quoted-printable, HTML-entity encoded, PEM keys in YAML block scalars and in one-line env vars, Python
`repr` of bytes, Go `%q`/`%#v` dumps and Java record `toString()`; git author lines, sshd auth logs, SCIM
phone numbers, cards in payment SDK debug lines and IBANs in payout configs.

Look-alikes that must survive byte-identical (36 kinds): npm/yarn `integrity sha512-…` SRI hashes, pip
`--hash=sha256:`, go.sum `h1:…=`, image digests, git SHAs, Cargo.lock checksums, ETags (strong hex and
Express's weak base64 `W/"…"`), CSP nonces, OIDC `nonce`/`state`, UUIDs, ULIDs, KSUIDs, Snowflake ids,
`data:image/png;base64,` URIs, Kubernetes resourceVersions, semver strings, npm package specs
(`@scope/pkg@1.2.3`), `git@host:` remotes, Okta user/app ids (`00u…`, `0oa…`), Auth0 user ids
(`auth0|…`), client ids, Twilio Account/Message SIDs, Azure tenant ids, SSH public keys and their
`SHA256:` fingerprints, public certificate and public key blocks, GPG key ids, masks (`****`,
`[REDACTED]`) and templates (`${NPM_TOKEN}`, `{{ .Values.pass }}`, `${{ secrets.X }}`, `%NUGET_PW%`).

Written before reading the redactor's rules (issue #7). Policy followed (docs/logging.md, "What is
redacted" and the unseen corpus's list):
- a value under a credential key is a credential whatever its shape: a UUID under `_authToken`,
  `npmAuthToken`, `X-Postmark-Server-Token`, `Authorization: Splunk`, `nuget setapikey`; so is base64 of
  `user:pass` (npm `_auth`, yarn `npmAuthIdent`, Docker `"auth"`), and an encrypted Maven password
  (`{…=}`: the master key in `settings-security.xml` on the same machine decrypts it);
- htpasswd hashes (`$apr1$`, `$2y$`, `{SHA}`) are credentials: crackable offline like a Digest response;
- only the password of `user:pass@host` is a positive; the user name is not labelled either way;
- authorization codes, refresh/access/id tokens, SCIM bearer tokens and client secrets are credentials;
  client ids, user ids, tenant ids and OIDC `state`/`nonce` are not (they travel in front-channel URLs);
- a CSP `nonce-…` is not a secret: it is sent to every client in the response header and the HTML, is
  valid for that one response only, and knowing it afterwards grants nothing;
- a Twilio Account SID (`AC` + 32 hex) and Message SID (`SM…`) are identifiers, not credentials: the
  Account SID is the user half of the API's Basic auth and is in the path of every API URL
  (`/2010-04-01/Accounts/AC…/Messages.json`), like an AWS account id; the auth token is the secret;
- a Discord webhook's secret is its token (the part after the id), a Teams webhook's is the path after
  `webhookb2/`; the Snowflake ids in them are not labelled;
- emails are PII also when escaped (`\\u0040`, `%40`, `&#64;`); a person's name is not labelled;
- 127.0.0.1, 0.0.0.0 and `::1` are kept and not labelled; every other address is PII.

Every sensitive value is a positive span with its type, every look-alike a negative span with its kind
(`mk(..., ("value", "~kind"))`).
"""

# ruff: noqa: E501  (test data: long literal tokens and log lines)

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
from urllib.parse import quote

from redaction_corpus import (
    ALNUM,
    B64URL,
    DIGITS,
    HEX,
    LOWER,
    UPPER,
    Sample,
    gen_github,
    gen_jwt,
    mixed,
    weighted_families,
)
from redaction_corpus import _rand as r
from redaction_corpus import all_types as all_types  # re-exported: the tests call corpus.all_types
from redaction_corpus import negative_kinds as negative_kinds
from redaction_corpus_seventh import email, iban, ipv4, ipv6, pan, person, phone, uuid4
from redaction_corpus_unseen import mk

R = random.Random
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def ts(rng: R) -> str:
    return f"2026-11-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{r(rng, DIGITS, 3)}Z"


def user(rng: R) -> str:
    first, last = person(rng)
    return (
        rng.choice(["deploy", "ci-bot", "jenkins", "svc-build", "admin", "release"])
        if rng.random() < 0.4
        else f"{first[0].lower()}{last.lower()}".replace("'", "").replace("ü", "u")
    )


# ---------------------------------------------------------------- sensitive values

_WORDS = ["Winter", "Harbor", "Saffron", "kestrel", "Juniper", "velvet", "Cobalt", "mango", "Sierra", "ember", "Tundra"]


def password(rng: R, safe: bool = False) -> str:
    """A password; `safe` leaves out characters an ini/XML/URL/shell context would need to quote."""
    k = rng.randrange(5)
    if k == 0:
        return rng.choice(_WORDS) + str(rng.randrange(10, 9999)) + ("" if safe else rng.choice("!#%*?"))
    if k == 1:
        return mixed(rng, ALNUM if safe else ALNUM + "!%*+-._~", rng.randrange(12, 26))
    if k == 2:
        return rng.choice(_WORDS).lower() + "." + rng.choice(_WORDS).lower() + str(rng.randrange(10, 99))
    if k == 3:
        return mixed(rng, ALNUM, rng.randrange(14, 30))
    return rng.choice(["P4ssw0rd2026", "Welcome2026", "Qwerty12345", "Summer2026x", "admin12345", "Chang3Me99"])


def npm_token(rng: R) -> str:
    return "npm_" + mixed(rng, ALNUM, 36)


def basic_b64(rng: R) -> str:
    return b64(f"{user(rng)}:{password(rng)}".encode())


def pypi_token(rng: R) -> str:
    return "pypi-AgEIcHlwaS5vcmc" + mixed(rng, B64URL, rng.choice([130, 160, 180]))


def gitlab_token(rng: R) -> str:
    return "glpat-" + mixed(rng, ALNUM + "-_", 20)


def git_token(rng: R) -> str:
    return gen_github(rng) if rng.random() < 0.6 else gitlab_token(rng)


def cargo_token(rng: R) -> str:
    return "cio" + mixed(rng, ALNUM, 32)


def dockerhub_token(rng: R) -> str:
    return "dckr_pat_" + mixed(rng, B64URL, 27)


def terraform_token(rng: R) -> str:
    return mixed(rng, ALNUM, 14) + ".atlasv1." + mixed(rng, ALNUM, 67)


def jfrog_token(rng: R) -> str:
    if rng.random() < 0.5:
        return "AKCp" + mixed(rng, ALNUM, 69)
    return "cmVmdGtuOjAxOj" + mixed(rng, ALNUM, 50)


def nuget_key(rng: R) -> str:
    return "oy2" + r(rng, LOWER + DIGITS, 43)


def okta_token(rng: R) -> str:
    return "00" + mixed(rng, ALNUM + "-_", 40)


def client_secret(rng: R) -> str:
    k = rng.randrange(5)
    if k == 0:  # Okta
        return mixed(rng, B64URL, 40)
    if k == 1:  # Auth0
        return mixed(rng, B64URL, 64)
    if k == 2:  # Keycloak
        return mixed(rng, ALNUM, 32)
    if k == 3:  # Azure AD
        return r(rng, ALNUM, 3) + rng.choice("78") + "Q~" + mixed(rng, ALNUM + "-_.~", 34)
    return r(rng, LOWER + DIGITS, 52)  # Cognito


def oauth_token(rng: R) -> str:
    k = rng.randrange(4)
    if k == 0:
        return mixed(rng, B64URL, 43)  # Okta opaque refresh token
    if k == 1:
        return "v1.M" + mixed(rng, B64URL, 130)  # Auth0 rotating refresh token
    if k == 2:
        return "0.A" + mixed(rng, B64URL + ".", 300)  # Azure AD refresh token
    return mixed(rng, ALNUM, 64)


def oauth_code(rng: R) -> str:
    if rng.random() < 0.3:  # Keycloak: <uuid>.<uuid>.<uuid>
        return f"{uuid4(rng)}.{uuid4(rng)}.{uuid4(rng)}"
    return mixed(rng, B64URL, rng.choice([43, 32, 40]))


def newrelic_key(rng: R) -> str:
    k = rng.randrange(3)
    if k == 0:
        return "NRAK-" + mixed(rng, UPPER + DIGITS + "abc", 27).upper()
    if k == 1:
        return r(rng, HEX, 36) + "NRAL"
    return "NRII-" + mixed(rng, B64URL, 32)


def grafana_token(rng: R) -> str:
    if rng.random() < 0.5:
        return "glsa_" + mixed(rng, ALNUM, 32) + "_" + r(rng, HEX, 8)
    payload = json.dumps(
        {
            "o": str(rng.randrange(10**5, 10**6)),
            "n": "stack-" + r(rng, DIGITS, 6) + "-hm-read",
            "k": mixed(rng, ALNUM, 24),
            "m": {"r": "prod-us-east-0"},
        },
        separators=(",", ":"),
    )
    return "glc_" + b64(payload.encode()).rstrip("=")


def honeycomb_key(rng: R) -> str:
    if rng.random() < 0.5:
        return rng.choice(["hcaik_", "hcxik_"]) + "01" + r(rng, CROCKFORD.lower(), 24) + r(rng, HEX, 32)
    return mixed(rng, ALNUM, 22)


def snowflake(rng: R) -> str:
    return str(rng.randrange(1_000_000_000_000_000_000, 1_400_000_000_000_000_000))


def discord_token(rng: R) -> str:
    uid = snowflake(rng)
    return base64.b64encode(uid.encode()).decode().rstrip("=") + "." + r(rng, B64URL, 6) + "." + mixed(rng, B64URL, 38)


def telegram_token(rng: R) -> str:
    return str(rng.randrange(10**8, 10**10)) + ":AA" + mixed(rng, B64URL, 33)


def mailgun_key(rng: R) -> str:
    if rng.random() < 0.5:
        return "key-" + r(rng, HEX, 32)
    return f"{r(rng, HEX, 32)}-{r(rng, HEX, 8)}-{r(rng, HEX, 8)}"


def hex32(rng: R) -> str:
    while True:
        s = r(rng, HEX, 32)
        if sum(c.isdigit() for c in s) >= 4 and sum(c.isalpha() for c in s) >= 4:
            return s


def pem_lines(rng: R, kind: str, nbytes: int) -> list[str]:
    body = b64(rng.randbytes(nbytes))
    return [f"-----BEGIN {kind}-----", *(body[i : i + 64] for i in range(0, len(body), 64)), f"-----END {kind}-----"]


def public_pem(rng: R, kind: str) -> list[str]:
    """A certificate or SubjectPublicKeyInfo block whose DER starts as real ones do (SEQUENCE, version/OID)."""
    if kind == "CERTIFICATE":
        body = rng.randbytes(rng.choice([700, 900]))
        tbs = b"\xa0\x03\x02\x01\x02\x02\x14" + body
        der = b"\x30\x82" + (len(tbs) + 4).to_bytes(2, "big") + b"\x30\x82" + len(tbs).to_bytes(2, "big") + tbs
    else:
        der = (
            base64.b64decode("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA")
            + rng.randbytes(256)
            + b"\x02\x03\x01\x00\x01"
        )
    text = b64(der)
    return [f"-----BEGIN {kind}-----", *(text[i : i + 64] for i in range(0, len(text), 64)), f"-----END {kind}-----"]


def htpasswd_hash(rng: R) -> str:
    k = rng.randrange(3)
    if k == 0:
        return "$apr1$" + r(rng, ALNUM + "./", 8) + "$" + r(rng, ALNUM + "./", 22)
    if k == 1:
        return "$2y$" + rng.choice(["05", "10", "12"]) + "$" + r(rng, ALNUM + "./", 53)
    return "{SHA}" + b64(rng.randbytes(20))


# ---------------------------------------------------------------- look-alikes


def sri(rng: R) -> str:
    return rng.choice(
        [
            "sha512-" + b64(rng.randbytes(64)),
            "sha512-" + b64(rng.randbytes(64)),
            "sha1-" + b64(rng.randbytes(20)),
            "sha384-" + b64(rng.randbytes(48)),
        ]
    )


def sha256hex(rng: R) -> str:
    return hashlib.sha256(rng.randbytes(16)).hexdigest()


def git_sha(rng: R) -> str:
    return hashlib.sha1(rng.randbytes(16)).hexdigest()


def go_sum_hash(rng: R) -> str:
    return "h1:" + b64(rng.randbytes(32))


def ulid(rng: R) -> str:
    return "01J" + r(rng, CROCKFORD, 23)


def ksuid(rng: R) -> str:
    return rng.choice("123") + mixed(rng, B62, 26)


def semver(rng: R) -> str:
    base = f"{rng.randrange(0, 20)}.{rng.randrange(0, 40)}.{rng.randrange(0, 30)}"
    return base + rng.choice(
        [
            "",
            "",
            f"-beta.{rng.randrange(1, 9)}",
            f"-rc.{rng.randrange(1, 5)}+build.{rng.randrange(1, 999)}",
            f"-alpha.{r(rng, HEX, 7)}",
        ]
    )


def okta_id(rng: R, prefix: str = "00u") -> str:
    return prefix + mixed(rng, ALNUM, 17)


def auth0_user_id(rng: R) -> str:
    return rng.choice(
        [
            f"auth0|{r(rng, HEX, 24)}",
            f"google-oauth2|{r(rng, DIGITS, 21)}",
            f"github|{rng.randrange(10**5, 10**8)}",
            f"samlp|acme|{r(rng, HEX, 24)}",
        ]
    )


def client_id(rng: R) -> str:
    k = rng.randrange(4)
    if k == 0:
        return okta_id(rng, "0oa")
    if k == 1:
        return mixed(rng, ALNUM, 32)  # Auth0
    if k == 2:
        return uuid4(rng)  # Azure AD application id
    return r(rng, LOWER + DIGITS, 26)  # Cognito app client id


def twilio_sid(rng: R, prefix: str = "AC") -> str:
    return prefix + hex32(rng)


def _ssh_str(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


def ssh_pubkey(rng: R) -> str:
    """An OpenSSH public key line's type and blob (RFC 4253 §6.6 wire encoding)."""
    if rng.random() < 0.5:
        return "ssh-ed25519 " + b64(_ssh_str(b"ssh-ed25519") + _ssh_str(rng.randbytes(32)))
    return "ssh-rsa " + b64(_ssh_str(b"ssh-rsa") + _ssh_str(b"\x01\x00\x01") + _ssh_str(b"\x00" + rng.randbytes(384)))


def ssh_fp(rng: R) -> str:
    return "SHA256:" + b64(rng.randbytes(32)).rstrip("=")


def nonce(rng: R) -> str:
    return b64(rng.randbytes(16))


def data_uri(rng: R) -> str:
    return "data:image/png;base64," + b64(
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + rng.randbytes(rng.choice([30, 60, 90]))
    )


def npm_spec(rng: R) -> str:
    return (
        rng.choice(
            ["@babel/core", "@types/node", "@aws-sdk/client-s3", "@acme/ui-kit", "@nestjs/common", "@okta/okta-auth-js"]
        )
        + "@"
        + semver(rng)
    )


TEMPLATES = [
    "${NPM_TOKEN}",
    "{{ .Values.pass }}",
    "${{ secrets.NPM_TOKEN }}",
    "$NPM_TOKEN",
    "${env.ARTIFACTORY_PASSWORD}",
    "{{ vault_registry_password }}",
]
MASKS = ["****", "********", "[REDACTED]", "[MASKED]", "***"]


def tpl(rng: R) -> tuple[str, str]:
    return rng.choice(TEMPLATES), "~template"


def masked(rng: R) -> tuple[str, str]:
    return rng.choice(MASKS), "~masked"


# ---------------------------------------------------------------- package managers and registries


def f_npm(rng: R) -> Sample:
    k = rng.randrange(7)
    host = rng.choice(
        [
            "registry.npmjs.org",
            "npm.pkg.github.com",
            "nexus.corp.example/repository/npm-private",
            "acme.jfrog.io/artifactory/api/npm/npm",
        ]
    )
    if k == 0:
        tok = npm_token(rng) if rng.random() < 0.7 else uuid4(rng)  # legacy npm tokens are UUIDs
        return mk(f"//{host}/:_authToken=", (tok, "npm_token"))
    if k == 1:
        return mk(
            "$ cat ~/.npmrc\n",
            f"registry=https://{host}/\n",
            "_auth=",
            (basic_b64(rng), "registry_auth"),
            "\nalways-auth=true\nemail=",
            (email(rng), "email"),
        )
    if k == 2:
        return mk(
            f"//{host}/:username={user(rng)}\n//{host}/:_password=", (b64(password(rng).encode()), "registry_auth")
        )
    if k == 3:
        return mk(f"//{host}/:_authToken=", tpl(rng), "  # set by CI")
    if k == 4:
        return mk(
            "npm notice === Tarball Details ===\nnpm notice name:          ",
            (npm_spec(rng).rsplit("@", 1)[0], "~npm_spec"),
            "\nnpm notice shasum:        ",
            (git_sha(rng), "~git_sha"),
            "\nnpm notice integrity:     ",
            (sri(rng), "~sri"),
        )
    if k == 5:
        return mk(
            f'    "node_modules/{rng.choice(["lodash", "react", "semver", "debug"])}": {{"version": "',
            (semver(rng), "~semver"),
            '", "resolved": "https://registry.npmjs.org/x/-/x.tgz", "integrity": "',
            (sri(rng), "~sri"),
            '"}',
        )
    return mk(
        "npm verb ",
        rng.choice(["getAuth", "config"]),
        " ",
        (npm_spec(rng), "~npm_spec"),
        " token=",
        (npm_token(rng), "npm_token"),
        " from ~/.npmrc",
    )


def f_yarn(rng: R) -> Sample:
    k = rng.randrange(5)
    if k == 0:
        tok = npm_token(rng) if rng.random() < 0.6 else git_token(rng)
        kind = "npm_token" if tok.startswith("npm_") else "git_token"
        return mk(
            'npmScopes:\n  acme:\n    npmRegistryServer: "https://npm.pkg.github.com"\n    npmAuthToken: "',
            (tok, kind),
            '"',
        )
    if k == 1:
        u = user(rng)
        if rng.random() < 0.5:
            return mk(f'npmAuthIdent: "{u}:', (password(rng, safe=True), "password"), '"')
        return mk('npmAuthIdent: "', (basic_b64(rng), "registry_auth"), '"\nnpmAlwaysAuth: true')
    if k == 2:
        return mk(
            f'"{npm_spec(rng)}":\n  version: ',
            (semver(rng), "~semver"),
            "\n  checksum: ",
            ("10c0/" + hashlib.sha512(rng.randbytes(8)).hexdigest(), "~yarn_checksum"),
        )
    if k == 3:
        return mk(f'{npm_spec(rng)}:\n  version "{semver(rng)}"\n  integrity ', (sri(rng), "~sri"))
    return mk("npmAuthToken: ", tpl(rng))


def f_python(rng: R) -> Sample:
    k = rng.randrange(6)
    u = user(rng)
    if k == 0:
        return mk(
            "[distutils]\nindex-servers = pypi corp\n\n[pypi]\nusername = __token__\npassword = ",
            (pypi_token(rng), "pypi_token"),
        )
    if k == 1:
        return mk(
            f"[corp]\nrepository = https://nexus.corp.example/repository/pypi-internal/\nusername = {u}\npassword = ",
            (password(rng), "password"),
        )
    if k == 2:
        pw = password(rng)
        return mk(
            f"[global]\nindex-url = https://{u}:",
            (quote(pw, safe=""), "password"),
            "@pypi.corp.example/simple\ntrusted-host = pypi.corp.example",
        )
    if k == 3:
        return mk(
            f"+ export PIP_INDEX_URL=https://{u}:",
            (quote(password(rng), safe=""), "password"),
            "@acme.jfrog.io/artifactory/api/pypi/pypi/simple",
        )
    if k == 4:
        return mk(f"Looking in indexes: https://{u}:", masked(rng), "@pypi.corp.example/simple")
    return mk(
        f"{rng.choice(['requests', 'urllib3', 'idna', 'certifi'])}=={semver(rng)} \\\n    --hash=sha256:",
        (sha256hex(rng), "~pip_hash"),
        " \\\n    --hash=sha256:",
        (sha256hex(rng), "~pip_hash"),
    )


def f_jvm(rng: R) -> Sample:
    k = rng.randrange(6)
    u = user(rng)
    if k == 0:
        pw = password(rng, safe=True) if rng.random() < 0.6 else "{" + b64(rng.randbytes(rng.choice([24, 32]))) + "}"
        return mk(
            f"<server>\n  <id>{rng.choice(['nexus-releases', 'central', 'github'])}</id>\n  <username>{u}</username>\n  <password>",
            (pw, "password"),
            "</password>\n</server>",
        )
    if k == 1:
        key = rng.choice(
            [
                "mavenPassword",
                "artifactoryPassword",
                "ossrhPassword",
                "signing.password",
                "systemProp.https.proxyPassword",
                "nexusPassword",
            ]
        )
        return mk(
            f"{key}=",
            (password(rng), "password"),
            "\norg.gradle.jvmargs=-Xmx2g -Dfile.encoding=UTF-8\nsigning.keyId=",
            (r(rng, HEX, 8).upper(), "~gpg_key_id"),
        )
    if k == 2:
        return mk("<password>", tpl(rng), "</password>")
    if k == 3:
        return mk(
            f"[INFO] Downloaded from nexus: https://nexus.corp.example/repository/maven-public/org/acme/core/{semver(rng)}/core.jar.sha1 (",
            (git_sha(rng), "~git_sha"),
            ")",
        )
    if k == 4:
        return mk(
            f"> Task :publish\nPublishing to https://{u}:",
            (quote(password(rng), safe=""), "password"),
            "@maven.corp.example/releases",
        )
    return mk(
        "ORG_GRADLE_PROJECT_mavenCentralPassword=",
        (password(rng), "password"),
        " ORG_GRADLE_PROJECT_signingInMemoryKeyId=",
        (r(rng, HEX, 8).upper(), "~gpg_key_id"),
    )


def f_dotnet(rng: R) -> Sample:
    k = rng.randrange(5)
    if k == 0:
        return mk(
            f'<packageSourceCredentials>\n  <acme>\n    <add key="Username" value="{user(rng)}" />\n    <add key="ClearTextPassword" value="',
            (password(rng, safe=True), "password"),
            '" />\n  </acme>\n</packageSourceCredentials>',
        )
    if k == 1:
        key = nuget_key(rng) if rng.random() < 0.5 else uuid4(rng)
        return mk(
            "nuget setapikey ", (key, "nuget_key"), " -Source https://nexus.corp.example/repository/nuget-hosted/"
        )
    if k == 2:
        return mk(
            f"dotnet nuget push bin/Release/Acme.Core.{semver(rng)}.nupkg --api-key ",
            (nuget_key(rng), "nuget_key"),
            " --source https://api.nuget.org/v3/index.json",
        )
    if k == 3:
        return mk(
            f"dotnet nuget add source https://pkgs.dev.azure.com/acme/_packaging/feed/nuget/v3/index.json -n acme -u {user(rng)} -p ",
            (password(rng, safe=True), "password"),
            " --store-password-in-clear-text",
        )
    # NuGet.Config values expand %VAR% environment references; MSBuild passes $(Property)
    windows = rng.choice(["%NUGET_PW%", "%NUGET_PASSWORD%", "$(NuGetFeedPassword)"])
    return mk(
        '<add key="ClearTextPassword" value="', tpl(rng) if rng.random() < 0.3 else (windows, "~template"), '" />'
    )


def f_cargo_composer(rng: R) -> Sample:
    k = rng.randrange(6)
    if k == 0:
        return mk('[registry]\ntoken = "', (cargo_token(rng), "cargo_token"), '"')
    if k == 1:
        return mk(
            f'[registries.{rng.choice(["acme", "corp", "kellnr"])}]\ntoken = "Bearer ',
            (mixed(rng, ALNUM, 32), "cargo_token"),
            '"',
        )
    if k == 2:
        return mk(
            '[[package]]\nname = "serde"\nversion = "',
            (semver(rng), "~semver"),
            '"\nsource = "registry+https://github.com/rust-lang/crates.io-index"\nchecksum = "',
            (sha256hex(rng), "~cargo_checksum"),
            '"',
        )
    if k == 3:
        return mk(
            '{"http-basic": {"repo.packagist.com": {"username": "token", "password": "',
            (password(rng, safe=True), "password"),
            '"}}, "github-oauth": {"github.com": "',
            (gen_github(rng), "git_token"),
            '"}}',
        )
    if k == 4:
        return mk(
            'COMPOSER_AUTH=\'{"gitlab-token":{"gitlab.com":"',
            (gitlab_token(rng), "git_token"),
            "\"}}' composer install --no-dev",
        )
    return mk(
        '    "source": {"type": "git", "url": "https://github.com/symfony/console.git", "reference": "',
        (git_sha(rng), "~git_sha"),
        '"},',
    )


def f_docker(rng: R) -> Sample:
    k = rng.randrange(6)
    if k == 0:
        reg = rng.choice(["https://index.docker.io/v1/", "ghcr.io", "registry.gitlab.com", "acme.azurecr.io"])
        return mk(
            '{\n  "auths": {\n    "' + reg + '": {\n      "auth": "',
            (basic_b64(rng), "registry_auth"),
            '"\n    }\n  },\n  "credsStore": "desktop"\n}',
        )
    if k == 1:
        return mk(
            f"+ docker login -u {user(rng)} -p ",
            (dockerhub_token(rng), "dockerhub_token"),
            " docker.io\nWARNING! Using --password via the CLI is insecure. Use --password-stdin.",
        )
    if k == 2:
        img = rng.choice(["ghcr.io/acme/api", "docker.io/library/nginx", "acme.azurecr.io/web"])
        return mk(
            f"{rng.choice(['latest', 'v1', semver(rng)])}: digest: ",
            ("sha256:" + sha256hex(rng), "~image_digest"),
            f" size: {rng.randrange(500, 3000)}\nStatus: Downloaded newer image for {img}@",
            ("sha256:" + sha256hex(rng), "~image_digest"),
        )
    if k == 3:
        return mk(
            '{"auths":{"ghcr.io":{"username":"' + user(rng) + '","password":"',
            (gen_github(rng), "git_token"),
            '","auth":"',
            (basic_b64(rng), "registry_auth"),
            '"}}}',
        )
    if k == 4:
        return mk('"identitytoken": "', (mixed(rng, B64URL, 64), "registry_auth"), '"')
    return mk("echo ", tpl(rng), " | docker login ghcr.io -u ", user(rng), " --password-stdin\nLogin Succeeded")


def f_git(rng: R) -> Sample:
    k = rng.randrange(7)
    org, repo = rng.choice(["acme", "corp", "octo-org"]), rng.choice(["api", "infra", "web-app", "tools"])
    if k == 0:
        tok = git_token(rng)
        u = rng.choice(["x-access-token", "oauth2", "gitlab-ci-token", user(rng)])
        host = "gitlab.com" if tok.startswith("glpat") else "github.com"
        return mk(
            f"$ git remote -v\norigin\thttps://{u}:",
            (tok, "git_token"),
            f"@{host}/{org}/{repo}.git (fetch)\norigin\thttps://{u}:",
            (tok, "git_token"),
            f"@{host}/{org}/{repo}.git (push)",
        )
    if k == 1:
        return mk(
            f"https://{user(rng)}:",
            (quote(password(rng), safe=""), "password"),
            f"@git.corp.example\nhttps://{user(rng)}:",
            (gen_github(rng), "git_token"),
            "@github.com",
        )
    if k == 2:
        secret = (git_token(rng), "git_token") if rng.random() < 0.5 else (password(rng, safe=True), "password")
        return mk(
            "machine ",
            rng.choice(["github.com", "api.github.com", "gitlab.corp.example", "proxy.golang.corp"]),
            f" login {user(rng)} password ",
            secret,
        )
    if k == 3:
        first, last = person(rng)
        return mk(
            "commit ",
            (git_sha(rng), "~git_sha"),
            f"\nAuthor: {first} {last} <",
            (email(rng), "email"),
            ">\nDate:   Sun Nov 29 12:01:02 2026 +0100",
        )
    if k == 4:
        first, last = person(rng)
        return mk(
            f"    Signed-off-by: {first} {last} <",
            (email(rng), "email"),
            ">\n    Co-authored-by: ",
            " ".join(person(rng)),
            " <",
            (email(rng), "email"),
            ">",
        )
    if k == 5:
        return mk(
            "origin\t",
            (f"git@github.com:{org}/{repo}.git", "~ssh_remote"),
            " (fetch)  HEAD is now at ",
            (git_sha(rng)[:7], "~git_sha"),
        )
    return mk(
        f"remote: Counting objects: 100% ({rng.randrange(5, 999)}), done.\n   ",
        (git_sha(rng)[:7], "~git_sha"),
        "..",
        (git_sha(rng)[:7], "~git_sha"),
        "  main -> main",
    )


def f_htpasswd(rng: R) -> Sample:
    k = rng.randrange(3)
    if k == 0:
        return mk(
            f"{user(rng)}:",
            (htpasswd_hash(rng), "password_hash"),
            f"\n{user(rng)}:",
            (htpasswd_hash(rng), "password_hash"),
        )
    if k == 1:
        u = user(rng)
        return mk(
            f"+ htpasswd -bB /etc/nginx/.htpasswd {u} ",
            (password(rng, safe=True), "password"),
            f"\nAdding password for user {u}",
        )
    return mk("registry_htpasswd: '", user(rng), ":", (htpasswd_hash(rng), "password_hash"), "'")


def f_goproxy(rng: R) -> Sample:
    k = rng.randrange(4)
    mod = rng.choice(["github.com/acme/lib", "golang.org/x/net", "github.com/stretchr/testify", "go.uber.org/zap"])
    if k == 0:
        return mk(
            f"GOPROXY=https://{user(rng)}:",
            (quote(password(rng), safe=""), "password"),
            "@goproxy.corp.example,https://proxy.golang.org,direct\nGOPRIVATE=github.com/acme/*\nGOFLAGS=-mod=mod",
        )
    if k == 1:
        v = "v" + semver(rng)
        return mk(f"{mod} {v} ", (go_sum_hash(rng), "~go_sum"), f"\n{mod} {v}/go.mod ", (go_sum_hash(rng), "~go_sum"))
    if k == 2:
        return mk(
            f"go: downloading {mod} v{semver(rng)}\ngo: verifying ",
            (f"{mod}@v{semver(rng)}", "~go_module_version"),
            ": checksum mismatch\n\tdownloaded: ",
            (go_sum_hash(rng), "~go_sum"),
            "\n\tgo.sum:     ",
            (go_sum_hash(rng), "~go_sum"),
        )
    return mk(
        f'+ git config --global url."https://{user(rng)}:',
        (gen_github(rng), "git_token"),
        '@github.com/".insteadOf "https://github.com/"',
    )


def f_jfrog_nexus(rng: R) -> Sample:
    k = rng.randrange(6)
    if k == 0:
        return mk(
            f"jf c add acme --url=https://acme.jfrog.io --user={user(rng)} --password=",
            (password(rng, safe=True), "password"),
            " --interactive=false",
        )
    if k == 1:
        return mk(
            "jf rt ping --url=https://acme.jfrog.io/artifactory --access-token=", (jfrog_token(rng), "jfrog_token")
        )
    if k == 2:
        return mk(
            "[Debug] Sending HTTP GET request to: https://acme.jfrog.io/artifactory/api/system/ping\n[Debug] Header X-JFrog-Art-Api: ",
            (jfrog_token(rng), "jfrog_token"),
        )
    if k == 3:
        return mk(
            '{"repo":"libs-release-local","path":"/org/acme/core.jar","checksums":{"sha1":"',
            (git_sha(rng), "~git_sha"),
            '","sha256":"',
            (sha256hex(rng), "~pip_hash"),
            '"},"downloadUri":"https://acme.jfrog.io/artifactory/libs-release-local/org/acme/core.jar"}',
        )
    if k == 4:
        return mk(
            "curl -fsS -u admin:",
            (password(rng, safe=True), "password"),
            " -X PUT https://nexus.corp.example/service/rest/v1/security/users/admin/change-password",
        )
    return mk(
        "JFROG_CLI_ACCESS_TOKEN=",
        (jfrog_token(rng), "jfrog_token"),
        " JFROG_CLI_BUILD_NUMBER=",
        str(rng.randrange(1, 9999)),
    )


def f_helm_tf(rng: R) -> Sample:
    k = rng.randrange(6)
    if k == 0:
        return mk(
            f"+ helm repo add acme https://charts.corp.example --username {user(rng)} --password ",
            (password(rng, safe=True), "password"),
        )
    if k == 1:
        return mk(
            f"helm registry login registry.corp.example -u {user(rng)} --password ",
            (password(rng, safe=True), "password"),
            "\nLogin Succeeded",
        )
    if k == 2:
        return mk(
            "        - name: DB_PASSWORD\n          value: ",
            ("{{ .Values.pass }}" if rng.random() < 0.5 else "{{ .Values.db.password | quote }}", "~template"),
            '\nmetadata:\n  resourceVersion: "',
            (str(rng.randrange(10**5, 10**9)), "~resource_version"),
            '"',
        )
    if k == 3:
        return mk(
            '{\n  "credentials": {\n    "app.terraform.io": {\n      "token": "',
            (terraform_token(rng), "terraform_token"),
            '"\n    }\n  }\n}',
        )
    if k == 4:
        return mk(
            "TF_TOKEN_app_terraform_io=", (terraform_token(rng), "terraform_token"), " terraform init -input=false"
        )
    return mk(
        "Terraform has obtained and saved an API token.\nRetrieved token for user ",
        user(rng),
        " (",
        ("user-" + mixed(rng, ALNUM, 16), "~tfc_user_id"),
        ")",
    )


# ---------------------------------------------------------------- identity providers


def f_okta(rng: R) -> Sample:
    k = rng.randrange(5)
    if k == 0:
        first, last = person(rng)
        return mk(
            '{"actor":{"id":"',
            (okta_id(rng), "~okta_id"),
            '","type":"User","alternateId":"',
            (email(rng), "email"),
            f'","displayName":"{first} {last}"}},"client":{{"ipAddress":"',
            (ipv4(rng), "ipv4"),
            '"},"eventType":"user.session.start","outcome":{"result":"SUCCESS"},"uuid":"',
            (uuid4(rng), "~uuid"),
            '","published":"',
            ts(rng),
            '"}',
        )
    if k == 1:
        return mk(
            "okta-sdk-java DEBUG GET https://acme.okta.com/api/v1/users/",
            (okta_id(rng), "~okta_id"),
            " headers: {Accept=application/json, Authorization=SSWS ",
            (okta_token(rng), "okta_token"),
            "}",
        )
    if k == 2:
        return mk(
            'token response: {"token_type":"Bearer","expires_in":3600,"access_token":"',
            (gen_jwt(rng), "jwt"),
            '","scope":"openid offline_access","refresh_token":"',
            (oauth_token(rng), "oauth_token"),
            '","id_token":"',
            (gen_jwt(rng), "jwt"),
            '"}',
        )
    if k == 3:
        return mk(
            "GET /authorization-code/callback?code=",
            (oauth_code(rng), "oauth_code"),
            "&state=",
            (mixed(rng, B64URL, 24), "~oidc_state"),
            ' HTTP/1.1" 302 client_id=',
            (okta_id(rng, "0oa"), "~client_id"),
        )
    return mk(
        "OKTA_CLIENT_ID=",
        (okta_id(rng, "0oa"), "~client_id"),
        "\nOKTA_CLIENT_SECRET=",
        (client_secret(rng), "client_secret"),
        "\nOKTA_API_TOKEN=",
        (okta_token(rng), "okta_token"),
    )


def f_auth0(rng: R) -> Sample:
    k = rng.randrange(4)
    cid = mixed(rng, ALNUM, 32)
    if k == 0:
        return mk(
            '{"date":"',
            ts(rng),
            '","type":"s","client_id":"',
            (cid, "~client_id"),
            '","client_name":"Acme Web","ip":"',
            ((ipv4(rng), "ipv4") if rng.random() < 0.7 else (ipv6(rng), "ipv6")),
            '","user_id":"',
            (auth0_user_id(rng), "~auth0_user_id"),
            '","user_name":"',
            (email(rng), "email"),
            '"}',
        )
    if k == 1:
        return mk(
            'POST https://acme.us.auth0.com/oauth/token {"client_id":"',
            (cid, "~client_id"),
            '","client_secret":"',
            (client_secret(rng), "client_secret"),
            '","audience":"https://api.acme.example","grant_type":"client_credentials"}',
        )
    if k == 2:
        return mk(
            "AUTH0_DOMAIN=acme.eu.auth0.com\nAUTH0_CLIENT_ID=",
            (cid, "~client_id"),
            "\nAUTH0_CLIENT_SECRET=",
            (client_secret(rng), "client_secret"),
        )
    return mk(
        'auth0.js refresh: {"grant_type":"refresh_token","client_id":"',
        (cid, "~client_id"),
        '","refresh_token":"',
        (oauth_token(rng), "oauth_token"),
        '"}',
    )


def f_keycloak(rng: R) -> Sample:
    k = rng.randrange(5)
    if k == 0:
        return mk(
            f"{ts(rng)} INFO  [org.keycloak.events] (executor-thread-{rng.randrange(1, 40)}) type=LOGIN, realmId=acme, clientId=web-app, userId=",
            (uuid4(rng), "~uuid"),
            ", ipAddress=",
            (ipv4(rng), "ipv4"),
            ", auth_method=openid-connect, username=",
            (email(rng), "email"),
            ", code_id=",
            (uuid4(rng), "~uuid"),
        )
    if k == 1:
        return mk(
            "+ /opt/keycloak/bin/kcadm.sh config credentials --server http://keycloak:8080 --realm master --user admin --password ",
            (password(rng, safe=True), "password"),
        )
    if k == 2:
        return mk(
            "KC_BOOTSTRAP_ADMIN_USERNAME=admin KC_BOOTSTRAP_ADMIN_PASSWORD=",
            (password(rng), "password"),
            " KC_DB_PASSWORD=",
            (password(rng), "password"),
        )
    if k == 3:
        return mk(
            '    {"clientId": "web-app", "enabled": true, "secret": "',
            (mixed(rng, ALNUM, 32), "client_secret"),
            '", "redirectUris": ["https://app.acme.example/*"]}',
        )
    return mk(
        "POST /realms/acme/protocol/openid-connect/token grant_type=authorization_code&code=",
        (oauth_code(rng), "oauth_code"),
        "&redirect_uri=https%3A%2F%2Fapp.acme.example%2Fcb&client_id=web-app&client_secret=",
        (client_secret(rng), "client_secret"),
    )


def f_azure(rng: R) -> Sample:
    k = rng.randrange(4)
    if k == 0:
        return mk(
            "+ az login --service-principal -u ",
            (uuid4(rng), "~client_id"),
            " -p ",
            (client_secret(rng), "client_secret"),
            " --tenant ",
            (uuid4(rng), "~tenant_id"),
        )
    if k == 1:
        return mk(
            '{"createdDateTime":"',
            ts(rng),
            '","userPrincipalName":"',
            (email(rng), "email"),
            '","appId":"',
            (uuid4(rng), "~client_id"),
            '","ipAddress":"',
            (ipv4(rng), "ipv4"),
            '","status":{"errorCode":50126}}',
        )
    if k == 2:
        return mk(
            'msal token cache: {"RefreshToken": {"',
            (uuid4(rng), "~uuid"),
            ".",
            (uuid4(rng), "~tenant_id"),
            "-login.microsoftonline.com-refreshtoken-",
            (uuid4(rng), "~client_id"),
            '--": {"credential_type": "RefreshToken", "secret": "',
            (oauth_token(rng), "oauth_token"),
            '"}}}',
        )
    return mk(
        "AZURE_TENANT_ID=",
        (uuid4(rng), "~tenant_id"),
        "\nAZURE_CLIENT_ID=",
        (uuid4(rng), "~client_id"),
        "\nAZURE_CLIENT_SECRET=",
        (client_secret(rng), "client_secret"),
    )


def jwe(rng: R) -> str:
    head = base64.urlsafe_b64encode(b'{"cty":"JWT","enc":"A256GCM","alg":"RSA-OAEP"}').rstrip(b"=").decode()
    return ".".join(
        [
            head,
            mixed(rng, B64URL, 342),
            mixed(rng, B64URL, 22),
            mixed(rng, B64URL, rng.choice([600, 900])),
            mixed(rng, B64URL, 22),
        ]
    )


def f_cognito(rng: R) -> Sample:
    k = rng.randrange(4)
    cid = r(rng, LOWER + DIGITS, 26)
    if k == 0:
        return mk(
            "aws cognito-idp initiate-auth --auth-flow USER_PASSWORD_AUTH --client-id ",
            (cid, "~client_id"),
            " --auth-parameters USERNAME=",
            (email(rng), "email"),
            ",PASSWORD=",
            (password(rng, safe=True), "password"),
        )
    if k == 1:
        return mk(
            'botocore.endpoint DEBUG Making request for OperationModel(name=InitiateAuth) with params: {\'body\': b\'{"AuthFlow":"USER_PASSWORD_AUTH","AuthParameters":{"USERNAME":"',
            (email(rng), "email"),
            '","PASSWORD":"',
            (password(rng, safe=True), "password"),
            '"},"ClientId":"',
            (cid, "~client_id"),
            "\"}'}",
        )
    if k == 2:
        return mk(
            '{"AuthenticationResult":{"AccessToken":"',
            (gen_jwt(rng), "jwt"),
            '","ExpiresIn":3600,"TokenType":"Bearer","RefreshToken":"',
            (jwe(rng), "jwt"),
            '","IdToken":"',
            (gen_jwt(rng), "jwt"),
            '"}}',
        )
    return mk(
        '{"UserPoolClient":{"UserPoolId":"us-east-1_',
        mixed(rng, ALNUM, 9),
        '","ClientId":"',
        (cid, "~client_id"),
        '","ClientSecret":"',
        (r(rng, LOWER + DIGITS, 52), "client_secret"),
        '"}}',
    )


def f_scim(rng: R) -> Sample:
    k = rng.randrange(3)
    first, last = person(rng)
    if k == 0:
        return mk(
            "scim request POST /scim/v2/Users headers={'Authorization': 'Bearer ",
            (mixed(rng, ALNUM, rng.choice([32, 40, 64])), "scim_token"),
            "', 'Content-Type': 'application/scim+json'}",
        )
    if k == 1:
        return mk(
            '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"externalId":"',
            (okta_id(rng), "~okta_id"),
            '","userName":"',
            (email(rng), "email"),
            f'","name":{{"givenName":"{first}","familyName":"{last}"}},"emails":[{{"value":"',
            (email(rng), "email"),
            '","primary":true}],"phoneNumbers":[{"value":"',
            (phone(rng), "phone"),
            '","type":"mobile"}],"photos":[{"value":"',
            (data_uri(rng), "~data_uri"),
            '","type":"thumbnail"}]}',
        )
    return mk(
        f"{ts(rng)} scim-bridge PATCH /Users/",
        (uuid4(rng), "~uuid"),
        ' op=replace path=phoneNumbers[type eq "work"].value value=',
        (phone(rng), "phone"),
        " token=",
        (mixed(rng, ALNUM, 40), "scim_token"),
    )


# ---------------------------------------------------------------- observability, chat and messaging


def f_splunk(rng: R) -> Sample:
    k = rng.randrange(4)
    if k == 0:
        return mk(
            'curl -k https://splunk.corp.example:8088/services/collector/event -H "Authorization: Splunk ',
            (uuid4(rng).upper() if rng.random() < 0.3 else uuid4(rng), "splunk_token"),
            '" -d \'{"event": "deploy", "sourcetype": "_json"}\'',
        )
    if k == 1:
        return mk("[http://acme-app]\ndisabled = 0\nindex = main\ntoken = ", (uuid4(rng), "splunk_token"))
    if k == 2:
        return mk("SPLUNK_HEC_TOKEN=", (uuid4(rng), "splunk_token"), " SPLUNK_HEC_URL=https://splunk.corp.example:8088")
    return mk('{"text":"Success","code":0,"ackId":', str(rng.randrange(1, 9999)), "} channel=", (uuid4(rng), "~uuid"))


def f_o11y(rng: R) -> Sample:
    k = rng.randrange(7)
    if k == 0:
        return mk("license_key: ", (newrelic_key(rng), "newrelic_key"), "\napp_name: acme-api\nlog_level: info")
    if k == 1:
        return mk(
            "newrelic DEBUG POST https://api.newrelic.com/graphql headers {'API-Key': '",
            (newrelic_key(rng), "newrelic_key"),
            "', 'Content-Type': 'application/json'}",
        )
    if k == 2:
        return mk(
            'level=debug component=grafana-agent msg="remote write" url=https://prometheus-prod-13.grafana.net/api/prom/push basic_auth.password=',
            (grafana_token(rng), "grafana_token"),
        )
    if k == 3:
        return mk(
            'curl -H "Authorization: Bearer ',
            (grafana_token(rng), "grafana_token"),
            '" https://grafana.corp.example/api/dashboards/uid/',
            (mixed(rng, ALNUM, 9), "~grafana_uid"),
        )
    if k == 4:
        return mk(
            "OTEL_EXPORTER_OTLP_HEADERS=x-honeycomb-team=",
            (honeycomb_key(rng), "honeycomb_key"),
            ",x-honeycomb-dataset=acme-api\nOTEL_SERVICE_NAME=acme-api",
        )
    if k == 5:
        return mk(
            "POST https://api.honeycomb.io/1/batch/acme headers: X-Honeycomb-Team: ",
            (honeycomb_key(rng), "honeycomb_key"),
            " trace.trace_id=",
            (r(rng, HEX, 32), "~trace_id"),
        )
    return mk(
        "GF_SECURITY_ADMIN_USER=admin GF_SECURITY_ADMIN_PASSWORD=",
        (password(rng), "password"),
        " GF_INSTALL_PLUGINS=grafana-clock-panel",
    )


def f_chat(rng: R) -> Sample:
    k = rng.randrange(6)
    if k == 0:
        return mk(
            "discord.http DEBUG GET https://discord.com/api/v10/users/@me with {'Authorization': 'Bot ",
            (discord_token(rng), "discord_token"),
            "'} has returned 200",
        )
    if k == 1:
        return mk(
            "POST https://discord.com/api/webhooks/",
            snowflake(rng),
            "/",
            (mixed(rng, B64URL, 68), "discord_webhook"),
            " 204 message_id=",
            (snowflake(rng), "~snowflake"),
        )
    if k == 2:
        return mk(
            "TEAMS_WEBHOOK_URL=https://acme.webhook.office.com/webhookb2/",
            (f"{uuid4(rng)}@{uuid4(rng)}/IncomingWebhook/{hex32(rng)}/{uuid4(rng)}", "teams_webhook"),
        )
    if k == 3:
        return mk(
            "httpx INFO HTTP Request: POST https://api.telegram.org/bot",
            (telegram_token(rng), "telegram_token"),
            '/sendMessage "HTTP/1.1 200 OK" chat_id=',
            str(-rng.randrange(10**12, 10**13)),
        )
    if k == 4:
        return mk(
            "TELEGRAM_BOT_TOKEN=",
            (telegram_token(rng), "telegram_token"),
            "\nDISCORD_TOKEN=",
            (discord_token(rng), "discord_token"),
            "\nDISCORD_GUILD_ID=",
            (snowflake(rng), "~snowflake"),
        )
    return mk(
        '{"id":"',
        (snowflake(rng), "~snowflake"),
        '","channel_id":"',
        (snowflake(rng), "~snowflake"),
        '","author":{"id":"',
        (snowflake(rng), "~snowflake"),
        '","username":"deploybot"}}',
    )


def f_messaging(rng: R) -> Sample:
    k = rng.randrange(7)
    ac = twilio_sid(rng)
    if k == 0:
        return mk(
            "curl -X POST https://api.twilio.com/2010-04-01/Accounts/",
            (ac, "~twilio_sid"),
            '/Messages.json --data-urlencode "To=',
            (phone(rng), "phone"),
            '" --data-urlencode "Body=hi" -u ',
            (ac, "~twilio_sid"),
            ":",
            (hex32(rng), "twilio_token"),
        )
    if k == 1:
        return mk("TWILIO_ACCOUNT_SID=", (ac, "~twilio_sid"), "\nTWILIO_AUTH_TOKEN=", (hex32(rng), "twilio_token"))
    if k == 2:
        return mk(
            'twilio.http_client INFO -- {"sid": "',
            (twilio_sid(rng, "SM"), "~twilio_sid"),
            '", "account_sid": "',
            (ac, "~twilio_sid"),
            '", "to": "',
            (phone(rng), "phone"),
            '", "status": "queued"}',
        )
    if k == 3:
        return mk(
            "curl -s --user 'api:",
            (mailgun_key(rng), "mailgun_key"),
            "' https://api.mailgun.net/v3/mg.acme.example/messages -F to=",
            (email(rng), "email"),
        )
    if k == 4:
        return mk("MAILGUN_API_KEY=", (mailgun_key(rng), "mailgun_key"), " MAILGUN_DOMAIN=mg.acme.example")
    if k == 5:
        return mk(
            "POST https://api.postmarkapp.com/email X-Postmark-Server-Token: ",
            (uuid4(rng), "postmark_token"),
            " To=",
            (email(rng), "email"),
            " MessageID=",
            (uuid4(rng), "~uuid"),
        )
    return mk("POSTMARK_SERVER_TOKEN=", (uuid4(rng), "postmark_token"))


# ---------------------------------------------------------------- encodings


def f_encoded(rng: R) -> Sample:
    k = rng.randrange(12)
    e = email(rng)
    if k == 0:
        return mk('{"event":"signup","email":"', (e.replace("@", "\\u0040"), "email"), '","plan":"pro"}')
    if k == 1:
        return mk(
            '{"level":"debug","body":"{\\"config\\":\\"{\\\\\\"password\\\\\\":\\\\\\"',
            (password(rng, safe=True), "password"),
            '\\\\\\",\\\\\\"user\\\\\\":\\\\\\"',
            user(rng),
            '\\\\\\"}\\"}"}',
        )
    if k == 2:
        return mk(
            "POST /login body=username=",
            (quote(e, safe=""), "email"),
            "&password=",
            (quote(password(rng), safe=""), "password"),
            "&remember=1",
        )
    if k == 3:
        return mk(
            "Content-Transfer-Encoding: quoted-printable\n\nYour temporary password=3D",
            (password(rng, safe=True), "password"),
            "=0AReset it at https://id.acme.example/reset?token=3D",
            (mixed(rng, ALNUM, 40), "oauth_token"),
        )
    if k == 4:
        return mk(
            "<td>",
            (e.replace("@", "&#64;"), "email"),
            "</td><td>&quot;client_secret&quot;:&quot;",
            (client_secret(rng), "client_secret"),
            "&quot;</td>",
        )
    if k == 5:
        return mk(
            'response body: b\'{"access_token": "',
            (oauth_token(rng), "oauth_token"),
            '", "token_type": "Bearer", "expires_in": 3600}\'',
        )
    if k == 6:
        return mk(
            "send: b'POST /v1/token HTTP/1.1\\r\\nHost: id.acme.example\\r\\nAuthorization: Basic ",
            (basic_b64(rng), "registry_auth"),
            "\\r\\n\\r\\n'",
        )
    if k == 7:
        return mk('config: "password=\\"', (password(rng, safe=True), "password"), '\\" user=\\"', user(rng), '\\""')
    if k == 8:
        return mk(
            f'auth: &registry.AuthConfig{{Username:"{user(rng)}", Password:"',
            (password(rng, safe=True), "password"),
            '", Auth:"", ServerAddress:"https://index.docker.io/v1/", IdentityToken:"", RegistryToken:""}',
        )
    if k == 9:
        return mk(
            f"Credentials[username={user(rng)}, password=",
            (password(rng, safe=True), "password"),
            ", email=",
            (e, "email"),
            "]",
        )
    if k == 10:
        return mk(
            "ClientRegistration{registrationId='okta', clientId='",
            (okta_id(rng, "0oa"), "~client_id"),
            "', clientSecret='",
            (client_secret(rng), "client_secret"),
            "', clientAuthenticationMethod=client_secret_basic}",
        )
    return mk(
        '{"user":{"email":"',
        (e.replace("@", "\\u0040").replace(".", "\\u002e"), "email"),
        '","phone":"',
        (phone(rng), "phone"),
        '"}}',
    )


def f_pem(rng: R) -> Sample:
    k = rng.randrange(5)
    if k == 0:
        kind = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
        lines = pem_lines(rng, kind, rng.choice([121, 240, 600]))
        return mk(
            "deploy:\n  sshKey: |\n    ",
            ("\n    ".join(lines), "private_key"),
            "\n  knownHosts: github.com ",
            (ssh_pubkey(rng), "~ssh_public_key"),
        )
    if k == 1:
        lines = pem_lines(rng, "PRIVATE KEY", rng.choice([600, 900]))
        return mk('GITHUB_APP_PRIVATE_KEY="', ("\\n".join(lines), "private_key"), '\\n"')
    if k == 2:
        return mk("tls:\n  crt: |\n    ", ("\n    ".join(public_pem(rng, "CERTIFICATE")), "~public_cert"))
    if k == 3:
        return mk("jwt verification key:\n", ("\n".join(public_pem(rng, "PUBLIC KEY")), "~public_cert"))
    return mk(f"{user(rng)} authorized_keys: ", (ssh_pubkey(rng), "~ssh_public_key"), f" {user(rng)}@laptop")


# ---------------------------------------------------------------- PII in tooling logs


def f_sshd(rng: R) -> Sample:
    k = rng.randrange(4)
    ip, kind = (ipv4(rng), "ipv4") if rng.random() < 0.75 else (ipv6(rng), "ipv6")
    pid = f"Nov 29 12:{rng.randrange(60):02d}:{rng.randrange(60):02d} bastion sshd[{rng.randrange(1000, 99999)}]: "
    if k == 0:
        return mk(
            pid,
            f"Accepted publickey for {user(rng)} from ",
            (ip, kind),
            f" port {rng.randrange(1024, 65535)} ssh2: {rng.choice(['ED25519', 'RSA', 'ECDSA'])} ",
            (ssh_fp(rng), "~ssh_fingerprint"),
        )
    if k == 1:
        return mk(
            pid,
            f"Failed password for invalid user {rng.choice(['admin', 'oracle', 'test', 'ubuntu'])} from ",
            (ip, kind),
            f" port {rng.randrange(1024, 65535)} ssh2",
        )
    if k == 2:
        return mk(
            pid,
            "Connection closed by authenticating user git ",
            (ip, kind),
            f" port {rng.randrange(1024, 65535)} [preauth]",
        )
    return mk(pid, "pam_unix(sshd:session): session opened for user deploy(uid=1001) by (uid=0) rhost=", (ip, kind))


def f_payment(rng: R) -> Sample:
    k = rng.randrange(5)
    if k == 0:
        return mk(
            "stripe DEBUG Request body: card[number]=",
            (pan(rng, ""), "credit_card"),
            "&card[exp_month]=12&card[exp_year]=2029&card[cvc]=123",
        )
    if k == 1:
        return mk(
            "braintree.util.http DEBUG <credit-card><number>",
            (pan(rng, ""), "credit_card"),
            "</number><expiration-date>12/2029</expiration-date></credit-card>",
        )
    if k == 2:
        return mk(
            'adyen-java DEBUG {"paymentMethod":{"type":"scheme","number":"',
            (pan(rng), "credit_card"),
            '","holderName":"',
            " ".join(person(rng)),
            '"},"shopperEmail":"',
            (email(rng), "email"),
            '"}',
        )
    if k == 3:
        return mk(
            "card%5Bnumber%5D=",
            (pan(rng, ""), "credit_card"),
            "&card%5Bcvc%5D=314&billing_details%5Bemail%5D=",
            (quote(email(rng), safe=""), "email"),
        )
    return mk(
        "PaymentMethod[card=",
        (pan(rng, " -"), "credit_card"),
        ", brand=visa, last4=",
        str(rng.randrange(1000, 9999)),
        "]",
    )


def f_payout(rng: R) -> Sample:
    k = rng.randrange(4)
    first, last = person(rng)
    if k == 0:
        return mk(
            f"payout:\n  account_holder: {first} {last}\n  iban: ",
            (iban(rng), "iban"),
            "\n  bic: DEUTDEFF\n  schedule: weekly",
        )
    if k == 1:
        return mk("PAYOUT_IBAN=", (iban(rng), "iban"), " PAYOUT_CURRENCY=EUR")
    if k == 2:
        return mk(
            "stripe connect: external_account[object]=bank_account&external_account[account_number]=",
            (iban(rng).replace(" ", ""), "iban"),
            "&external_account[country]=DE",
        )
    return mk(
        f'wise recipient created: {{"accountHolderName":"{first} {last}","details":{{"IBAN":"',
        (iban(rng).replace(" ", ""), "iban"),
        '","email":"',
        (email(rng), "email"),
        '"}}',
    )


# ---------------------------------------------------------------- look-alikes only


def f_negative(rng: R) -> Sample:
    k = rng.randrange(12)
    if k == 0:
        return mk(
            'ETag: "',
            (git_sha(rng), "~etag"),
            '"\nETag: W/"',
            (f"{rng.randrange(16, 4096):x}-" + mixed(rng, B64URL, 27), "~etag"),
            '"',
        )
    if k == 1:
        return mk(
            "Content-Security-Policy: default-src 'self'; script-src 'nonce-",
            (nonce(rng), "~csp_nonce"),
            "' 'strict-dynamic'; style-src 'nonce-",
            (nonce(rng), "~csp_nonce"),
            "'",
        )
    if k == 2:
        return mk(
            "GET /oauth2/v1/authorize?client_id=",
            (okta_id(rng, "0oa"), "~client_id"),
            "&response_type=code&scope=openid&state=",
            (mixed(rng, B64URL, 32), "~oidc_state"),
            "&nonce=",
            (mixed(rng, B64URL, 32), "~oidc_nonce"),
        )
    if k == 3:
        return mk(
            "job_id=", (ulid(rng), "~ulid"), " event_id=", (ksuid(rng), "~ksuid"), " request_id=", (uuid4(rng), "~uuid")
        )
    if k == 4:
        return mk('<img src="', (data_uri(rng), "~data_uri"), '" width="16">')
    if k == 5:
        return mk(
            '{"user_id":"',
            (auth0_user_id(rng), "~auth0_user_id"),
            '","identities":[{"provider":"auth0","user_id":"',
            (r(rng, HEX, 24), "~auth0_user_id"),
            '"}],"logins_count":',
            str(rng.randrange(1, 500)),
            "}",
        )
    if k == 6:
        return mk(
            "added ",
            str(rng.randrange(1, 900)),
            " packages, audited ",
            str(rng.randrange(900, 2000)),
            " in 4s; ",
            (npm_spec(rng), "~npm_spec"),
            " ",
            (npm_spec(rng), "~npm_spec"),
        )
    if k == 7:
        return mk(
            "gpg: Signature made Sun Nov 29 12:01:02 2026 UTC\ngpg:                using RSA key ",
            (r(rng, HEX, 40).upper(), "~gpg_key_id"),
            '\ngpg: Good signature from "Release Bot" [ultimate]',
        )
    if k == 8:
        return mk("npmAuthToken: ", masked(rng), "  password: ", masked(rng), "  token=", tpl(rng))
    if k == 9:
        return mk(
            "Okta group ",
            (okta_id(rng, "00g"), "~okta_id"),
            " assigned to app ",
            (okta_id(rng, "0oa"), "~client_id"),
            " by ",
            (okta_id(rng), "~okta_id"),
        )
    if k == 10:
        return mk(
            "twilio: account ",
            (twilio_sid(rng), "~twilio_sid"),
            " message ",
            (twilio_sid(rng, "SM"), "~twilio_sid"),
            " status=delivered price=-0.0079",
        )
    return mk(
        "Release ",
        ("v" + semver(rng), "~semver"),
        " built from ",
        (git_sha(rng), "~git_sha"),
        " image ",
        ("sha256:" + sha256hex(rng), "~image_digest"),
        " resourceVersion=",
        (str(rng.randrange(10**5, 10**9)), "~resource_version"),
    )


FAMILIES = {
    "npm": f_npm, "yarn": f_yarn, "python": f_python, "jvm": f_jvm, "dotnet": f_dotnet, "cargo_composer": f_cargo_composer,
    "docker": f_docker, "git": f_git, "htpasswd": f_htpasswd, "goproxy": f_goproxy, "jfrog_nexus": f_jfrog_nexus,
    "helm_tf": f_helm_tf, "okta": f_okta, "auth0": f_auth0, "keycloak": f_keycloak, "azure": f_azure, "cognito": f_cognito,
    "scim": f_scim, "splunk": f_splunk, "o11y": f_o11y, "chat": f_chat, "messaging": f_messaging, "encoded": f_encoded,
    "pem": f_pem, "sshd": f_sshd, "payment": f_payment, "payout": f_payout, "negative": f_negative,
}  # fmt: skip
WEIGHTS = {
    "encoded": 4,
    "negative": 3,
    "okta": 2,
    "git": 2,
    "npm": 2,
    "messaging": 2,
    "o11y": 2,
    "chat": 2,
    "python": 2,
    "docker": 2,
    "cargo_composer": 2,
    "yarn": 2,
}


def generate(seed: int = 1010, lines: int = 3000) -> list[Sample]:
    """`lines` labelled samples (one log record each; some span several physical lines) from the formats above."""
    return weighted_families(FAMILIES, WEIGHTS, seed, lines)


__all__ = ["FAMILIES", "generate"]
