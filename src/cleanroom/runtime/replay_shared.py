"""A replay cache shared by every process that serves one data dir, and by one process across its restarts.

`ReplayCache` is one process's memory. Ray Serve replicas, ASGI workers (`uvicorn --workers N`, gunicorn)
and Triton model instances that serve the same tenants from one data dir each remembered only their own
request ids, so a captured sealed request could be replayed once to every other process (there it was
decrypted and audited; the answer went to the original client), and a restarted process forgot them all.

The first process to accept (tenant, request id) claims it on disk with `O_CREAT | O_EXCL | O_NOFOLLOW`:
the kernel (or an NFSv3+ server) lets exactly one create succeed however many processes race, and the
others get `FileExistsError`, which is the replay. Layout:

    DATA_DIR/replay/<bucket>/<h[:2]>/<h[2:]>    h = SHA-256 hex of (domain, tenant id, request id)

- `bucket` = floor(ts / window_s) of the request's own authenticated timestamp, not of a server clock: a
  replay carries the same ts, so every process finds the claim whatever its clock and however late the
  replay comes. A request is accepted only while |now - ts| <= window_s, so bucket b is never looked at
  again once every clock is past (b + 2) x window_s; it is removed at (b + 2) x window_s + clock_skew_s by
  whichever process notices first (renamed aside atomically, then deleted on a daemon thread; two processes
  racing to remove it is harmless).
- `h[:2]`: 256 sub-directories per bucket, so a bucket of millions of claims keeps each directory small.
- a claim is an empty 0600 file; its name is a hash, so the directory names no tenant and no request id.
- the in-process `ReplayCache` runs first: the stale check, the bound on ids this process holds
  (`replay_cache_full`; it also bounds the claims each process can create: memory and disk stay bounded),
  and a replay to the same process is refused without a system call.

Fails closed: any error but "exists" (ENOSPC, out of inodes, EROFS, EACCES, EIO) answers 503
`replay_cache_unavailable` and the request is not opened; the in-process entry is given back, so the
client's retry of the same body works once the disk does. A replay dir that is a symlink, not a directory,
not owned by this user or writable by group or others is refused at start-up (`ConfigurationError`); a
bucket or prefix directory is checked the same way (lstat, no symlink followed) the first time a process
uses it; a claim path planted as a symlink fails the exclusive create (POSIX: EEXIST) and is refused. An
attacker with our uid is out of scope (they could edit the registry itself).

Not fsynced: a claim is durable once in the page cache, which outlives any process crash or restart. Only
an OS crash or power loss loses claims (those not yet written back: seconds' worth, ext4 commits its
journal every 5 s), and their requests can be replayed only if the host is back up within their window
(window_s after their ts); the audit record of each decryption is still fsynced, so such a replay would be
on the record. An fsync per claim would add an fsync wait to every request (0.3-1 ms for the audit log's
on the dev VM), with no group commit to share it.

Cost, measured with the in-process cache in the same run (`python -m cleanroom.runtime.replay_shared DIR`,
20 000 fresh ids, 2-core shared dev VM, ext4): about 1 us per check in process, 16-62 us shared over three
runs, 140-220 us (median) on a busier disk with an fdatasync loop beside it (a sha256 and one exclusive
create). `cleanroom serve` makes the claim on the device's prepare/worker thread, where minilm's sealed
latency kept its median (21.2 ms, `benchmarks/request_path.py`, alternated with the tree before), so it
uses the shared cache (`replay_shared`, default on): a restart no longer forgets the window's ids. A single
ASGI middleware makes it on its event loop (`benchmarks/middleware/overhead.py`: 1.37x instead of 1.26x for
a 5 ms handler) and holds the data dir alone, so without `worker_id` it keeps the ids in memory unless
`replay_shared` is set explicitly.

Shared filesystems: the claim needs an atomic exclusive create (local filesystems, NFSv3 or later,
CephFS) and the hosts' clocks within `clock_skew_s` (default 60 s) of each other.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import math
import os
import re
import secrets
import shutil
import stat
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from cleanroom.errors import ConfigurationError, ReplayedRequest, ServiceUnavailable
from cleanroom.runtime.replay import ReplayCache

log = logging.getLogger("cleanroom.replay")

REPLAY_DIR_NAME = "replay"
CLAIM_DOMAIN = b"cleanroom/replay/v1\0"
_CLAIM_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_BUCKET_NAME = re.compile(r"-?[0-9]{1,20}")
_ASIDE_PREFIX = ".expired-"


class ReplayCacheUnavailable(ServiceUnavailable):
    """The shared replay cache could not record a request id (disk full, read-only, I/O error, an unsafe
    directory): the request is refused, never accepted unchecked."""

    code = "replay_cache_unavailable"


def replay_dir(data_dir: Path) -> Path:
    return Path(data_dir) / REPLAY_DIR_NAME


def claim_name(tenant_id: str, request_id: bytes) -> str:
    """The claim's hex name: length-prefixed, so no two (tenant, id) pairs share an input."""
    tenant = tenant_id.encode("utf-8", "surrogatepass")
    return hashlib.sha256(CLAIM_DOMAIN + len(tenant).to_bytes(4, "big") + tenant + bytes(request_id)).hexdigest()


def _private_dir_problem(st: os.stat_result) -> str | None:
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory (a symlink or a file)"
    if st.st_uid != os.geteuid():
        return f"is owned by uid {st.st_uid}, not by this process's user (uid {os.geteuid()})"
    if st.st_mode & 0o022:
        return f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):o}; chmod 700)"
    return None


class SharedReplayCache(ReplayCache):
    """`ReplayCache` (same interface, errors and messages) whose ids are claimed across processes in a
    directory; see the module docstring for the design."""

    PREFIX_HEX_DIGITS = 2
    RETRY_AFTER_S = 10.0

    def __init__(
        self,
        directory: Path,
        window_s: float,
        max_entries: int,
        clock: Callable[[], float] = time.time,
        *,
        clock_skew_s: float = 60.0,
    ) -> None:
        super().__init__(window_s, max_entries, clock)
        if not clock_skew_s >= 0:
            raise ValueError("clock_skew_s must be >= 0")
        self.directory = Path(directory)
        self.clock_skew_s = clock_skew_s
        self._dir_fd = _open_replay_dir(self.directory)
        self._closer = weakref.finalize(self, os.close, self._dir_fd)
        self._ready: set[str] = set()  # "<bucket>/<prefix>" directories this process has checked
        self._sweep_mutex = threading.Lock()
        self._next_sweep_at = -math.inf

    def close(self) -> None:
        self._closer()

    def check_and_remember(self, tenant_id: str, request_id: bytes, ts: int) -> None:
        super().check_and_remember(tenant_id, request_id, ts)  # stale, seen by this process, full
        try:
            self._claim(tenant_id, request_id, ts)
        except ReplayedRequest:
            raise
        except BaseException:
            self.forget(tenant_id, request_id)  # refused before anything was opened: not used up
            raise
        self._maybe_sweep()

    # --- the claim ---------------------------------------------------------------------------------
    def _claim(self, tenant_id: str, request_id: bytes, ts: int) -> None:
        # ts is within window_s of the clock here (checked above), so the division is exact enough and small.
        bucket = math.floor(ts / self.window_s)
        name = claim_name(tenant_id, request_id)
        where = f"{bucket}/{name[: self.PREFIX_HEX_DIGITS]}"
        try:
            for attempt in (1, 2):
                if where not in self._ready:
                    self._prepare(where)
                    self._ready.add(where)
                try:
                    self._create(f"{where}/{name[self.PREFIX_HEX_DIGITS :]}")
                    return
                except FileNotFoundError:
                    # The directory went away (removed by hand, or by a process whose clock runs far ahead):
                    # make it again, once.
                    self._ready.discard(where)
                    if attempt == 2:
                        raise
        except FileExistsError:
            raise ReplayedRequest("this sealed request was already received; seal a new one") from None
        except OSError as exc:
            reason = errno.errorcode.get(exc.errno or 0, "error")
            log.error("replay cache %s cannot record a request id: %s (%s)", self.directory, exc.strerror, reason)
            raise self._unavailable() from None

    def _prepare(self, where: str) -> None:
        """Make (or find) `<bucket>` and `<bucket>/<prefix>` and check each is our own private directory."""
        bucket, _, _ = where.partition("/")
        for relative in (bucket, where):
            with contextlib.suppress(FileExistsError):
                os.mkdir(relative, 0o700, dir_fd=self._dir_fd)
            problem = _private_dir_problem(os.stat(relative, dir_fd=self._dir_fd, follow_symlinks=False))
            if problem:
                log.error("replay cache entry %s/%s %s: refusing requests", self.directory, relative, problem)
                raise self._unavailable()

    def _create(self, relative: str) -> None:
        """The atomic claim (a test subclass injects disk errors here)."""
        os.close(os.open(relative, _CLAIM_FLAGS, 0o600, dir_fd=self._dir_fd))

    def _unavailable(self) -> ReplayCacheUnavailable:
        return ReplayCacheUnavailable(
            "the server cannot record request ids against replay right now; retry later",
            retry_after_s=self.RETRY_AFTER_S,
        )

    # --- expiry ------------------------------------------------------------------------------------
    def _expired(self, bucket: int, now: float) -> bool:
        return now >= (bucket + 2) * self.window_s + self.clock_skew_s

    def _maybe_sweep(self) -> None:
        now = self._clock()
        if now < self._next_sweep_at or not self._sweep_mutex.acquire(blocking=False):
            return
        try:
            self._next_sweep_at = now + self.window_s / 4
            doomed = self._set_aside_expired(now)
        except OSError as exc:  # never fails a request: expired buckets only cost disk until the next sweep
            log.warning("replay cache %s: could not look for expired buckets: %s", self.directory, exc.strerror)
            return
        finally:
            self._sweep_mutex.release()
        if doomed:
            threading.Thread(target=self._remove, args=(doomed,), name="cleanroom-replay-sweep", daemon=True).start()

    def sweep(self) -> list[str]:
        """Remove the expired buckets now (synchronously); returns the names removed. Requests do this on
        their own, at most every window_s / 4, with the deletion on a daemon thread."""
        with self._sweep_mutex:
            doomed = self._set_aside_expired(self._clock())
        self._remove(doomed)
        return doomed

    def _set_aside_expired(self, now: float) -> list[str]:
        doomed = []
        for name in os.listdir(self._dir_fd):
            if name.startswith(_ASIDE_PREFIX):
                doomed.append(name)  # left by a process that died while removing it (or removing it now)
                continue
            if not _BUCKET_NAME.fullmatch(name) or not self._expired(int(name), now):
                continue  # live, or not ours: left alone
            aside = f"{_ASIDE_PREFIX}{name}-{secrets.token_hex(4)}"
            try:
                os.rename(name, aside, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
            except FileNotFoundError:
                continue  # another process set it aside first
            # A copy (atomic under the GIL): request threads add to the set while this runs.
            self._ready = {where for where in self._ready.copy() if not where.startswith(f"{name}/")}
            doomed.append(aside)
        return doomed

    def _remove(self, names: list[str]) -> None:
        for name in names:
            try:
                shutil.rmtree(name, dir_fd=self._dir_fd)
            except FileNotFoundError:
                pass  # another process removed it
            except OSError as exc:  # retried at the next sweep
                log.warning("replay cache %s: could not remove %s: %s", self.directory, name, exc.strerror)


def _open_replay_dir(directory: Path) -> int:
    """The replay dir, created 0700 if missing, opened without following a symlink and checked on the
    descriptor (no race between the check and the use)."""
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass  # checked below, on the descriptor
    except OSError as exc:
        raise ConfigurationError(f"cannot create the replay dir {directory}: {exc.strerror}") from None
    try:
        fd = os.open(directory, _DIR_FLAGS)
    except OSError as exc:
        # O_NOFOLLOW | O_DIRECTORY on a symlink fails with ELOOP or ENOTDIR: name the cause.
        why = "is a symlink" if directory.is_symlink() else f"cannot be opened ({exc.strerror})"
        raise ConfigurationError(f"the replay dir {directory} {why}; it must be a private directory") from None
    problem = _private_dir_problem(os.fstat(fd))
    if problem:
        os.close(fd)
        raise ConfigurationError(f"the replay dir {directory} {problem}")
    return fd


def build_replay_cache(
    data_dir: Path, window_s: float, max_entries: int, *, shared: bool, clock: Callable[[], float] = time.time
) -> ReplayCache:
    """The cache `build_services` gives the request opener: shared under DATA_DIR/replay, or in-process."""
    if shared:
        return SharedReplayCache(replay_dir(data_dir), window_s, max_entries, clock)
    return ReplayCache(window_s, max_entries, clock)


def bench(directory: Path, count: int = 20_000) -> dict[str, float]:
    """Microseconds per check of fresh ids, in-process vs shared, in one run (the module docstring's numbers)."""
    now = int(time.time())
    results = {}
    for label, cache in (
        ("in_process_us", ReplayCache(300.0, count + 1)),
        ("shared_us", SharedReplayCache(Path(directory), 300.0, count + 1)),
    ):
        ids = [secrets.token_bytes(16) for _ in range(count)]
        started = time.perf_counter()
        for request_id in ids:
            cache.check_and_remember("t_0123456789abcdef", request_id, now)
        results[label] = (time.perf_counter() - started) / count * 1e6
    return results


if __name__ == "__main__":
    import json
    import sys

    sys.stdout.write(json.dumps(bench(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 20_000)) + "\n")
