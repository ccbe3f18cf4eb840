"""`Retry-After` from any CleanroomError: whole seconds, rounded up, bounded, never 0 or garbage."""

from __future__ import annotations

import math

import pytest

from cleanroom.errors import MAX_RETRY_AFTER_S, CleanroomError, ServiceUnavailable


@pytest.mark.parametrize(
    ("seconds", "header"),
    [(0.0, "1"), (0.1, "1"), (1.0, "1"), (1.4, "2"), (2.5, "3"), (30.0, "30"), (59.01, "60"), (1e9, "3600")],
)
def test_retry_after_is_rounded_up_so_an_obedient_client_finds_the_reason_gone(seconds: float, header: str) -> None:
    assert CleanroomError("x", retry_after_s=seconds).headers() == {"Retry-After": header}


@pytest.mark.parametrize("seconds", [math.inf, math.nan, -math.inf, -5.0])
def test_retry_after_from_a_non_finite_or_negative_wait_is_still_a_usable_whole_number(seconds: float) -> None:
    value = int(CleanroomError("x", retry_after_s=seconds).headers()["Retry-After"])
    assert 1 <= value <= MAX_RETRY_AFTER_S


def test_no_retry_after_without_a_wait() -> None:
    assert CleanroomError("x").headers() == {}
    assert ServiceUnavailable("busy").headers() == {}
