"""The record plaintext: `AuditEvent.to_json_bytes` (written directly, not through `json`) gives the same
bytes as the generic encoder it replaced, and `AuditEvent.from_fields` (which fills the instance itself)
builds the same event, with the same validation, as the dataclass constructor."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanroom.audit.log import AuditLog
from cleanroom.audit.records import AuditEvent
from cleanroom.errors import AuditUnavailable

# What the records were encoded with before (and what `json` itself writes): compact, UTF-8 kept.
REFERENCE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def reference_bytes(event: AuditEvent) -> bytes:
    return REFERENCE(event.to_dict()).encode("utf-8")


def test_fixed_vector() -> None:
    event = AuditEvent(
        event="decrypt.request_key",
        time=1700000000.25,
        tenant_id="acme",
        key_id="tk-1",
        key_version=3,
        purpose="request",
        request_id="00ff",
        principal="ak_1",
        source="203.0.113.42",
        byte_count=4096,
        details={"model": "minilm", "ok": True, "no": False, "n": -7, "r": 0.5},
    )
    assert event.to_json_bytes() == (
        b'{"event":"decrypt.request_key","time":1700000000.25,"tenant_id":"acme","key_id":"tk-1",'
        b'"key_version":3,"purpose":"request","request_id":"00ff","principal":"ak_1","source":"203.0.113.42",'
        b'"byte_count":4096,"details":{"model":"minilm","ok":true,"no":false,"n":-7,"r":0.5}}'
    )
    assert AuditEvent(event="key.create", time=5).to_json_bytes() == b'{"event":"key.create","time":5}'


@pytest.mark.parametrize(
    "text",
    [
        'quote " and backslash \\',
        "controls \x00\x01\x1f\t\n\r\b\f",
        "utf-8 é ü 日本 🙂",
        "\u2028\u2029",
        "",
        "/</script>",
    ],
)
def test_strings_are_escaped_like_json(text: str) -> None:
    event = AuditEvent(event="admin.x", tenant_id=text, source=text, details={text: text, "k": text})
    assert event.to_json_bytes() == reference_bytes(event)
    assert AuditEvent.from_json_bytes(event.to_json_bytes()) == event


@pytest.mark.parametrize("moment", [0, 1, 2**62, 0.0, -0.0, 1e-300, 1.7e9 + 0.123456, 1e300, math.inf, -math.inf])
def test_numbers_are_written_like_json(moment: float) -> None:
    event = AuditEvent(event="admin.x", time=moment, details={"f": moment, "i": 2**70, "neg": -1})
    assert event.to_json_bytes() == reference_bytes(event)


def test_nan_time_is_written_like_json() -> None:
    event = AuditEvent(event="admin.x", time=math.nan, details={"f": math.nan})
    assert event.to_json_bytes() == reference_bytes(event) == b'{"event":"admin.x","time":NaN,"details":{"f":NaN}}'


_text = st.text(max_size=40)
_scalar = st.one_of(_text, st.booleans(), st.integers(), st.floats(allow_nan=False))


@settings(max_examples=300, deadline=None)
@given(
    strings=st.lists(st.one_of(st.none(), _text), min_size=6, max_size=6),
    ints=st.lists(st.one_of(st.none(), st.integers(min_value=0)), min_size=2, max_size=2),
    moment=st.one_of(st.floats(allow_nan=False), st.integers(min_value=0, max_value=2**63)),
    details=st.dictionaries(st.text(max_size=20), _scalar, max_size=8),
)
def test_any_valid_event_encodes_like_json(
    strings: list[str | None], ints: list[int | None], moment: float, details: dict[str, Any]
) -> None:
    tenant_id, key_id, purpose, request_id, principal, source = strings
    key_version, byte_count = ints
    event = AuditEvent(
        event="decrypt.request_key",
        time=moment,
        tenant_id=tenant_id,
        key_id=key_id,
        key_version=key_version,
        purpose=purpose,
        request_id=request_id,
        principal=principal,
        source=source,
        byte_count=byte_count,
        details=details,
    )
    try:
        expected = reference_bytes(event)
    except UnicodeEncodeError:  # lone surrogates: neither encoder can write them as UTF-8
        with pytest.raises(UnicodeEncodeError):
            event.to_json_bytes()
        return
    assert event.to_json_bytes() == expected


def _constructed(fields: dict[str, Any]) -> AuditEvent:
    """What `from_fields` did before: the known fields through the dataclass constructor."""
    known = {k: v for k, v in fields.items() if k in AuditEvent.__dataclass_fields__ and k != "details"}
    known = {k: v for k, v in known.items() if v is not None}
    extra = {k: v for k, v in fields.items() if k not in AuditEvent.__dataclass_fields__ and v is not None}
    return AuditEvent(**known, details={**fields.get("details", {}), **extra})


def test_from_fields_builds_the_same_event_as_the_constructor() -> None:
    fields = {
        "event": "decrypt.request_key",
        "time": 1700000000.5,
        "tenant_id": "acme",
        "key_id": "tk",
        "key_version": 2,
        "purpose": "request",
        "request_id": "ab",
        "principal": "ak",
        "source": "10.0.0.1",
        "byte_count": 12,
        "model": "echo",
        "details": {"x": 1},
        "byte_count_hint": None,
    }
    event = AuditEvent.from_fields(fields)
    assert event == _constructed(fields)
    assert event.to_json_bytes() == reference_bytes(event)
    assert hash(event.event) and event.details == {"x": 1, "model": "echo"}
    with pytest.raises(AttributeError):  # still frozen
        event.tenant_id = "other"  # type: ignore[misc]


def test_from_fields_fills_time_and_converts() -> None:
    event = AuditEvent.from_fields({"event": "admin.x", "tenant_id": 7, "nested": {"a": 1}, "flag": False})
    assert isinstance(event.time, float) and event.tenant_id == "7"
    assert event.details == {"nested": "{'a': 1}", "flag": False}
    assert event.key_version is None and event.byte_count is None


@pytest.mark.parametrize(
    "fields",
    [
        {"event": "Not An Event"},
        {"event": "decrypt.x", "byte_count": -1},
        {"event": "decrypt.x", "byte_count": True},
        {"event": "decrypt.x", "key_version": "3"},
        {"event": "decrypt.x", "time": "yesterday"},
        {"event": "decrypt.x", "tenant_id": "t" * 10_000},
        {"event": "decrypt.x", "details": {"k": [1, 2]}},
        {"event": "decrypt.x", "details": {"k" * 65: 1}},
        {"event": "decrypt.x", **{f"d{i}": i for i in range(65)}},
        {"event": 5},
    ],
)
def test_from_fields_validates_like_the_constructor(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AuditEvent.from_fields(fields)
    with pytest.raises(AuditUnavailable, match="rejected"):
        AuditLog.event_from_fields(fields)


def test_from_fields_without_an_event_name() -> None:
    with pytest.raises(TypeError):
        AuditEvent.from_fields({"tenant_id": "acme"})
    with pytest.raises(AuditUnavailable, match="rejected"):
        AuditLog.event_from_fields({"tenant_id": "acme"})


def test_from_fields_copies_details() -> None:
    details = {"a": 1}
    event = AuditEvent.from_fields({"event": "admin.x", "details": details})
    details["a"] = 2
    assert event.details == {"a": 1}
