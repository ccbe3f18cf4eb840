"""Transit's text encodings: `vault:vN:<base64>` ciphertexts, base64 keys, key names, the context prefix.

One job: convert between Transit's JSON strings and our bytes, refusing anything malformed instead of
guessing. It is separate from the HTTP transport and from the KMS logic because it is pure (no hvac, no
server), so every parser here can be tested byte for byte without OpenBao.
"""

from __future__ import annotations

import base64
import binascii
import re

from cleanroom.errors import KeyError_, KMSUnavailable

# Both context modes (derived key, associated_data) send this prefix, so the context is never empty
# (Transit refuses an empty context for a derived key).
CONTEXT_PREFIX = b"cleanroom/v1\x00"
_CIPHERTEXT_RE = re.compile(r"^vault:v([1-9][0-9]{0,9}):([A-Za-z0-9+/]+={0,2})$")
KEY_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,126}[A-Za-z0-9])?$")


def b64(data: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(data).decode("ascii")


def zero(buf: bytearray) -> None:
    buf[:] = bytes(len(buf))


def check_key_name(key_name: str) -> str:
    if not KEY_NAME_RE.match(key_name):
        raise KeyError_(f"invalid Transit key name {key_name!r}", code="invalid_key_name")
    return key_name


def decode_into_bytearray(text: str) -> bytearray:
    """Base64 text from Transit -> a bytearray the caller can zero."""
    try:
        return bytearray(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise KMSUnavailable("Transit returned malformed base64", retry_after_s=5) from exc


def parse_transit_ciphertext(text: str) -> tuple[int, bytes]:
    """`vault:vN:<base64>` -> (N, raw bytes); anything else is an error, never a guess."""
    match = _CIPHERTEXT_RE.match(text)
    if match is None:
        raise KMSUnavailable("Transit returned a ciphertext without a vault:vN: prefix", retry_after_s=5)
    return int(match.group(1)), base64.b64decode(match.group(2), validate=True)
