"""TLS for every listener: TLS 1.3 only, ECDHE groups only, optional client certificates, reload on SIGHUP,
and a P-384 self-signed certificate for `--dev-tls`.

Sealing already protects payloads end to end (a TLS-terminating proxy sees only ciphertext), but API keys
and metadata ride in headers, so the transport is TLS 1.3 with no fallback. TLS 1.3 has no static-RSA or
static-DH key exchange, but OpenSSL 3 also offers finite-field DHE groups (ffdhe2048…) by default; we limit
the groups to elliptic-curve ones (`DEFAULT_GROUPS`), see `restrict_key_exchange_groups` for how.

A certificate is checked before it is loaded, at start-up and on every SIGHUP reload: a private key file
others or its group can read is logged (one anybody can write is refused), and a certificate that has
expired or is not yet valid is refused — every client would refuse it, so it is a start-up error rather
than an outage of handshakes.
"""

from __future__ import annotations

import ctypes
import datetime
import ipaddress
import logging
import os
import signal
import ssl
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cleanroom.errors import ConfigurationError
from cleanroom.storage import atomic_write_bytes, ensure_private_dir

log = logging.getLogger("cleanroom.server")

ClientCertMode = Literal["none", "optional", "required"]

# Elliptic-curve groups only, in server preference order: X25519 first (every TLS 1.3 client offers it, so
# no HelloRetryRequest), then the NIST curves FIPS-mode clients need.
DEFAULT_GROUPS = ("X25519", "P-384", "P-256")
ECDHE_GROUPS = frozenset({"X25519", "X448", "P-256", "P-384", "P-521", "prime256v1", "secp384r1", "secp521r1"})
_SINGLE_GROUP_NAMES = {"P-256": "prime256v1", "P-384": "secp384r1", "P-521": "secp521r1"}
_SSL_CTRL_SET_GROUPS_LIST = 92  # OpenSSL 1.1.1 and 3.x ssl.h: SSL_CTX_set1_groups_list is this ctrl


def validate_groups(groups: Sequence[str]) -> tuple[str, ...]:
    """Refuse anything but ECDHE groups, so a setting cannot bring finite-field DHE back."""
    cleaned = tuple(g.strip() for g in groups if g.strip())
    if not cleaned:
        raise ConfigurationError("tls_groups must name at least one ECDHE group")
    unknown = [g for g in cleaned if g not in ECDHE_GROUPS]
    if unknown:
        raise ConfigurationError(f"tls_groups: {', '.join(unknown)} not allowed; use {', '.join(sorted(ECDHE_GROUPS))}")
    return cleaned


def _libssl_of_this_process() -> ctypes.CDLL | None:
    """The libssl that Python's `_ssl` module is linked against (already mapped into this process)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libssl" in line and line.rstrip().endswith((".so", ".3"))}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            return ctypes.CDLL(path)  # dlopen of a loaded library returns the same handle
        except OSError:
            continue
    return None


def _ssl_ctx_pointer(context: ssl.SSLContext, libssl: ctypes.CDLL) -> int | None:
    """The `SSL_CTX *` behind an `ssl.SSLContext`, or None unless it provably is one.

    CPython's PySSLContext starts with `SSL_CTX *ctx` right after the object header (3.8 through 3.13). We
    read it, then prove it is ours: libssl's own `SSL_CTX_get_options` on that pointer must return exactly
    what `context.options` says, before and after we flip an option through Python. Anything else (another
    Python, a statically linked OpenSSL) fails the proof and we fall back.
    """
    pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not pointer:
        return None
    get_options = libssl.SSL_CTX_get_options
    get_options.restype, get_options.argtypes = ctypes.c_uint64, [ctypes.c_void_p]
    if get_options(pointer) != int(context.options):
        return None
    probe = ssl.OP_NO_RENEGOTIATION  # meaningless under TLS 1.3, so safe to toggle
    before = context.options
    context.options ^= probe
    try:
        matches = get_options(pointer) == int(context.options)
    finally:
        context.options = before | probe
    return pointer if matches and get_options(pointer) == int(context.options) else None


def restrict_key_exchange_groups(context: ssl.SSLContext, groups: Sequence[str] = DEFAULT_GROUPS) -> str:
    """Offer only `groups` (ECDHE) for the TLS 1.3 key exchange; returns how it was done, for the start-up log.

    Python 3.11 exposes only `set_ecdh_curve` (one group). To keep several groups we call OpenSSL's
    `SSL_CTX_set1_groups_list` on this context's `SSL_CTX` (found and proven by `_ssl_ctx_pointer`); when
    that is not possible we fall back to the first group alone, which still excludes finite-field DHE.
    """
    groups = validate_groups(groups)
    setter = getattr(context, "set_groups", None)  # newer Pythons
    if setter is not None:
        setter(":".join(groups))
        return "groups " + ":".join(groups)
    libssl = _libssl_of_this_process()
    pointer = _ssl_ctx_pointer(context, libssl) if libssl is not None else None
    if libssl is not None and pointer is not None:
        ctrl = libssl.SSL_CTX_ctrl
        ctrl.restype, ctrl.argtypes = ctypes.c_long, [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
        if ctrl(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, ":".join(groups).encode("ascii")) == 1:
            return "groups " + ":".join(groups)
    first = groups[0]
    context.set_ecdh_curve(_SINGLE_GROUP_NAMES.get(first, first))
    log.warning("cleanroom: this Python cannot set several TLS groups; offering %s only", first)
    return f"group {first} only (fallback)"


def server_tls_context(
    cert_file: Path,
    key_file: Path,
    *,
    client_ca: Path | None = None,
    client_cert: ClientCertMode = "none",
    groups: Sequence[str] = DEFAULT_GROUPS,
) -> ssl.SSLContext:
    """The one SSLContext a listener uses: TLS 1.3 only, ECDHE only, no resumption, optional mTLS."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    # No compression (CRIME), no tickets and no resumption: every connection runs a fresh ECDHE exchange, so
    # a later key compromise of ticket keys cannot open recorded sessions. Costs one full handshake per
    # connection, which keep-alive amortises.
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_TICKET
    context.num_tickets = 0
    # ALPN says "http/1.1" to a client that offers h2 too (httpx/curl/Go with HTTP/2 on), instead of nothing;
    # a client that offers only h2 gets no ALPN answer (OpenSSL's no-overlap NOACK) and may fall back.
    context.set_alpn_protocols(["http/1.1"])
    restrict_key_exchange_groups(context, groups)
    load_certificate(context, cert_file, key_file)
    if client_cert != "none":
        if client_ca is None:
            raise ConfigurationError("client certificates need --client-ca (the CA that signs them)")
        try:
            context.load_verify_locations(cafile=str(client_ca))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"cannot load the client CA {client_ca}: {exc}") from exc
        context.verify_mode = ssl.CERT_REQUIRED if client_cert == "required" else ssl.CERT_OPTIONAL
        context.verify_flags |= ssl.VERIFY_X509_STRICT
    elif client_ca is not None:
        raise ConfigurationError("--client-ca given without --client-cert-required or --client-cert-optional")
    return context


def check_private_key_mode(key_file: Path) -> None:
    """Warn when a TLS private key file is readable by others or its group; refuse one anybody may write
    (anybody could swap in a key of their own). A readable key is not refused: Kubernetes secret volumes and
    many provisioning tools write 0644 by default, and a server that will not start over it is an outage,
    not a fix; the start-up line says what to do. A missing file is left to `load_cert_chain` to report."""
    try:
        mode = os.stat(key_file).st_mode
    except OSError:
        return
    if mode & 0o002:
        raise ConfigurationError(
            f"TLS private key {key_file} has mode {mode & 0o777:04o}: anybody can replace it; chmod 600 it "
            "and treat the key as compromised"
        )
    if mode & 0o044:
        who = "everybody on this host" if mode & 0o004 else "its group"
        log.warning(
            "cleanroom: TLS private key %s has mode %04o: %s can read it; chmod 600 it "
            "(Kubernetes: mount the secret with defaultMode 0400)",
            key_file,
            mode & 0o777,
            who,
        )


def check_certificate_dates(cert_file: Path, now: datetime.datetime | None = None) -> None:
    """Refuse a leaf certificate that has expired or is not valid yet (what every client would refuse)."""
    try:
        leaf = x509.load_pem_x509_certificates(Path(cert_file).read_bytes())[0]
    except (OSError, ValueError, IndexError):
        return  # unreadable or not PEM: load_cert_chain says why
    now = now or datetime.datetime.now(datetime.UTC)
    if leaf.not_valid_after_utc <= now:
        raise ConfigurationError(
            f"TLS certificate {cert_file} expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; install a new one"
        )
    if leaf.not_valid_before_utc > now:
        raise ConfigurationError(
            f"TLS certificate {cert_file} is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC "
            "(check this host's clock, or wait)"
        )


def load_certificate(context: ssl.SSLContext, cert_file: Path, key_file: Path) -> None:
    check_private_key_mode(key_file)
    check_certificate_dates(cert_file)

    def no_password() -> bytes:
        # Without a callback OpenSSL prompts on the terminal: start-up, or a SIGHUP reload on the event
        # loop, would hang waiting for someone to type.
        raise ConfigurationError(
            f"TLS private key {key_file} is encrypted; cleanroom does not prompt for key passwords "
            "(store it unencrypted, 0600: `openssl pkey -in KEY -out KEY.plain`)"
        )

    try:
        context.load_cert_chain(str(cert_file), str(key_file), password=no_password)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load TLS certificate {cert_file} / key {key_file}: {exc}") from exc


class CertificateReloader:
    """Reload the certificate chain and key into the live SSLContext (on SIGHUP).

    OpenSSL copies the context's certificate into each connection when the connection is created, so
    loading a new chain into the same context changes only handshakes that start afterwards: open
    connections keep theirs and are not dropped. The pair is first loaded into a scratch context, so a
    half-written or mismatched pair is refused and the live context keeps serving the old certificate.
    Replace the files atomically (write elsewhere, then rename) so the two loads read the same bytes.
    """

    def __init__(self, context: ssl.SSLContext, cert_file: Path, key_file: Path) -> None:
        self.context, self.cert_file, self.key_file = context, Path(cert_file), Path(key_file)
        self._lock = threading.Lock()
        self.reloads = 0

    def reload(self) -> bool:
        with self._lock:
            scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                load_certificate(scratch, self.cert_file, self.key_file)
                load_certificate(self.context, self.cert_file, self.key_file)
            except (OSError, ssl.SSLError, ConfigurationError) as exc:
                log.error("cleanroom: certificate reload refused, still serving the previous one: %s", exc)
                return False
            self.reloads += 1
            log.info("cleanroom: certificate reloaded from %s", self.cert_file)
            return True

    def install_sighup(self) -> None:
        """Reload on SIGHUP (whose default action would otherwise terminate the server)."""
        signal.signal(signal.SIGHUP, lambda _sig, _frame: self.reload())


def dev_certificate(data_dir: Path, hosts: list[str]) -> tuple[Path, Path]:
    """A P-384 self-signed certificate for local use, created in DATA_DIR/tls/ and again once it has expired
    (or expires within a day): an old data dir must not keep serving a dead certificate."""
    tls_dir = ensure_private_dir(Path(data_dir) / "tls")
    cert_path, key_path = tls_dir / "dev-cert.pem", tls_dir / "dev-key.pem"
    if cert_path.exists() and key_path.exists():
        try:
            check_certificate_dates(cert_path, datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1))
            return cert_path, key_path
        except ConfigurationError:
            log.warning("cleanroom: the dev certificate in %s expires within a day; made a new one", tls_dir)
    key = ec.generate_private_key(ec.SECP384R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for host in {*hosts, "127.0.0.1", "::1"}:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            if host and host != "localhost":
                names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cleanroom dev server")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA384())
    )
    atomic_write_bytes(
        key_path,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    atomic_write_bytes(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return cert_path, key_path
