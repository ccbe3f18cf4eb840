"""`AuditEvent`: the fields of one audited fact, their validation, and their one canonical JSON encoding.

One job: decide what an audit event may contain and write it as exactly one byte string. Callers hand an
`AuditEvent` to `AuditLog.append`: who decrypted what, when, from where. It is validated at construction
(so a bad event fails in the caller, not in the writer thread) and serialized as compact UTF-8 JSON,
which `records.RecordCipher` then seals into a frame.

It is separate from `records.py` (the frame and segment byte layout, and the cipher) because the two
change for different reasons: a new field or a validation rule touches only this file, a format or key
change only that one. Both run on every record written and verified, so both are written for speed.

One encoding per event: `from_json_bytes` re-encodes and compares, so duplicate keys, reordered fields or
other spellings (which JSON parsers resolve differently) cannot make one record read two ways.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DetailValue = str | int | float | bool

MAX_PLAINTEXT_BYTES = 64 * 1024  # an event's encoded size cap; records.MAX_BODY_LEN is built on it

_EVENT_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_*]+)+$")
_MAX_FIELD_CHARS = 512
_MAX_DETAILS = 64
_STR_FIELDS = ("tenant_id", "key_id", "purpose", "request_id", "principal", "source")
_INT_FIELDS = ("key_version", "byte_count")
_AS_GIVEN_FIELDS = frozenset(("event", "time", *_INT_FIELDS))  # from_fields passes these on unconverted
_OPTIONAL_FIELDS_IN_ORDER = (*_STR_FIELDS[:2], "key_version", *_STR_FIELDS[2:], "byte_count")
_STR_FIELD_SET = frozenset(_STR_FIELDS)
_INT_FIELD_SET = frozenset(_INT_FIELDS)
_VALID_EVENT_NAMES: set[str] = set()  # names that matched _EVENT_RE (a handful in practice)
_MAX_REMEMBERED_NAMES = 1024
_NUMBER = (int, float)
_SCALAR = (str, int, float, bool)
# `from_fields` fills every field itself: all of them, at their defaults (time and details set per call).
_UNSET_FIELDS: dict[str, Any] = dict.fromkeys(
    ("event", "time", *_OPTIONAL_FIELDS_IN_ORDER, "details"),
)
# (name, its JSON key with the separators around it, whether it is an int) in `to_dict` order.
_OPTIONAL_JSON_KEYS = tuple((name, f',"{name}":', name in _INT_FIELD_SET) for name in _OPTIONAL_FIELDS_IN_ORDER)
_json_string = json.encoder.encode_basestring  # C: escapes '"', '\\' and control characters, keeps UTF-8
_int_text = int.__repr__
_float_text = float.__repr__
_INFINITY = float("inf")


def _json_number(value: int | float) -> str:
    """What `json` writes for a number (allow_nan: NaN, Infinity)."""
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value == _INFINITY:
            return "Infinity"
        if value == -_INFINITY:
            return "-Infinity"
        return _float_text(value)
    return _int_text(value)


def _event_json(event: AuditEvent) -> str:
    """`json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode(event.to_dict())` byte for byte
    (tests/test_audit_encoding.py holds that encoder as the reference), written directly: 1.9 us instead
    of 3.7 per record (no dict, no encoder set-up per call). Only for validated events: strings, non-bool
    ints, scalar details."""
    fields = event.__dict__
    parts = ['{"event":', _json_string(event.event), ',"time":', _json_number(event.time)]
    add = parts.append
    for name, key, is_int in _OPTIONAL_JSON_KEYS:
        value = fields[name]
        if value is not None:
            add(key)
            add(_int_text(value) if is_int else _json_string(value))
    details = event.details
    if details:
        separator = ',"details":{'
        for key, value in details.items():
            add(separator)
            add(_json_string(key))
            add(":")
            if isinstance(value, str):
                add(_json_string(value))
            elif value is True:
                add("true")
            elif value is False:
                add("false")
            else:
                add(_json_number(value))
            separator = ","
        add("}")
    add("}")
    return "".join(parts)


@dataclass(frozen=True)
class AuditEvent:
    """One audited fact. `principal` is an API key *id*, never the key; `details` holds scalars only.

    Validation happens at construction so a bad event fails in the caller, not in the writer thread.
    """

    event: str
    time: float = field(default_factory=time.time)
    tenant_id: str | None = None
    key_id: str | None = None
    key_version: int | None = None
    purpose: str | None = None
    request_id: str | None = None
    principal: str | None = None
    source: str | None = None
    byte_count: int | None = None
    details: Mapping[str, DetailValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Runs for every record written and verified (~2 us): locals, tuples for isinstance, and event
        # names remembered once they have matched the pattern.
        event = self.event
        if type(event) is not str or event not in _VALID_EVENT_NAMES:
            if not isinstance(event, str) or len(event) > 64 or not _EVENT_RE.match(event):
                raise ValueError(f"audit event name must look like 'area.action', got {event!r:.80}")
            if type(event) is str and len(_VALID_EVENT_NAMES) < _MAX_REMEMBERED_NAMES:
                _VALID_EVENT_NAMES.add(event)
        if isinstance(self.time, bool) or not isinstance(self.time, _NUMBER):
            raise ValueError("audit event time must be seconds since the epoch")
        fields = self.__dict__
        for name in _STR_FIELDS:
            value = fields[name]
            if value is not None and (not isinstance(value, str) or len(value) > _MAX_FIELD_CHARS):
                raise ValueError(f"audit field {name} must be a string of at most {_MAX_FIELD_CHARS} chars")
        for name in _INT_FIELDS:
            value = fields[name]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"audit field {name} must be a non-negative int")
        # Freeze a private copy so a caller mutating its dict later cannot change a queued event.
        details = dict(self.details)
        if len(details) > _MAX_DETAILS:
            raise ValueError(f"audit details hold at most {_MAX_DETAILS} entries")
        for key, value in details.items():
            if not isinstance(key, str) or len(key) > 64:
                raise ValueError("audit detail keys must be short strings")
            if not isinstance(value, _SCALAR):
                raise ValueError(f"audit detail {key!r} must be str, int, float or bool")
            if isinstance(value, str) and len(value) > _MAX_FIELD_CHARS:
                raise ValueError(f"audit detail {key!r} is longer than {_MAX_FIELD_CHARS} chars")
        object.__setattr__(self, "details", details)

    def to_dict(self) -> dict[str, Any]:
        """Fields that are set, `time` as float seconds: the form sealed into a record."""
        fields = self.__dict__
        out: dict[str, Any] = {"event": self.event, "time": self.time}
        for name in _OPTIONAL_FIELDS_IN_ORDER:
            value = fields[name]
            if value is not None:
                out[name] = value
        if self.details:
            out["details"] = dict(self.details)
        return out

    def to_json_bytes(self) -> bytes:
        data = _event_json(self).encode("utf-8")
        if len(data) > MAX_PLAINTEXT_BYTES:
            raise ValueError(f"audit event encodes to {len(data)} bytes; limit {MAX_PLAINTEXT_BYTES}")
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEvent:
        allowed = {"event", "time", "key_version", "byte_count", "details", *_STR_FIELDS}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown audit fields: {sorted(unknown)}")
        details = data.get("details", {})
        if not isinstance(details, dict):
            raise ValueError("audit details must be an object")
        kwargs = {k: v for k, v in data.items() if k != "details"}
        return cls(**kwargs, details=details)

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> AuditEvent:
        """Lenient constructor for `record(mapping)` callers: known fields by name, every other scalar
        into `details` (other values as their `str`, cut to the field limit), None dropped.

        Once per request on the serve path: it fills the instance's fields itself instead of going through
        the frozen dataclass `__init__` (one `object.__setattr__` per field, 1.3 us), then validates with
        the same `__post_init__` as every other construction."""
        values = _UNSET_FIELDS.copy()
        details: dict[str, DetailValue] = dict(fields.get("details") or {})
        for key, value in fields.items():
            if value is None or key == "details":
                continue
            if key in _STR_FIELD_SET:
                values[key] = value if type(value) is str else str(value)
            elif key in _AS_GIVEN_FIELDS:
                values[key] = value
            elif isinstance(value, str):
                details[str(key)[:64]] = value[:_MAX_FIELD_CHARS]
            elif isinstance(value, _SCALAR):
                details[str(key)[:64]] = value
            else:
                details[str(key)[:64]] = str(value)[:_MAX_FIELD_CHARS]
        if values["event"] is None:
            raise TypeError("an audit event needs an 'event' name")
        if values["time"] is None:
            values["time"] = time.time()
        values["details"] = details
        event = object.__new__(cls)
        event.__dict__.update(values)
        event.__post_init__()
        return event

    @classmethod
    def from_json_bytes(cls, data: bytes) -> AuditEvent:
        try:
            parsed = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError("audit record plaintext is not JSON") from exc
        if not isinstance(parsed, dict):
            raise ValueError("audit record plaintext is not a JSON object")
        event = cls.from_dict(parsed)
        # One encoding per event, as for checkpoint lines: duplicate keys (which JSON parsers resolve
        # differently), reordered fields or other spellings would let one record read two ways.
        if event.to_json_bytes() != data:
            raise ValueError("audit record plaintext is not in canonical form")
        return event

    def display_dict(self, seq: int | None = None) -> dict[str, Any]:
        """For `audit show --json`: the core fields always present (null when unset), time as ISO 8601."""
        out: dict[str, Any] = {}
        if seq is not None:
            out["seq"] = seq
        out["time"] = iso_time(self.time)
        out["event"] = self.event
        for name in (
            "tenant_id",
            "key_id",
            "key_version",
            "purpose",
            "request_id",
            "principal",
            "source",
            "byte_count",
        ):
            out[name] = getattr(self, name)
        out["details"] = dict(self.details)
        return out


def iso_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
