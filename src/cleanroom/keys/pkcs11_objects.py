"""The token objects behind a PKCS#11 master key: its version keys, its policy record, and their attributes.

One job: find, create and update the objects that make up a master key inside the token, and make the
token enforce its policy. Each master version is its own token object labelled `<prefix><name>.v<N>`
(AES-256, token, private, sensitive, never extractable, only CKA_WRAP/CKA_UNWRAP). A data object
`<prefix><name>.meta` (JSON: min_decryption_version, enabled, times, seq) records the policy, and the
keys' own attributes enforce it: CKA_WRAP only on the newest version of an enabled key, CKA_UNWRAP only
on versions >= the minimum of an enabled key, so a `disable` holds for every process using the token.

It is separate from `pkcs11.py` (wrap/unwrap and the KMS protocol) because object naming, lookup and the
two-step meta update are the token's storage layer; the cryptographic calls only need "the master object
for version N" and "why was it refused".
"""

from __future__ import annotations

import json
import re
from typing import Any

from cleanroom.errors import CleanroomError, ConfigurationError, KeyError_, SystemSealed

KEY_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9])?$")
_VERSION_RE = re.compile(r"\.v([1-9][0-9]{0,8})$")


def check_key_name(key_name: str) -> str:
    if not KEY_NAME_RE.match(key_name):
        raise KeyError_(f"invalid PKCS#11 key name {key_name!r}", code="invalid_key_name")
    return key_name


def unknown_key(key_name: str) -> KeyError_:
    return KeyError_(f"master key {key_name!r} does not exist in the PKCS#11 token", code="unknown_key")


class MasterKeyObjects:
    """The objects of every master key under one label prefix; each method works in the caller's session.

    `p11` is the `pkcs11` module (passed in so that this module does not import the optional extra).
    """

    def __init__(self, p11: Any, prefix: str) -> None:
        self._p11, self._prefix = p11, prefix

    def label(self, key_name: str, version: int) -> str:
        return f"{self._prefix}{key_name}.v{version}"

    def versions(self, session: Any, key_name: str) -> dict[int, Any]:
        """Every master version object of `key_name`, by version number."""
        A, OC = self._p11.Attribute, self._p11.ObjectClass
        stem = f"{self._prefix}{key_name}.v"
        found: dict[int, Any] = {}
        for obj in session.get_objects({A.CLASS: OC.SECRET_KEY, A.TOKEN: True}):
            label = str(obj[A.LABEL])
            match = _VERSION_RE.search(label)
            if label.startswith(stem) and match and label == stem + match.group(1):
                found[int(match.group(1))] = obj
        return found

    def version_obj(self, session: Any, key_name: str, version: int) -> Any | None:
        """One version by its exact label (the unwrap path: no listing of the token)."""
        A, OC = self._p11.Attribute, self._p11.ObjectClass
        found = list(
            session.get_objects({A.CLASS: OC.SECRET_KEY, A.TOKEN: True, A.LABEL: self.label(key_name, version)})
        )
        if len(found) > 1:
            raise ConfigurationError(f"several token objects are labelled {self.label(key_name, version)!r}")
        return found[0] if found else None

    def meta_objects(self, session: Any, key_name: str) -> list[Any]:
        A, OC = self._p11.Attribute, self._p11.ObjectClass
        label = f"{self._prefix}{key_name}.meta"
        return list(session.get_objects({A.CLASS: OC.DATA, A.LABEL: label}))

    def read_meta(self, session: Any, key_name: str) -> dict[str, Any]:
        metas: list[dict[str, Any]] = []
        for obj in self.meta_objects(session, key_name):
            try:
                metas.append(json.loads(bytes(obj[self._p11.Attribute.VALUE])))
            except ValueError:
                continue
        if not metas:
            raise unknown_key(key_name)
        # A crash between writing a new record and destroying the old leaves two: the higher seq wins.
        newest: dict[str, Any] = max(metas, key=_meta_seq)
        return dict(newest)

    def write_meta(self, session: Any, key_name: str, meta: dict[str, Any]) -> None:
        """Create the new record first, then destroy the old ones (CKA_VALUE of a data object is read-only)."""
        A, OC = self._p11.Attribute, self._p11.ObjectClass
        old = self.meta_objects(session, key_name)
        meta = dict(meta, seq=int(meta.get("seq", 0)) + 1)
        session.create_object(
            {
                A.CLASS: OC.DATA,
                A.TOKEN: True,
                A.PRIVATE: True,
                A.APPLICATION: "cleanroom",
                A.LABEL: f"{self._prefix}{key_name}.meta",
                A.VALUE: json.dumps(meta, sort_keys=True).encode(),
            }
        )
        for obj in old:
            obj.destroy()

    def apply_policy(self, session: Any, key_name: str, meta: dict[str, Any]) -> dict[int, Any]:
        """Make the token enforce `meta`: WRAP on the newest enabled version, UNWRAP on versions >= min."""
        A = self._p11.Attribute
        versions = self.versions(session, key_name)
        latest = max(versions)
        enabled, minimum = bool(meta["enabled"]), int(meta["min_decryption_version"])
        for version, obj in versions.items():
            want_wrap, want_unwrap = enabled and version == latest, enabled and version >= minimum
            if bool(obj[A.WRAP]) != want_wrap:
                obj[A.WRAP] = want_wrap
            if bool(obj[A.UNWRAP]) != want_unwrap:
                obj[A.UNWRAP] = want_unwrap
        return versions

    def generate_master(self, session: Any, key_name: str, version: int) -> None:
        A, KT = self._p11.Attribute, self._p11.KeyType
        session.generate_key(
            KT.AES,
            256,
            label=self.label(key_name, version),
            id=f"{key_name}.v{version}".encode(),
            store=True,
            template={
                A.TOKEN: True,
                A.PRIVATE: True,
                A.SENSITIVE: True,
                A.EXTRACTABLE: False,
                A.MODIFIABLE: True,
                A.WRAP: True,
                A.UNWRAP: True,
                A.ENCRYPT: False,
                A.DECRYPT: False,
                A.SIGN: False,
                A.VERIFY: False,
                A.DERIVE: False,
            },
        )

    def refused(self, session: Any, key_name: str, version: int | None) -> CleanroomError:
        """Why the token refused a master key: sealed, a retired version, or an attribute set by hand."""
        meta = self.read_meta(session, key_name)
        if not meta["enabled"]:
            return SystemSealed(
                f"master key {key_name!r} is disabled; run `cleanroom keys restore --system`", retry_after_s=60
            )
        if version is not None and version < int(meta["min_decryption_version"]):
            return KeyError_("master key version is below the minimum decryption version", code="key_version_retired")
        return KeyError_(f"the token refuses this use of master key {key_name!r} (CKA_WRAP/CKA_UNWRAP false)")


def _meta_seq(meta: dict[str, Any]) -> int:
    return int(meta.get("seq", 0))
