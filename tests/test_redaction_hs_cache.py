"""The redactor's compiled-database cache: it saves the compile, and a cache entry that cannot be trusted is
never used (a tampered database could keep a rule from firing and let a secret into a log)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from cleanroom.scrubbers import _redact_prefilter as prefilter_module
from cleanroom.scrubbers.logs import DEFAULT_RULES, Redactor

pytest.importorskip("hyperscan")

# A slice of the real rules, with anchored ones in it (both databases), compiles in a fraction of a second.
RULES = tuple(r for r in DEFAULT_RULES if r.anchor is not None)[:6] + DEFAULT_RULES[:40]
LINES = [
    "login ok user=jane@example.com password=hunter2-Secret!",
    "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlc2lnbmF0dXJl",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY and AKIAIOSFODNN7EXAMPLE",
    "GET /healthz 200 3.2ms trace=4bf92f3577b34da6a3ce929d0e0e4736",
    "ghp_" + "a" * 36 + " pushed to main",
]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "cache"
    monkeypatch.setenv("CLEANROOM_CACHE_DIR", str(where))
    return where


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the real compiles (the cache's misses)."""
    calls: list[int] = []
    real = prefilter_module._compile_databases

    def counting(hyperscan: object, rules: object) -> object:
        calls.append(1)
        return real(hyperscan, rules)  # type: ignore[arg-type]

    monkeypatch.setattr(prefilter_module, "_compile_databases", counting)
    return calls


def scans(prefilter: prefilter_module.HyperscanPrefilter) -> list[object]:
    return [prefilter.scan(line) for line in LINES]


def entry_file(cache: Path) -> Path:
    (path,) = cache.glob("hyperscan-*.json")
    return path


def test_the_second_build_loads_the_cache_and_scans_the_same(cache: Path, compiles: list[int]) -> None:
    fresh = prefilter_module.HyperscanPrefilter(RULES)
    assert len(compiles) == 1
    path = entry_file(cache)
    assert path.stat().st_mode & 0o777 == 0o600 and cache.stat().st_mode & 0o777 == 0o700
    cached = prefilter_module.HyperscanPrefilter(RULES)
    assert len(compiles) == 1, "the second build compiled instead of loading the cache"
    assert scans(cached) == scans(fresh) and any(ids for ids, _ in scans(cached))
    # Another rule set is another entry, never this one.
    prefilter_module.HyperscanPrefilter(RULES[:-1])
    assert len(compiles) == 2 and len(list(cache.glob("hyperscan-*.json"))) == 2


def test_a_redactor_from_the_cache_redacts_as_a_fresh_one(cache: Path, compiles: list[int]) -> None:
    fresh = Redactor(rules=RULES, prefilter="hyperscan")
    cached = Redactor(rules=RULES, prefilter="hyperscan")
    assert len(compiles) == 1
    assert [cached.redact(line) for line in LINES] == [fresh.redact(line) for line in LINES]
    assert "hunter2-Secret!" not in cached.redact(LINES[0])


def _loose_file(cache: Path) -> None:
    entry_file(cache).chmod(0o666)


def _loose_dir(cache: Path) -> None:
    cache.chmod(0o777)


def _foreign_owner(cache: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    os.chown(entry_file(cache), 65534, 65534)


def _symlink(cache: Path) -> None:
    path = entry_file(cache)
    elsewhere = cache.parent / "elsewhere.json"
    path.rename(elsewhere)
    path.symlink_to(elsewhere)


def _garbage(cache: Path) -> None:
    entry_file(cache).write_bytes(b"\x00not json")


def _truncated(cache: Path) -> None:
    path = entry_file(cache)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flipped_database(cache: Path) -> None:
    path = entry_file(cache)
    entry = json.loads(path.read_text())
    blob = bytearray(base64.b64decode(entry["db"]))
    for i in range(0, len(blob), 97):
        blob[i] ^= 0x41
    entry["db"] = base64.b64encode(bytes(blob)).decode()
    path.write_text(json.dumps(entry))


def _rule_ids_out_of_range(cache: Path) -> None:
    path = entry_file(cache)
    entry = json.loads(path.read_text())
    entry["anchor_ids"] = [10**6]
    path.write_text(json.dumps(entry))


def _another_key(cache: Path) -> None:
    path = entry_file(cache)
    entry = json.loads(path.read_text())
    entry["key"] = "0" * 64
    path.write_text(json.dumps(entry))


@pytest.mark.parametrize(
    "damage",
    [
        _loose_file,
        _loose_dir,
        _foreign_owner,
        _symlink,
        _garbage,
        _truncated,
        _flipped_database,
        _rule_ids_out_of_range,
        _another_key,
    ],
)
def test_an_entry_that_cannot_be_trusted_is_compiled_afresh(
    cache: Path, compiles: list[int], damage: Callable[[Path], None]
) -> None:
    fresh = prefilter_module.HyperscanPrefilter(RULES)
    damage(cache)
    rebuilt = prefilter_module.HyperscanPrefilter(RULES)
    assert len(compiles) == 2, f"{damage.__name__}: the damaged entry was used"
    assert scans(rebuilt) == scans(fresh)


def test_no_cache_dir_or_an_unwritable_one_still_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("CLEANROOM_CACHE_DIR", str(blocker / "cache"))
    assert scans(prefilter_module.HyperscanPrefilter(RULES))[0][0]
    monkeypatch.setenv("CLEANROOM_CACHE_DIR", "off")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert scans(prefilter_module.HyperscanPrefilter(RULES))[0][0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"], "`off` still wrote a cache"
