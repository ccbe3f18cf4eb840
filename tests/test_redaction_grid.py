"""Recall per (type, context) and survival per (look-alike kind, context) on the format x context grid
(tests/redaction_grid.py, issue #7). A cell passes when every spelling of its type leaves nothing of its
secret in the output (no 8-character run of it that the line did not hold elsewhere), and, for a look-alike,
when every spelling's line comes back byte-identical.

A cell that fails on the tree it was measured on is a strict xfail with its reason (the spellings that
leak), so the suite stays green and the cell turns into a failure (strict XPASS) once a rule fixes it: then
delete its entry. `-s -k table` prints the type x context failure table and per-type recall.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import pytest

import redaction_grid as grid
from cleanroom.scrubbers.logs import default_redactor

RUN = 8  # a leak is an 8-character run of the secret that the line held nowhere else


def leaks(case: grid.Case, out: str) -> list[str]:
    """The secrets of `case` that survive in `out`, whole or as an 8-character run."""
    around = case.line
    for s in case.secrets:
        around = around.replace(s, "\0")
    bad = []
    for s in case.secrets:
        runs = {s[i : i + RUN] for i in range(max(1, len(s) - RUN + 1))}
        if any(r in out and r not in around for r in runs):
            bad.append(s)
    return bad


Results = dict[tuple[str, str], list[tuple[grid.Case, str]]]


def run_grid(cases: list[grid.Case], redact: Callable[[str], str]) -> Results:
    out: Results = {}
    for c in cases:
        out.setdefault((c.group, c.context), []).append((c, redact(c.line)))
    return out


def failing_spellings(cell: list[tuple[grid.Case, str]], positive: bool) -> list[tuple[grid.Case, str]]:
    return [(c, o) for c, o in cell if (leaks(c, o) if positive else o != c.line)]


# Measured on tree 80af6ac (the same on 5b6fa7d); one entry per failing cell, "type/context": how many of
# its spellings leak (or, for a look-alike, change) and which. Literal example lines: `-s -k table`, or the
# assertion message of a cell run without its entry. Delete an entry once a rule fixes the cell.
XFAIL_CELLS: dict[str, str] = {}
XFAIL_LOOK_ALIKES: dict[str, str] = {}


def _params(groups: list[str], xfails: dict[str, str]) -> list[object]:
    return [
        pytest.param(g, ctx, marks=pytest.mark.xfail(strict=True, reason=xfails[f"{g}/{ctx}"]), id=f"{g}/{ctx}")
        if f"{g}/{ctx}" in xfails
        else pytest.param(g, ctx, id=f"{g}/{ctx}")
        for g in groups
        for ctx in grid.CONTEXT_NAMES
    ]


@pytest.fixture(scope="module")
def results() -> tuple[Results, Results, Results]:
    redact = default_redactor().redact
    return run_grid(grid.positives(), redact), run_grid(grid.look_alikes(), redact), run_grid(grid.info(), redact)


def _show(bad: list[tuple[grid.Case, str]]) -> str:
    return "\n".join(f"  {c.spelling}: {c.line!r}\n    -> {o!r}" for c, o in bad[:4])


@pytest.mark.parametrize(("group", "context"), _params(list(grid.TYPES), XFAIL_CELLS))
def test_grid_recall(group: str, context: str, results: tuple[Results, Results, Results]) -> None:
    bad = failing_spellings(results[0][(group, context)], positive=True)
    assert not bad, f"{group} in {context}: {len(bad)} spelling(s) leak\n{_show(bad)}"


@pytest.mark.parametrize(("group", "context"), _params(list(grid.LOOK_ALIKES), XFAIL_LOOK_ALIKES))
def test_grid_look_alike_survives(group: str, context: str, results: tuple[Results, Results, Results]) -> None:
    bad = failing_spellings(results[1][(group, context)], positive=False)
    assert not bad, f"{group} in {context}: {len(bad)} spelling(s) changed\n{_show(bad)}"


def table(res: Results, positive: bool) -> str:
    """Type x context: '.' when the cell passes, else the number of failing spellings; then recall."""
    groups = list(dict.fromkeys(g for g, _ in res))
    short = {ctx: f"{i:>2}" for i, ctx in enumerate(grid.CONTEXT_NAMES)}
    lines = [
        "contexts: " + ", ".join(f"{i}={c}" for c, i in short.items()),
        f"{'':24}" + " ".join(short.values()) + "   pass",
    ]
    for g in groups:
        row, ok, n = [], 0, 0
        for ctx in grid.CONTEXT_NAMES:
            cell = res[(g, ctx)]
            bad = len(failing_spellings(cell, positive))
            row.append(" ." if not bad else f"{bad:>2}")
            ok, n = ok + len(cell) - bad, n + len(cell)
        lines.append(f"{g:24}" + " ".join(row) + f"   {ok / n:.3f} ({n - ok}/{n} fail)")
    return "\n".join(lines)


def test_grid_table(results: tuple[Results, Results, Results]) -> None:
    """Prints the tables (`-s`); asserts only that every cell was filled."""
    pos, neg, info = results
    print("\nrecall (type x context; failing spellings per cell)\n" + table(pos, True))
    print("\nlook-alike survival (kind x context; changed spellings per cell)\n" + table(neg, False))
    print(
        "\ninfo, asserted neither way: spellings kept per cell ('.': redacted)\n"
        + table(info, True).replace("fail)", "kept)")
    )
    assert len(pos) == len(grid.TYPES) * len(grid.CONTEXT_NAMES)
    assert len(neg) == len(grid.LOOK_ALIKES) * len(grid.CONTEXT_NAMES)


def test_grid_is_complete_and_deterministic() -> None:
    """Every spelling sits in every context (enumerated, not sampled), each type and kind has several
    spellings, and a fresh import builds the same lines."""
    cases = grid.positives()
    for group, spellings in grid.TYPES.items():
        assert len(spellings) >= 2, group
        assert len({s.name for s in spellings}) == len(spellings), group
        for ctx in grid.CONTEXT_NAMES:
            assert {c.spelling for c in cases if c.group == group and c.context == ctx} == {s.name for s in spellings}
    for c in cases:
        assert c.secrets and all(s in c.line for s in c.secrets), (c.group, c.spelling, c.context)
    before = [(c.line, c.secrets) for c in cases + grid.look_alikes()]
    again = importlib.reload(grid)
    assert [(c.line, c.secrets) for c in again.positives() + again.look_alikes()] == before
    assert set(XFAIL_CELLS) <= {f"{g}/{c}" for g in grid.TYPES for c in grid.CONTEXT_NAMES}
    assert set(XFAIL_LOOK_ALIKES) <= {f"{g}/{c}" for g in grid.LOOK_ALIKES for c in grid.CONTEXT_NAMES}


def test_grid_checks_can_fail() -> None:
    """The scorer is not vacuous: a redactor that does nothing fails every recall cell, one that masks
    every word fails every look-alike cell, and one that drops a secret's middle only still leaks."""
    pos = run_grid(grid.positives(), lambda s: s)
    assert all(failing_spellings(cell, True) == cell for cell in pos.values())
    neg = run_grid(grid.look_alikes(), lambda s: "[REDACTED:X]")
    assert all(failing_spellings(cell, False) for cell in neg.values())
    case = next(c for c in grid.positives() if c.group == "github_token" and c.context == "json")
    secret = case.secrets[0]
    assert leaks(case, case.line.replace(secret, secret[:9] + "[REDACTED:X]")) == [secret]
    assert leaks(case, case.line.replace(secret, "[REDACTED:GITHUB_TOKEN]")) == []
