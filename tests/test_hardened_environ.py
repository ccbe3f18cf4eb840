"""`hardened_environ`: the allocator settings that wipe freed memory, and the huge-page speed setting."""

from __future__ import annotations

from cleanroom.memory.hardening import allocator_hardened, hardened_environ


def tunables(env: dict[str, str]) -> list[str]:
    return env["GLIBC_TUNABLES"].split(":")


def test_wiping_settings_and_huge_pages_by_default() -> None:
    env = hardened_environ({}, perturb_byte=0x5A)
    assert env["PYTHONMALLOC"] == "malloc"
    assert tunables(env) == ["glibc.malloc.perturb=90", "glibc.malloc.tcache_count=0", "glibc.malloc.hugetlb=1"]
    assert allocator_hardened(env)


def test_the_operators_huge_page_choice_wins_but_never_over_the_wiping() -> None:
    base = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0:glibc.malloc.tcache_count=7:glibc.malloc.perturb=0"}
    env = hardened_environ(base)
    assert tunables(env) == ["glibc.malloc.hugetlb=0", "glibc.malloc.perturb=165", "glibc.malloc.tcache_count=0"]
    assert allocator_hardened(env)


def test_other_tunables_are_kept() -> None:
    env = hardened_environ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert tunables(env)[0] == "glibc.malloc.arena_max=2"
    assert "glibc.malloc.hugetlb=1" in tunables(env)
