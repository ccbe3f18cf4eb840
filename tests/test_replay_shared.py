"""The replay cache shared by every process on a data dir (`runtime.replay_shared`).

Attacked: a captured sealed request replayed to another process on the same data dir (another cache object,
a racing process, another ASGI worker), stale and expired ids, a replay dir an attacker made a symlink or
opened to others, and a disk that cannot take the claim (the request must be refused, never let through).
`replay_shared` is imported inside the tests so that the end-to-end test also runs, and fails, on the code
before it (where every worker kept its own ids).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from cleanroom.client import Client
from cleanroom.config import Settings
from cleanroom.crypto.sealed import CONTENT_TYPE
from cleanroom.errors import ConfigurationError, ReplayedRequest, StaleRequest
from cleanroom.integrations.asgi import CleanroomMiddleware
from cleanroom.integrations.workers import build_worker_services
from cleanroom.runtime.models import ModelRegistry
from cleanroom.runtime.replay import ReplayCache

WINDOW_S = 300.0
TENANT = "t_0123456789abcdef"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def shared(directory: Path, clock: Any = time.time, cls: Any = None, **kwargs: Any) -> Any:
    from cleanroom.runtime.replay_shared import SharedReplayCache

    return (cls or SharedReplayCache)(directory, WINDOW_S, 1000, clock, **kwargs)


def claims(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file()]


# --- one host, several cache objects --------------------------------------------------------------
def test_a_second_cache_on_the_dir_refuses_the_first_ones_id_with_the_same_error(tmp_path: Path) -> None:
    now = int(time.time())
    first, second = shared(tmp_path / "replay"), shared(tmp_path / "replay")
    first.check_and_remember(TENANT, b"\x01" * 16, now)
    with pytest.raises(ReplayedRequest) as across:
        second.check_and_remember(TENANT, b"\x01" * 16, now)
    with pytest.raises(ReplayedRequest) as same:
        first.check_and_remember(TENANT, b"\x01" * 16, now)  # the in-process fast path
    local = ReplayCache(WINDOW_S, 10)
    local.check_and_remember(TENANT, b"\x01" * 16, now)
    with pytest.raises(ReplayedRequest) as single:
        local.check_and_remember(TENANT, b"\x01" * 16, now)
    assert str(across.value) == str(same.value) == str(single.value)
    assert across.value.status == single.value.status == 400 and across.value.code == "replayed_request"
    second.check_and_remember("t_fedcba9876543210", b"\x01" * 16, now)  # ids are per tenant
    second.check_and_remember(TENANT, b"\x02" * 16, now)
    with pytest.raises(ReplayedRequest):
        first.check_and_remember(TENANT, b"\x02" * 16, now)
    # Nothing on disk names the tenant or the id; the files and directories are private.
    files = claims(tmp_path / "replay")
    assert len(files) == 3 and not any(TENANT in str(p) or "0101" in str(p) for p in files)
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in files)
    assert all(p.stat().st_mode & 0o777 == 0o700 for p in (tmp_path / "replay").rglob("*") if p.is_dir())


def test_stale_timestamps_are_refused_before_any_claim(tmp_path: Path) -> None:
    clock = Clock(1_700_000_000.0)
    cache, local = shared(tmp_path / "replay", clock), ReplayCache(WINDOW_S, 10, clock)
    for ts in (1_700_000_000 - 301, 1_700_000_000 + 301, 0, -(2**1100), 2**1100):
        with pytest.raises(StaleRequest) as shared_error:
            cache.check_and_remember(TENANT, os.urandom(16), ts)
        with pytest.raises(StaleRequest) as local_error:
            local.check_and_remember(TENANT, os.urandom(16), ts)
        assert str(shared_error.value) == str(local_error.value)
    assert claims(tmp_path / "replay") == [] and len(cache) == 0
    cache.check_and_remember(TENANT, b"\x03" * 16, 1_700_000_000 + 300)  # the edges are inside
    cache.check_and_remember(TENANT, b"\x04" * 16, 1_700_000_000 - 300)


def test_a_replay_later_in_the_window_finds_the_claim_whatever_the_clock(tmp_path: Path) -> None:
    """The bucket comes from the request's timestamp: a replay 290 s later (another bucket of the clock)
    and a process whose clock is 4 minutes off both look where the first claim is."""
    ts = 1_700_000_000
    shared(tmp_path / "replay", Clock(ts - 250.0)).check_and_remember(TENANT, b"\x05" * 16, ts)
    for now in (ts + 290.0, ts - 240.0, ts + 0.5):
        with pytest.raises(ReplayedRequest):
            shared(tmp_path / "replay", Clock(now)).check_and_remember(TENANT, b"\x05" * 16, ts)


def test_buckets_expire_after_two_windows_plus_skew_and_sweeps_tolerate_each_other(tmp_path: Path) -> None:
    ts = 1_700_000_000 - 1_700_000_000 % 300  # the start of a bucket
    bucket = ts // 300
    clock = Clock(float(ts + 299))
    cache = shared(tmp_path / "replay", clock, clock_skew_s=60.0)
    cache.check_and_remember(TENANT, b"\x06" * 16, ts + 299)  # bucket b, needed until (b + 2) x W
    cache.check_and_remember(TENANT, b"\x07" * 16, ts + 599)  # bucket b + 1
    (tmp_path / "replay" / "notes").mkdir()  # not a bucket: left alone
    (tmp_path / "replay" / ".expired-99-dead").mkdir()  # left by a process that died while removing it
    (tmp_path / "replay" / ".expired-99-dead" / "x").write_bytes(b"")
    clock.now = (bucket + 2) * 300 + 59.9
    assert cache.sweep() == [".expired-99-dead"]
    assert sorted(p.name for p in (tmp_path / "replay").iterdir()) == sorted([str(bucket), str(bucket + 1), "notes"])
    clock.now = (bucket + 2) * 300 + 60.0
    other = shared(tmp_path / "replay", clock)
    removed = cache.sweep()
    assert [name.split("-")[1] for name in removed] == [str(bucket)]
    assert other.sweep() == []  # nothing left for the other process: no error either
    assert sorted(p.name for p in (tmp_path / "replay").iterdir()) == sorted([str(bucket + 1), "notes"])
    with pytest.raises(ReplayedRequest):  # bucket b + 1 is still live
        other.check_and_remember(TENANT, b"\x07" * 16, ts + 599)
    # A request sweeps on its own (on a daemon thread): bucket b + 1 goes once it has expired too.
    clock.now = (bucket + 3) * 300 + 60.0
    other.check_and_remember(TENANT, b"\x08" * 16, int(clock.now))
    for thread in threading.enumerate():
        if thread.name == "cleanroom-replay-sweep":
            thread.join(10)
    assert sorted(p.name for p in (tmp_path / "replay").iterdir()) == sorted([str(bucket + 3), "notes"])


# --- two processes racing -------------------------------------------------------------------------
RACER = """
import json, sys
from pathlib import Path
from cleanroom.errors import ReplayedRequest
from cleanroom.runtime.replay_shared import SharedReplayCache

directory, ts, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cache = SharedReplayCache(Path(directory), 300.0, 10_000)
print("ready", flush=True)
sys.stdin.readline()
won = []
for i in range(count):
    try:
        cache.check_and_remember("t_0123456789abcdef", i.to_bytes(16, "big"), ts)
        won.append(i)
    except ReplayedRequest:
        pass
print(json.dumps(won), flush=True)
"""


def test_two_processes_racing_on_the_same_ids_each_id_is_won_exactly_once(tmp_path: Path) -> None:
    count, ts = 1000, int(time.time())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}  # the cleanroom this test imported
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(tmp_path / "replay"), str(ts), str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        for racer in racers:  # both have built their cache before either starts
            assert racer.stdout is not None and racer.stdout.readline() == "ready\n"
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.flush()
        results = [set(json.loads(racer.communicate(timeout=60)[0])) for racer in racers]
    finally:
        for racer in racers:
            racer.kill()
    assert all(racer.returncode == 0 for racer in racers)
    first, second = results
    assert not first & second, "an id was accepted by both processes"
    assert first | second == set(range(count))
    assert len(claims(tmp_path / "replay")) == count


# --- an unsafe replay dir, a disk that says no ----------------------------------------------------
def test_a_replay_dir_that_is_a_symlink_or_open_to_others_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(ConfigurationError, match="is a symlink"):
        shared(tmp_path / "link")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ConfigurationError, match="cannot be opened"):
        shared(tmp_path / "file")
    loose = tmp_path / "loose"
    loose.mkdir()
    for mode in (0o777, 0o770, 0o1777):
        loose.chmod(mode)
        with pytest.raises(ConfigurationError, match="writable by group or others"):
            shared(loose)
    if os.geteuid() == 0:  # only root can give a directory away
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
        with pytest.raises(ConfigurationError, match="owned by uid 65534"):
            shared(theirs)
    loose.chmod(0o700)
    shared(loose)  # fixed: accepted
    assert list(target.iterdir()) == []


def test_symlinks_planted_inside_the_replay_dir_fail_closed(tmp_path: Path) -> None:
    from cleanroom.runtime.replay_shared import ReplayCacheUnavailable, claim_name

    ts = int(time.time())
    bucket = str(int(ts // WINDOW_S))
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o700)
    replay = tmp_path / "replay"
    replay.mkdir(mode=0o700)
    (replay / bucket).symlink_to(outside)  # a whole bucket redirected
    cache = shared(replay)
    with pytest.raises(ReplayCacheUnavailable) as refused:
        cache.check_and_remember(TENANT, b"\x09" * 16, ts)
    assert refused.value.status == 503 and refused.value.code == "replay_cache_unavailable"
    assert list(outside.iterdir()) == []
    (replay / bucket).unlink()
    name = claim_name(TENANT, b"\x0a" * 16)
    (replay / bucket / name[:2]).mkdir(parents=True, mode=0o700)
    (replay / bucket / name[:2] / name[2:]).symlink_to(outside / "planted")  # one claim redirected
    with pytest.raises(ReplayedRequest):
        cache.check_and_remember(TENANT, b"\x0a" * 16, ts)
    assert list(outside.iterdir()) == []
    cache.check_and_remember(TENANT, b"\x09" * 16, ts)  # the refused id was not used up


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EIO, errno.EDQUOT])
def test_a_disk_that_cannot_take_the_claim_fails_closed_and_keeps_the_id_usable(tmp_path: Path, code: int) -> None:
    from cleanroom.runtime.replay_shared import ReplayCacheUnavailable, SharedReplayCache

    class FailingDisk(SharedReplayCache):
        failing = True

        def _create(self, relative: str) -> None:
            if self.failing:
                raise OSError(code, os.strerror(code))
            super()._create(relative)

    cache = shared(tmp_path / "replay", cls=FailingDisk)
    ts = int(time.time())
    for _ in range(2):  # refused again (not "replayed"): the id was given back
        with pytest.raises(ReplayCacheUnavailable) as refused:
            cache.check_and_remember(TENANT, b"\x0b" * 16, ts)
        assert refused.value.status == 503 and refused.value.headers() == {"Retry-After": "10"}
    assert "retry later" in refused.value.message and os.strerror(code) not in refused.value.message
    cache.failing = False
    cache.check_and_remember(TENANT, b"\x0b" * 16, ts)
    with pytest.raises(ReplayedRequest):
        shared(tmp_path / "replay").check_and_remember(TENANT, b"\x0b" * 16, ts)


def test_a_bucket_removed_under_a_running_process_is_made_again(tmp_path: Path) -> None:
    import shutil

    from cleanroom.runtime.replay_shared import claim_name

    cache, ts = shared(tmp_path / "replay"), int(time.time())
    cache.check_and_remember(TENANT, b"\x0c" * 16, ts)
    prefix = claim_name(TENANT, b"\x0c" * 16)[:2]
    same_prefix = next(
        i.to_bytes(16, "big") for i in range(100_000) if claim_name(TENANT, i.to_bytes(16, "big"))[:2] == prefix
    )
    shutil.rmtree(tmp_path / "replay" / str(int(ts // WINDOW_S)))
    cache.check_and_remember(TENANT, same_prefix, ts)  # this process thinks that directory exists
    assert len(claims(tmp_path / "replay")) == 1


# --- wiring ---------------------------------------------------------------------------------------
def test_services_use_the_shared_cache_unless_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cleanroom.runtime.replay_shared import SharedReplayCache

    settings = Settings(data_dir=tmp_path / "data", not_dumpable=False, disable_core_dumps=False)
    services = build_worker_services(settings, "w1", models=ModelRegistry({}))  # Ray replicas, Triton instances
    try:
        assert isinstance(services.runtime.opener.replay, SharedReplayCache)
        assert (tmp_path / "data" / "replay").stat().st_mode & 0o777 == 0o700
    finally:
        services.close()
    monkeypatch.setenv("CLEANROOM_REPLAY_SHARED", "false")
    off = Settings(data_dir=tmp_path / "data2", not_dumpable=False, disable_core_dumps=False)
    assert off.replay_shared is False
    services = build_worker_services(off, "w1", models=ModelRegistry({}))
    try:
        assert not isinstance(services.runtime.opener.replay, SharedReplayCache)
    finally:
        services.close()


def test_a_single_process_middleware_keeps_ids_in_memory_unless_told(tmp_path: Path) -> None:
    """Without worker_id one middleware holds the data dir (its audit lock): nothing to share with, and a
    claim on disk would run on the event loop (12% of a 5 ms handler). Told explicitly, it shares."""
    from cleanroom.runtime.replay_shared import SharedReplayCache

    for shared, expected in ((None, False), (True, True)):
        extra = {} if shared is None else {"replay_shared": shared}
        settings = Settings(data_dir=tmp_path / f"d{shared}", not_dumpable=False, disable_core_dumps=False, **extra)
        middleware = CleanroomMiddleware(make_app(), settings=settings, admin_socket=False)
        try:
            assert isinstance(middleware.services.runtime.opener.replay, SharedReplayCache) is expected
        finally:
            middleware.close()


# --- end to end: two ASGI workers over one data dir -----------------------------------------------
def make_app() -> FastAPI:
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, object]:
        return {"reversed": (await request.json())["text"][::-1]}

    return app


@pytest.fixture(params=["worker_id", "services"])
def two_workers(request: pytest.FixtureRequest, data_dir: Path) -> Iterator[list[CleanroomMiddleware]]:
    """Two worker processes' middlewares (`uvicorn --workers 2`), built in one process: the middleware's
    worker mode, and middlewares given worker services (which the code before the shared cache had too)."""
    settings = Settings(data_dir=data_dir, not_dumpable=False, disable_core_dumps=False)
    built: list[CleanroomMiddleware] = []
    owned = []
    try:
        for worker in ("web-1", "web-2"):
            if request.param == "worker_id":
                built.append(CleanroomMiddleware(make_app(), settings=settings, worker_id=worker))
            else:
                owned.append(build_worker_services(settings, worker, models=ModelRegistry({})))
                built.append(CleanroomMiddleware(make_app(), settings=settings, services=owned[-1]))
        yield built
    finally:
        for middleware in built:
            middleware.close()
        for services in owned:
            services.close()


def test_a_request_replayed_to_another_worker_is_refused_like_a_replay_to_the_same_one(
    two_workers: list[CleanroomMiddleware], data_dir: Path
) -> None:
    first, second = two_workers
    created = first.services.tenants.create("shop")
    client = Client("http://testserver", api_key=created.api_key)
    headers = {"Content-Type": CONTENT_TYPE, "Authorization": f"Bearer {created.api_key}"}
    web1, web2 = TestClient(first), TestClient(second)
    client._http = web1  # the public key comes from the first worker

    def post(http: TestClient, body: bytes) -> tuple[int, str]:
        response = http.post("/predict", content=body, headers=headers)
        code = response.json()["error"]["code"] if response.status_code != 200 else ""
        return response.status_code, code

    sealed = client.seal_request("", json.dumps({"text": "abc"}).encode(), path="/predict")
    answer = web1.post("/predict", content=sealed.body, headers=headers)
    assert answer.status_code == 200 and json.loads(sealed.open_response(answer.content)) == {"reversed": "cba"}
    single = post(web1, sealed.body)  # the replay to the same worker
    assert single == (400, "replayed_request")
    assert post(web2, sealed.body) == single  # ... and to the other one
    other = client.seal_request("", json.dumps({"text": "xyz"}).encode(), path="/predict")
    assert post(web2, other.body) == (200, "")  # the other worker serves fresh requests
    assert post(web1, other.body) == single
    assert (data_dir / "workers" / "web-1" / "audit").is_dir() and (data_dir / "workers" / "web-2" / "audit").is_dir()
    assert not (data_dir / "admin.sock").exists()  # workers serve no admin socket

    # A disk that cannot take the claim: 503 with a JSON error, never the app, never a 500.
    from cleanroom.runtime.replay_shared import SharedReplayCache

    class FullDisk(SharedReplayCache):
        def _create(self, relative: str) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    replay = second.services.runtime.opener.replay
    second.services.runtime.opener.replay = FullDisk(replay.directory, replay.window_s, replay.max_entries)
    third = client.seal_request("", json.dumps({"text": "full"}).encode(), path="/predict")
    response = web2.post("/predict", content=third.body, headers=headers)
    assert response.status_code == 503 and response.json()["error"]["code"] == "replay_cache_unavailable"
    assert response.headers["Retry-After"] == "10"
    assert post(web1, third.body) == (200, "")  # refused unopened: the body still works elsewhere
