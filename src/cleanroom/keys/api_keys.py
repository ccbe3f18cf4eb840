"""API keys: a recognisable, checksummed format, stored only as a keyed hash.

Format: `cr_` + 30 base62 random characters (~178 bits) + 6 base62 characters of CRC32 over the random
part. The prefix lets secret scanners (and our own log redactor) find leaked keys; the checksum lets the
server reject typos and random strings without a lookup. The server stores HMAC-SHA256(pepper, key): a
stolen registry file does not yield usable keys, and the pepper itself is wrapped by the KMS.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib

PREFIX = "cr_"
RANDOM_CHARS = 30
CHECKSUM_CHARS = 6
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
API_KEY_RE = re.compile(r"^cr_[0-9A-Za-z]{36}$")


def _base62(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, rem = divmod(value, 62)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode("ascii")), CHECKSUM_CHARS)


def generate_api_key() -> str:
    random_part = "".join(secrets.choice(_ALPHABET) for _ in range(RANDOM_CHARS))
    return PREFIX + random_part + checksum(random_part)


def is_well_formed(api_key: str) -> bool:
    """Shape and checksum only; says nothing about whether the key is known or revoked."""
    if not API_KEY_RE.match(api_key):
        return False
    body = api_key[len(PREFIX) :]
    return hmac.compare_digest(checksum(body[:RANDOM_CHARS]), body[RANDOM_CHARS:])


def keyed_hash(pepper: bytes | bytearray, api_key: str) -> str:
    return hmac.new(bytes(pepper), api_key.encode("ascii"), hashlib.sha256).hexdigest()
