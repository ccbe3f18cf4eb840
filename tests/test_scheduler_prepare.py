"""Preparing a batch ahead (runtime/batching.py `prepares_ahead`): a busy device is handed its tenant's next
batch shortly before the running one is expected to end, so that the batch's host-side work (for sealed
requests: HPKE, audit record, decryption) overlaps the forward pass. Policy on explicit clock readings;
the asyncio plumbing with real threads; the sealed-request runner's two phases."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cleanroom.errors import DeviceQuarantined
from cleanroom.runtime.admission import TenantLimits
from cleanroom.runtime.batching import LOOKAHEAD_SHARE, lookahead_window, prepares_ahead
from cleanroom.runtime.fairness import jain_index
from cleanroom.runtime.scheduler import Scheduler, SchedulerConfig
from cleanroom.runtime.scheduler_core import SchedulerCore
from cleanroom.runtime.scheduler_sim import LinearCost, SimRunner, Simulation, percentile

T = TypeVar("T")


@dataclass
class PreparingRunner:
    """What the core reads of a runner that prepares ahead (the core never calls it)."""

    max_batch_size: int = 4
    prepare_ahead: bool = True

    def prepare(self, device: str, tenant_id: str, items: Sequence[object]) -> Any:
        raise AssertionError("the core never prepares")

    def run(self, device: str, tenant_id: str, items: Sequence[object]) -> Sequence[object]:
        raise AssertionError("the core never runs")


def warmed_core(runner: PreparingRunner, **config: object) -> tuple[SchedulerCore, float]:
    """A core that measured one full batch of tenant "a": 100 ms, 10 of them preparing. Returns (core, now)."""
    c = SchedulerCore(SchedulerConfig(**config), ["d0"])  # type: ignore[arg-type]
    for _ in range(runner.max_batch_size):
        c.admit("a", "m", None, runner, 0.0)
    [batch] = c.dispatch(0.0)
    c.complete(batch, 0.1, 0.1, prepare_s=0.01)
    return c, 0.1


def test_the_next_batch_of_the_running_tenant_is_handed_over_shortly_before_the_running_one_ends() -> None:
    runner = PreparingRunner()
    c, now = warmed_core(runner)
    for _ in range(3):
        c.admit("a", "m", None, runner, now)
    [running] = c.dispatch(now)
    assert not running.ahead and len(running.requests) == 3
    device = c.devices["d0"]
    expected_s = c.costs.estimate("m", 3)  # prepared on the device: the whole estimate
    assert device.expected_end == pytest.approx(now + expected_s)
    for _ in range(2):
        c.admit("a", "m", None, runner, now + 0.001)
    assert c.dispatch(now + 0.002) == []  # far from its end: the requests that come meanwhile join the next batch
    start, _ = lookahead_window(device.expected_end, expected_s, c.prepare_costs.estimate("m", 2))
    assert start < device.expected_end - LOOKAHEAD_SHARE * expected_s + 1e-9
    assert c.next_wake(now + 0.002) == pytest.approx(start)  # the driver comes back then
    c.admit("a", "m", None, runner, start - 0.001)
    [ahead] = c.dispatch(start)
    assert ahead.ahead and ahead.tenant_id == "a" and len(ahead.requests) == 3
    assert not ahead.tenant_switch and not ahead.needs_scrub
    assert device.busy and device.ahead is ahead and c.tenant("a").running == 6
    assert c.dispatch(start + 0.001) == []  # one batch ahead at most
    # The running batch ends: the one prepared ahead runs now, the device stays busy.
    c.complete(running, 0.08, start + 0.01, prepare_s=0.008)
    assert device.busy and device.running is ahead and device.ahead is None
    assert c.tenant("a").running == 3
    assert device.expected_end < start + 0.01 + c.costs.estimate("m", 3)  # its preparation is done
    c.complete(ahead, 0.07, start + 0.08, prepare_s=0.008)
    assert not device.busy and c.idle


def test_a_full_queue_is_handed_over_at_once() -> None:
    runner = PreparingRunner(max_batch_size=2)
    c, now = warmed_core(runner)
    for _ in range(4):
        c.admit("a", "m", None, runner, now)
    first, second = c.dispatch(now)  # nothing more to wait for: the second batch is prepared meanwhile
    assert not first.ahead and second.ahead and len(first.requests) == len(second.requests) == 2


@pytest.mark.parametrize(
    "case",
    [
        "nothing in the way",
        "another tenant is due",
        "a light tenant is around",
        "runner cannot prepare ahead",
        "turned off",
        "scrub before the running batch",
        "shutting down",
    ],
)
def test_no_batch_is_handed_over_ahead_when(case: str) -> None:
    runner = PreparingRunner(max_batch_size=2, prepare_ahead=case != "runner cannot prepare ahead")
    c, now = warmed_core(
        runner,
        fairness_bound_s=0.0,
        latency_bound_s=0.0,
        scrub_on_first_use=True,
        prepare_ahead=case != "turned off",
    )
    if case == "scrub before the running batch":
        c.devices["d0"].current_tenant = None  # the next batch is a first use: scrubbed first
    for _ in range(3):
        c.admit("a", "m", None, runner, now)
    [running] = c.dispatch(now)
    assert not running.ahead and running.needs_scrub == (case == "scrub before the running batch")
    if case == "another tenant is due":
        c.admit("b", "m", None, runner, now)
        b = c.tenant("b")
        b.counter = c.tenant("a").counter - 1.0  # a's next batch would not be the fair choice
        b.recent_service_s, b.recent_at = 1.0, now  # and b is a heavy tenant (not light: see the next case)
    if case == "a light tenant is around":
        c.tenant("b").last_arrival_at = now  # sent a request lately, served nothing lately: light
    if case == "shutting down":
        c.begin_shutdown()
    at = c.devices["d0"].expected_end  # inside the window
    batches = c.dispatch(at)
    if case == "nothing in the way":
        assert [b.ahead for b in batches] == [True]
        return
    assert batches == [] and c.devices["d0"].ahead is None
    wake = c.next_wake(now)
    if case == "another tenant is due":  # the driver comes back at the window, and the answer is the same
        assert wake is not None and c.dispatch(wake) == [] and c.next_wake(wake) != wake
    else:
        assert wake is None or wake >= now + 30  # only queue timeouts: no lookahead to come back for


def test_nothing_is_handed_over_ahead_before_a_preparation_was_measured() -> None:
    runner = PreparingRunner(max_batch_size=2)
    c = SchedulerCore(SchedulerConfig(), ["d0"])
    for _ in range(4):
        c.admit("a", "m", None, runner, 0.0)
    [first] = c.dispatch(0.0)
    assert c.dispatch(0.0) == [] and c.next_wake(0.0) is not None  # only the queue timeout
    c.complete(first, 0.1, 0.1)  # measured without `prepare_s`: still unknown
    [second] = c.dispatch(0.1)
    assert not second.ahead and c.dispatch(0.1) == []


def test_a_batch_that_overran_its_estimate_by_far_gets_nothing_ahead() -> None:
    """A model stuck on something (a hold, a slow device) is not predictable, and a request handed over ahead
    could no longer be cancelled by its client: nothing is handed over past the window."""
    runner = PreparingRunner()
    c, now = warmed_core(runner)
    c.admit("a", "m", None, runner, now)
    [running] = c.dispatch(now)
    expected_s = c.costs.estimate("m", 1)
    late = now + 3 * expected_s
    c.admit("a", "m", None, runner, late)
    assert c.dispatch(late) == []
    c.complete(running, 3 * expected_s, late + 0.001, prepare_s=0.003)
    [next_batch] = c.dispatch(late + 0.001)
    assert not next_batch.ahead


def test_a_sim_runner_is_never_prepared_ahead() -> None:
    assert not prepares_ahead(SimRunner(max_batch_size=4))
    assert prepares_ahead(SimRunner(max_batch_size=4, prepare_per_item_s=0.001))
    assert prepares_ahead(PreparingRunner())
    assert not prepares_ahead(PreparingRunner(prepare_ahead=False))


# --- the simulation: what preparing ahead buys, and that the policy still holds ------------------------------
ROOMY = TenantLimits(max_queued=100_000, max_in_flight=100_000, queue_timeout_s=1e9)


def sim_run(prepare_ahead: bool, *, weights: tuple[float, ...] = (1.0,), clients: int = 32) -> Simulation:
    """Tenants t0.. with `clients` closed-loop clients each (they come back 5-30 ms after an answer), a model
    with minilm-like costs (10 ms + 3 ms a request, preparing 0.6 ms a request), batches of up to 16."""
    sim = Simulation(SchedulerConfig(default_limits=ROOMY), LinearCost(0.010, 0.003), scrub_s=0.0005)
    sim.model("m", 16, prepare_per_item_s=0.0006, prepare_ahead=prepare_ahead)
    rng = random.Random(7)
    for i, weight in enumerate(weights):
        sim.core.set_weight(f"t{i}", weight)
        sim.closed_loop(f"t{i}", "m", clients, think_s=lambda: rng.uniform(0.005, 0.03))
    sim.run(20.0)
    return sim


def test_preparing_ahead_keeps_the_device_busy_and_serves_more() -> None:
    inline, ahead = sim_run(False), sim_run(True)
    assert inline.core.devices["sim:0"].aheads == 0
    assert ahead.core.devices["sim:0"].aheads > 0.5 * len(ahead.batches)
    # The device time of a request is its preparation (~0.6 ms) less: ~0.6 / (0.6 + 3 + 10 / ~16).
    assert ahead.completed() > 1.08 * inline.completed()
    # Nobody waited longer for it: a request handed over ahead still waits for the batch before it.
    assert percentile(ahead.latencies("t0"), 99) <= 1.05 * percentile(inline.latencies("t0"), 99)


@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.0, 3.0)])
def test_preparing_ahead_keeps_the_weighted_shares(weights: tuple[float, float]) -> None:
    sim = sim_run(True, weights=weights, clients=24)
    got = sim.service_s(5.0, 20.0)
    total = sum(got.values())
    for i, weight in enumerate(weights):
        expected = weight / sum(weights)
        assert abs(got[f"t{i}"] / total - expected) <= 0.05 * expected, (got, expected)


def test_eight_equal_tenants_stay_fair_and_take_turns() -> None:
    """Backlogged equal tenants take turns (the fair choice rotates), so a tenant's next batch is seldom its
    device's next: little is prepared ahead, and nothing changes for fairness."""
    sim = sim_run(True, weights=(1.0,) * 8, clients=6)
    assert jain_index(list(sim.service_s(5.0, 20.0).values())) >= 0.99
    assert sim.core.devices["sim:0"].aheads <= 0.05 * len(sim.batches)


# --- the asyncio scheduler with real threads -----------------------------------------------------------------
def run(coro: Awaitable[T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout=20))


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.002)


@dataclass
class Prepared:
    runner: TwoPhase
    items: list[Any]
    runs: int = 0
    released: bool = False

    def run(self) -> list[Any]:
        self.runs += 1
        self.runner.ran.append((list(self.items), threading.current_thread().name))
        try:
            self.runner.gate.wait(10)
            if self.runner.quarantine_on is not None and self.runner.quarantine_on in self.items:
                raise DeviceQuarantined("scrub verification failed")
            return [x * 2 for x in self.items]
        finally:
            self.discard()

    def discard(self) -> None:
        if not self.released:  # once: a no-op after run
            self.released = True
            self.runner.released.extend(self.items)  # stands for zeroing the batch's plaintext


@dataclass
class TwoPhase:
    """A runner that prepares (on whichever thread the scheduler picks) and runs the prepared batch."""

    max_batch_size: int = 2
    prepare_ahead: bool = True
    gate: threading.Event = field(default_factory=threading.Event)
    prepared: list[tuple[Prepared, str]] = field(default_factory=list)
    ran: list[tuple[list[Any], str]] = field(default_factory=list)
    released: list[Any] = field(default_factory=list)
    fail_prepare_on: Any = None
    quarantine_on: Any = None

    def prepare(self, device: str, tenant_id: str, items: Sequence[Any]) -> Prepared:
        if self.fail_prepare_on is not None and self.fail_prepare_on in items:
            raise ValueError("could not open")
        batch = Prepared(self, list(items))
        self.prepared.append((batch, threading.current_thread().name))
        return batch

    def run(self, device: str, tenant_id: str, items: Sequence[Any]) -> list[Any]:
        return self.prepare(device, tenant_id, items).run()


async def warm(scheduler: Scheduler, runner: TwoPhase) -> None:
    runner.gate.set()
    assert await scheduler.submit("a", "m", 0, runner=runner) == 0  # a preparation measured
    runner.gate.clear()
    runner.prepared.clear()
    runner.ran.clear()
    runner.released.clear()


def test_the_next_batch_is_prepared_on_its_own_thread_while_the_device_runs_the_first() -> None:
    async def main() -> None:
        runner = TwoPhase()
        async with Scheduler(SchedulerConfig(), ["cpu:0"]) as scheduler:
            await warm(scheduler, runner)
            answers = asyncio.gather(*(scheduler.submit("a", "m", i, runner=runner) for i in range(1, 5)))
            # The first batch holds the device (gate closed) until the second has been prepared beside it.
            await until(lambda: len(runner.prepared) == 2)
            assert [items for items, _ in runner.ran] == [[1, 2]]
            threads = {tuple(batch.items): name for batch, name in runner.prepared}
            first_thread, second_thread = threads[(1, 2)], threads[(3, 4)]
            second = next(batch for batch, _ in runner.prepared if batch.items == [3, 4])
            assert first_thread.startswith("cleanroom-worker-cpu:0")  # the device was free: prepared there
            assert second_thread.startswith("cleanroom-prepare-cpu:0") and second.runs == 0
            runner.gate.set()
            assert await answers == [2, 4, 6, 8]
            assert [items for items, _ in runner.ran] == [[1, 2], [3, 4]]
            assert all(name.startswith("cleanroom-worker-cpu:0") for _, name in runner.ran)
            assert sorted(runner.released) == [1, 2, 3, 4]

    run(main())


def test_a_batch_prepared_ahead_is_released_when_shutdown_abandons_it() -> None:
    async def main() -> None:
        runner = TwoPhase()
        scheduler = Scheduler(SchedulerConfig(), ["cpu:0"])
        await scheduler.start()
        await warm(scheduler, runner)
        answers = asyncio.gather(
            *(scheduler.submit("a", "m", i, runner=runner) for i in range(1, 5)), return_exceptions=True
        )
        await until(lambda: len(runner.prepared) == 2)
        report = await scheduler.shutdown(0.05)  # the first batch is still on the device
        assert not report.drained and report.abandoned_running == 4
        results = await answers
        assert all(getattr(r, "code", None) == "shutting_down" for r in results)
        await until(lambda: sorted(runner.released) == [3, 4])  # prepared, never run, zeroed
        runner.gate.set()
        await until(lambda: sorted(runner.released) == [1, 2, 3, 4])  # the running one cleans up itself
        assert [items for items, _ in runner.ran] == [[1, 2]]

    run(main())


def test_a_batch_prepared_behind_one_that_quarantined_the_device_never_runs() -> None:
    async def main() -> None:
        runner = TwoPhase(quarantine_on=1)
        async with Scheduler(SchedulerConfig(), ["cpu:0"]) as scheduler:
            await warm(scheduler, runner)
            answers = asyncio.gather(
                *(scheduler.submit("a", "m", i, runner=runner) for i in range(1, 5)), return_exceptions=True
            )
            await until(lambda: len(runner.prepared) == 2)
            runner.gate.set()
            results = await answers
            assert all(isinstance(r, DeviceQuarantined) for r in results)
            assert [items for items, _ in runner.ran] == [[1, 2]]  # the second batch never ran
            assert sorted(runner.released) == [1, 2, 3, 4]
            assert scheduler.stats()[1]["cpu:0"].quarantined

    run(main())


def test_a_failed_preparation_fails_its_batch_alone() -> None:
    async def main() -> None:
        runner = TwoPhase(fail_prepare_on=3)
        async with Scheduler(SchedulerConfig(), ["cpu:0"]) as scheduler:
            await warm(scheduler, runner)
            answers = asyncio.gather(
                *(scheduler.submit("a", "m", i, runner=runner) for i in range(1, 5)), return_exceptions=True
            )
            await until(lambda: len(runner.ran) == 1)
            runner.gate.set()
            first, second, third, fourth = await answers
            assert (first, second) == (2, 4)
            assert isinstance(third, ValueError) and isinstance(fourth, ValueError)
            assert await scheduler.submit("a", "m", 5, runner=runner) == 10

    run(main())


def test_a_queued_request_of_a_client_that_went_away_is_not_prepared_ahead() -> None:
    """Cancellation keeps its meaning: a request still queued when its client goes away never runs; one
    handed over ahead counts as running (it finishes, its answer is dropped)."""

    async def main() -> None:
        runner = TwoPhase(max_batch_size=8)
        async with Scheduler(SchedulerConfig(), ["cpu:0"]) as scheduler:
            await warm(scheduler, runner)
            first = asyncio.ensure_future(scheduler.submit("a", "m", 1, runner=runner))
            await until(lambda: len(runner.ran) == 1)
            gone = asyncio.ensure_future(scheduler.submit("a", "m", 2, runner=runner))
            await asyncio.sleep(0)
            gone.cancel()
            runner.gate.set()
            assert await first == 2
            assert await scheduler.submit("a", "m", 3, runner=runner) == 6
            assert all(2 not in batch.items for batch, _ in runner.prepared)

    run(main())


# --- the sealed-request runner's two phases ------------------------------------------------------------------
def test_sealed_batch_prepared_on_one_thread_runs_on_another_and_discard_zeroes(data_dir: Path) -> None:
    from cleanroom.client import Client
    from cleanroom.config import Settings
    from cleanroom.runtime.batch_runner import SealedBatchRunner, SealedItem
    from cleanroom.runtime.models import EchoModel, ModelRegistry
    from cleanroom.runtime.session import CallContext
    from cleanroom.scrubbers.base import ScrubPolicy
    from cleanroom.server.services import build_services

    model = EchoModel()
    services = build_services(Settings(data_dir=data_dir, models=["echo"]), models=ModelRegistry({"echo": model}))
    try:
        created = services.tenants.create("acme")
        principal = services.tenants.authenticate(created.api_key, source="127.0.0.1")
        call = CallContext(principal=principal, model="echo", source="127.0.0.1")
        client = Client(
            "http://unused",
            api_key=created.api_key,
            public_key=services.tenants.public_key(created.tenant_id)["public_key"],
        )
        runner = SealedBatchRunner(services.runtime.opener, model, ScrubPolicy())
        assert prepares_ahead(runner)
        assert not prepares_ahead(SealedBatchRunner(services.runtime.opener, model, ScrubPolicy(mode="per_request")))

        sealed = [client.seal_request("echo", f"item {i}".encode()) for i in range(3)]
        holder: dict[str, Any] = {}
        thread = threading.Thread(
            target=lambda: holder.setdefault(
                "p", runner.prepare("cpu:0", created.tenant_id, [SealedItem(call, s.body) for s in sealed])
            )
        )
        thread.start()
        thread.join()
        results = holder["p"].run()
        assert [s.open_response(bytes(r)) for s, r in zip(sealed, results, strict=True)] == [
            b"item 0",
            b"item 1",
            b"item 2",
        ]
        holder["p"].discard()  # after run: nothing left to do
        with pytest.raises(RuntimeError, match="once"):
            holder["p"].run()

        unrun = [client.seal_request("echo", b"never run") for _ in range(2)]
        prepared = runner.prepare("cpu:0", created.tenant_id, [SealedItem(call, s.body) for s in unrun])
        payloads = [request.payload for _, request in prepared._opened]
        assert payloads and not any(p.closed for p in payloads)
        prepared.discard()
        assert all(p.closed for p in payloads)  # zeroed and released without running
    finally:
        services.close()
