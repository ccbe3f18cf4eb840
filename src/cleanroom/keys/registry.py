"""The tenant registry: tenants, their credentials (as keyed hashes) and their wrapped keys, on disk.

One JSON document, `DATA_DIR/tenants.json` (0600, atomic replace, inter-process lock). It never holds a
usable secret: API keys appear only as HMACs, tenant keys only wrapped by the KMS, HPKE private keys only
encrypted under the tenant key. The server re-reads it when it changes on disk, so CLI commands run
against a stopped server's data dir take effect when it starts.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cleanroom.errors import BadRequest, Conflict, RegistryUnreadable, UnknownTenant
from cleanroom.storage import atomic_write_json, change_stamp, file_lock, read_json

TENANT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
Document = dict[str, Any]


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


class Registry:
    """Thread-safe access to `tenants.json`; every change is one locked read-modify-write."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "tenants.json"
        self._lock_path = Path(data_dir) / ".tenants.lock"
        self._mutex = threading.RLock()
        self._doc: Document = {"version": 1, "tenants": {}}
        self._stamp: tuple[int, ...] | None = None
        self.generation = 0  # bumps on every reload, so caches keyed on it can tell
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> bool:
        """Reload if the file changed on disk; True when it did."""
        with self._mutex:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                if self._stamp is None and not force:
                    return False
                self._doc, self._stamp = {"version": 1, "tenants": {}}, None
                self.generation += 1
                return True
            # Size and ctime too: an atomic replace may reuse a freed inode within one coarse mtime tick,
            # and a missed reload is a missed revocation.
            stamp = change_stamp(st)
            if not force and stamp == self._stamp:
                return False
            self._doc, self._stamp = self._read(), stamp
            self.generation += 1
            return True

    def _read(self) -> Document:
        """The document on disk, or RegistryUnreadable (503). The last good one is not kept serving: the
        broken file may be the one that revoked a credential. The stamp is not advanced, so the next
        request reads again and service resumes as soon as the file is fixed."""
        try:
            doc = read_json(self.path)
        except (ValueError, UnicodeDecodeError):
            raise RegistryUnreadable(
                f"{self.path} is not valid JSON (corrupt or truncated?): requests are refused until it is fixed"
            ) from None
        except OSError as exc:
            raise RegistryUnreadable(f"{self.path} cannot be read: {exc.strerror}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("tenants"), dict):
            raise RegistryUnreadable(f"{self.path} may be corrupt: expected a JSON object with a `tenants` object")
        return doc

    def snapshot(self) -> Document:
        with self._mutex:
            self.refresh()
            return self._doc

    def update(self, change: Callable[[Document], Any]) -> Any:
        """Apply `change` to a fresh copy of the document under the file lock and persist it."""
        with self._mutex, file_lock(self._lock_path):
            self.refresh(force=True)
            result = change(self._doc)
            atomic_write_json(self.path, self._doc)
            st = os.stat(self.path)
            self._stamp = change_stamp(st)
            self.generation += 1
            return result

    # --- lookups ----------------------------------------------------------------------------------
    def tenants(self) -> dict[str, Document]:
        return dict(self.snapshot()["tenants"])

    def tenant(self, name_or_id: str) -> Document:
        tenants = self.snapshot()["tenants"]
        if name_or_id in tenants:
            return tenants[name_or_id]  # type: ignore[no-any-return]
        for record in tenants.values():
            if record["name"] == name_or_id:
                return record  # type: ignore[no-any-return]
        raise UnknownTenant(f"no tenant named or with id {name_or_id!r}")

    def credential_index(self) -> dict[str, tuple[str, str]]:
        """keyed hash -> (tenant id, credential id), for every credential."""
        index: dict[str, tuple[str, str]] = {}
        for tenant_id, record in self.snapshot()["tenants"].items():
            for cred in record.get("credentials", []):
                index[cred["hash"]] = (tenant_id, cred["id"])
        return index

    def meta(self, key: str) -> Any:
        return self.snapshot().get(key)


def validate_tenant_name(name: str) -> str:
    """A whole-string match: with `re.match`, "$" also matched before a trailing newline and let "alpha\\n"
    through (a second tenant beside "alpha" that looks the same in every listing and log line)."""
    if not TENANT_NAME_RE.fullmatch(name):
        raise BadRequest(
            "tenant names are 1-63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit",
            code="invalid_tenant_name",
        )
    return name


def ensure_unique_name(doc: Document, name: str) -> None:
    if any(t["name"] == name for t in doc["tenants"].values()):
        raise Conflict(f"a tenant named {name!r} already exists", code="tenant_exists")


def now() -> float:
    return time.time()
