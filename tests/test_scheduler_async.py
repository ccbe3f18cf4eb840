"""The asyncio scheduler with real worker threads and tiny jobs: results and errors per item, batching,
cancellation, admission errors, the tenant-switch scrub (and its failure), shutdown, metrics."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from cleanroom.errors import DeviceQuarantined, RequestTimeout, ServiceUnavailable, TooManyRequests
from cleanroom.runtime.scheduler import (
    Scheduler,
    SchedulerConfig,
    SchedulerMetrics,
    TenantLimits,
    cpu_devices,
)

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout=20))  # type: ignore[arg-type]


class Doubler:
    """A tiny model: doubles ints; "bad" fails alone; a gate holds the worker to build up a queue."""

    def __init__(self, max_batch_size: int = 8, job_s: float = 0.0) -> None:
        self.max_batch_size = max_batch_size
        self.job_s = job_s
        self.gate = threading.Event()
        self.gate.set()
        self.batches: list[tuple[str, str, list[Any], str]] = []
        self.cleaned: list[Any] = []
        self.fail_batch: Exception | None = None

    def run(self, device: str, tenant_id: str, items: Sequence[Any]) -> list[Any]:
        self.batches.append((device, tenant_id, list(items), threading.current_thread().name))
        try:
            self.gate.wait(10)
            if self.job_s:
                time.sleep(self.job_s)
            if self.fail_batch is not None:
                raise self.fail_batch
            return [ValueError(f"bad item for {tenant_id}") if x == "bad" else x * 2 for x in items]
        finally:
            self.cleaned.extend(items)  # stands for zeroing the batch's plaintext: runs on every path

    def saw(self, item: Any) -> bool:
        return any(item in items for _, _, items, _ in self.batches)


@dataclass
class Scrub:
    bytes_scrubbed: int


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.002)


def queued(scheduler: Scheduler, tenant: str) -> int:
    stats = scheduler.stats()[0].get(tenant)
    return 0 if stats is None else stats.queued


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_results_and_per_item_errors_on_a_worker_thread() -> None:
    async def main() -> None:
        model = Doubler()
        async with Scheduler(SchedulerConfig(), cpu_devices(2)) as scheduler:
            results = await asyncio.gather(
                *(scheduler.submit("a", "m", i, runner=model) for i in range(10)),
                scheduler.submit("a", "m", "bad", runner=model),
                return_exceptions=True,
            )
        assert results[:10] == [i * 2 for i in range(10)]
        assert isinstance(results[10], ValueError)
        loop_thread = threading.current_thread().name
        assert all(name.startswith("cleanroom-worker-cpu:") and name != loop_thread for _, _, _, name in model.batches)

    run(main())


def test_a_failing_batch_fails_each_of_its_requests_and_cleans_up() -> None:
    async def main() -> None:
        model = Doubler()
        model.fail_batch = RuntimeError("model crashed")
        async with Scheduler(SchedulerConfig(), ["cpu:0"]) as scheduler:
            results = await asyncio.gather(
                *(scheduler.submit("a", "m", i, runner=model) for i in range(3)), return_exceptions=True
            )
        assert all(isinstance(r, RuntimeError) and "crashed" in str(r) for r in results)
        assert sorted(model.cleaned) == [0, 1, 2]

    run(main())


def test_queued_requests_of_a_tenant_go_in_one_batch_and_tenants_never_mix() -> None:
    async def main() -> None:
        model = Doubler(max_batch_size=16)
        async with Scheduler(SchedulerConfig(shared_batch_cost_factor=None), ["cpu:0"]) as scheduler:
            model.gate.clear()
            first = asyncio.ensure_future(scheduler.submit("a", "m", 100, runner=model))
            await until(lambda: len(model.batches) == 1)
            rest = [
                asyncio.ensure_future(scheduler.submit(t, "m", i, runner=model)) for i in range(12) for t in ("b", "c")
            ]
            await asyncio.sleep(0.02)
            model.gate.set()
            await asyncio.gather(first, *rest)
        for _, _, items, _ in model.batches:
            assert len(items) <= 16
        per_tenant = {tenant: len(items) for _, tenant, items, _ in model.batches[1:]}
        assert per_tenant == {"b": 12, "c": 12}  # each tenant's queue in one forward pass, never mixed
        assert {tenant for _, tenant, items, _ in model.batches if set(items) & set(range(12))} == {"b", "c"}

    run(main())


def test_a_cancelled_submitter_removes_its_queued_request() -> None:
    async def main() -> None:
        registry = CollectorRegistry()
        model = Doubler()
        async with Scheduler(SchedulerConfig(), ["cpu:0"], SchedulerMetrics.create(registry)) as scheduler:
            model.gate.clear()
            running = asyncio.ensure_future(scheduler.submit("a", "m", 1, runner=model))
            await until(lambda: len(model.batches) == 1)
            victim = asyncio.ensure_future(scheduler.submit("b", "m", 77, runner=model))
            await until(lambda: queued(scheduler, "b") == 1)
            victim.cancel()  # the client disconnected
            with pytest.raises(asyncio.CancelledError):
                await victim
            assert queued(scheduler, "b") == 0
            model.gate.set()
            assert await running == 2
            assert await scheduler.submit("b", "m", 5, runner=model) == 10
        assert not model.saw(77)
        assert metric(registry, "cleanroom_scheduler_cancelled_total", tenant_id="b") == 1

    run(main())


def test_a_cancelled_submitter_of_a_running_request_lets_the_job_finish_its_cleanup() -> None:
    async def main() -> None:
        model = Doubler()
        async with Scheduler(SchedulerConfig(), ["cpu:0"]) as scheduler:
            model.gate.clear()
            task = asyncio.ensure_future(scheduler.submit("a", "m", 9, runner=model))
            await until(lambda: len(model.batches) == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert model.cleaned == []  # still running
            model.gate.set()
            await until(lambda: model.cleaned == [9])
            assert await scheduler.submit("a", "m", 1, runner=model) == 2  # the worker is free again

    run(main())


def test_admission_errors_through_submit() -> None:
    async def main() -> None:
        registry = CollectorRegistry()
        model = Doubler(max_batch_size=1)
        config = SchedulerConfig(default_limits=TenantLimits(max_queued=1, queue_timeout_s=0.15), max_total_queued=3)
        async with Scheduler(config, ["cpu:0"], SchedulerMetrics.create(registry)) as scheduler:
            model.gate.clear()
            blocker = asyncio.ensure_future(scheduler.submit("a", "m", 0, runner=model))
            await until(lambda: len(model.batches) == 1)
            waiting = asyncio.ensure_future(scheduler.submit("a", "m", 1, runner=model))
            await until(lambda: queued(scheduler, "a") == 1)
            with pytest.raises(TooManyRequests) as too_many:
                await scheduler.submit("a", "m", 2, runner=model)
            assert too_many.value.retry_after_s is not None and "Retry-After" in too_many.value.headers()
            others = [asyncio.ensure_future(scheduler.submit(t, "m", 3, runner=model)) for t in ("b", "c")]
            await until(lambda: sum(queued(scheduler, t) for t in "abcd") == 3)
            with pytest.raises(ServiceUnavailable) as overloaded:
                await scheduler.submit("d", "m", 4, runner=model)
            assert overloaded.value.code == "overloaded" and overloaded.value.retry_after_s is not None
            with pytest.raises(RequestTimeout, match="waited"):
                await waiting  # the device stays busy past the 0.15 s queue timeout
            for task in others:
                with pytest.raises(RequestTimeout):
                    await task
            model.gate.set()
            assert await blocker == 0
        assert not model.saw(1)
        rejects = {
            reason: metric(registry, "cleanroom_scheduler_rejects_total", tenant_id=t, reason=reason)
            for t, reason in (("a", "tenant_queue_full"), ("d", "overloaded"), ("a", "queue_timeout"))
        }
        assert rejects == {"tenant_queue_full": 1, "overloaded": 1, "queue_timeout": 1}

    run(main())


def test_scrub_runs_only_when_the_device_changes_tenant() -> None:
    async def main() -> None:
        registry = CollectorRegistry()
        calls: list[tuple[str, str | None, str, str]] = []

        def scrub(device: str, old: str | None, new: str) -> Scrub:
            calls.append((device, old, new, threading.current_thread().name))
            return Scrub(bytes_scrubbed=4096)

        model = Doubler(max_batch_size=1)
        async with Scheduler(
            SchedulerConfig(), ["cpu:0"], SchedulerMetrics.create(registry), on_tenant_switch=scrub
        ) as scheduler:
            for tenant in ("a", "a", "b", "b", "a"):
                await scheduler.submit(tenant, "m", 1, runner=model)
        assert [(old, new) for _, old, new, _ in calls] == [("a", "b"), ("b", "a")]
        assert all(name.startswith("cleanroom-worker-") for _, _, _, name in calls)
        assert metric(registry, "cleanroom_scheduler_scrubs_total", device="cpu:0", tenant_id="b") == 1
        assert metric(registry, "cleanroom_scheduler_scrub_bytes_total", device="cpu:0", tenant_id="a") == 4096
        assert metric(registry, "cleanroom_scheduler_tenant_switches_total", device="cpu:0", tenant_id="a") == 1
        assert metric(registry, "cleanroom_scheduler_scrub_seconds_count", device="cpu:0") == 2

    run(main())


def test_anticipation_holds_reach_prometheus() -> None:
    """The pure policy core counts the times it held a free device for its current tenant; the async
    scheduler must export exactly the new ones on each pass (no double counting across passes)."""

    async def main() -> None:
        registry = CollectorRegistry()
        model = Doubler(max_batch_size=1)
        async with Scheduler(SchedulerConfig(), ["cpu:0"], SchedulerMetrics.create(registry)) as scheduler:
            await scheduler.submit("a", "m", 1, runner=model)
            device = scheduler._core.devices["cpu:0"]
            counted = device.holds
            device.holds += 3  # as if the policy had held the device three times
            await scheduler.submit("a", "m", 2, runner=model)
            assert metric(registry, "cleanroom_scheduler_anticipation_holds_total", device="cpu:0") == counted + 3
            await scheduler.submit("a", "m", 3, runner=model)
            assert metric(registry, "cleanroom_scheduler_anticipation_holds_total", device="cpu:0") == device.holds

    run(main())


def test_a_failed_scrub_fails_closed_and_is_retried_before_the_next_batch() -> None:
    async def main() -> None:
        failures = [RuntimeError("verify found non-zero bytes")]
        calls: list[tuple[str | None, str]] = []

        def scrub(device: str, old: str | None, new: str) -> int:
            calls.append((old, new))
            if failures:
                raise failures.pop()
            return 0

        model = Doubler(max_batch_size=1)
        async with Scheduler(SchedulerConfig(), ["cpu:0"], on_tenant_switch=scrub) as scheduler:
            await scheduler.submit("a", "m", 1, runner=model)
            with pytest.raises(RuntimeError, match="non-zero"):
                await scheduler.submit("b", "m", 50, runner=model)
            assert not model.saw(50)  # b never ran on the unscrubbed device
            assert scheduler.stats()[1]["cpu:0"].current_tenant == "a"
            assert await scheduler.submit("b", "m", 51, runner=model) == 102
        assert calls == [("a", "b"), ("a", "b")]

    run(main())


def test_a_quarantined_device_takes_no_more_work() -> None:
    async def main() -> None:
        def scrub(device: str, old: str | None, new: str) -> int:
            raise DeviceQuarantined(f"device {device} is quarantined: scrub verification failed")

        model = Doubler(max_batch_size=1)
        registry = CollectorRegistry()
        async with Scheduler(
            SchedulerConfig(), ["cpu:0"], SchedulerMetrics.create(registry), on_tenant_switch=scrub
        ) as scheduler:
            model.gate.clear()
            first = asyncio.ensure_future(scheduler.submit("a", "m", 1, runner=model))
            await until(lambda: len(model.batches) == 1)
            switching = asyncio.ensure_future(scheduler.submit("b", "m", 2, runner=model))
            stranded = asyncio.ensure_future(scheduler.submit("c", "m", 3, runner=model))
            await until(lambda: queued(scheduler, "c") == 1)
            model.gate.set()
            assert await first == 2
            with pytest.raises(DeviceQuarantined):
                await switching
            with pytest.raises(ServiceUnavailable) as no_device:
                await stranded
            assert no_device.value.code == "no_device_available"
            with pytest.raises(ServiceUnavailable):
                await scheduler.submit("a", "m", 4, runner=model)
        assert metric(registry, "cleanroom_scheduler_device_quarantined", device="cpu:0") == 1

    run(main())


def test_shutdown_drains_queued_and_running_work() -> None:
    async def main() -> None:
        model = Doubler(max_batch_size=2, job_s=0.01)
        scheduler = Scheduler(SchedulerConfig(), ["cpu:0"])
        await scheduler.start()
        tasks = [asyncio.ensure_future(scheduler.submit(t, "m", i, runner=model)) for i in range(6) for t in "ab"]
        await asyncio.sleep(0.005)
        report = await scheduler.shutdown(deadline_s=5.0)
        assert report.drained and report.cancelled_queued == 0 and report.abandoned_running == 0
        assert report.completed == 12 and [await t for t in tasks] == [i * 2 for i in range(6) for _ in "ab"]
        with pytest.raises(ServiceUnavailable) as refused:
            await scheduler.submit("a", "m", 1, runner=model)
        assert refused.value.code == "shutting_down"

    run(main())


def test_shutdown_past_its_deadline_cancels_the_rest_cleanly() -> None:
    async def main() -> None:
        registry = CollectorRegistry()
        model = Doubler(max_batch_size=1)
        scheduler = Scheduler(SchedulerConfig(), ["cpu:0"], SchedulerMetrics.create(registry))
        await scheduler.start()
        model.gate.clear()
        running = asyncio.ensure_future(scheduler.submit("a", "m", 1, runner=model))
        await until(lambda: len(model.batches) == 1)
        waiting = [asyncio.ensure_future(scheduler.submit("b", "m", i, runner=model)) for i in range(3)]
        await until(lambda: queued(scheduler, "b") == 3)
        started = time.monotonic()
        report = await scheduler.shutdown(deadline_s=0.1)
        assert time.monotonic() - started < 2.0
        assert not report.drained and report.cancelled_queued == 3 and report.abandoned_running == 1
        for task in [running, *waiting]:
            with pytest.raises(ServiceUnavailable, match="shutting down"):
                await task
        model.gate.set()
        await until(lambda: model.cleaned == [1])  # the abandoned job still ran its cleanup
        assert [items for _, _, items, _ in model.batches] == [[1]]  # none of b's requests ran
        assert metric(registry, "cleanroom_scheduler_rejects_total", tenant_id="b", reason="shutting_down") == 3

    run(main())


def test_weighted_shares_with_real_threads() -> None:
    async def main() -> None:
        model = Doubler(max_batch_size=1, job_s=0.002)
        async with Scheduler(SchedulerConfig(), ["cpu:0"]) as scheduler:
            scheduler.set_weight("a", 1.0)
            scheduler.set_weight("b", 3.0)
            stop = time.monotonic() + 0.8

            async def client(tenant: str) -> None:
                while time.monotonic() < stop:
                    await scheduler.submit(tenant, "m", 1, runner=model)

            await asyncio.gather(*(client(t) for t in "ab" for _ in range(6)))
            tenants, _ = scheduler.stats()
        share_b = tenants["b"].service_s / (tenants["a"].service_s + tenants["b"].service_s)
        assert 0.65 <= share_b <= 0.85, share_b  # 0.75 by weight; real threads, real jitter

    run(main())


def test_metrics_exposition_and_misuse() -> None:
    registry = CollectorRegistry()
    metrics = SchedulerMetrics.create(registry)

    async def main() -> None:
        scheduler = Scheduler(SchedulerConfig(), ["cpu:0"], metrics)
        with pytest.raises(RuntimeError, match="start"):
            await scheduler.submit("a", "m", 1, runner=Doubler())
        await scheduler.start()
        with pytest.raises(RuntimeError):
            await scheduler.start()
        scheduler.set_weight("a", 2.0)
        scheduler.set_limits("a", TenantLimits(max_queued=5))
        assert await scheduler.submit("a", "m", 1, runner=Doubler()) == 2
        await scheduler.shutdown(1.0)

    run(main())
    text = generate_latest(registry).decode()
    for name in (
        "cleanroom_scheduler_queue_depth",
        "cleanroom_scheduler_wait_seconds_bucket",
        "cleanroom_scheduler_service_seconds_bucket",
        "cleanroom_scheduler_served_seconds_total",
        "cleanroom_scheduler_batch_size_bucket",
        "cleanroom_scheduler_tenant_weight",
    ):
        assert name in text
    assert metric(registry, "cleanroom_scheduler_tenant_weight", tenant_id="a") == 2.0
    assert metric(registry, "cleanroom_scheduler_queue_depth", tenant_id="a") == 0.0
    with pytest.raises(ValueError):
        cpu_devices(0)


def test_a_tenant_with_more_queued_gets_its_next_batch_before_the_answers_go_out() -> None:
    # The device is not left idle while the loop resolves the finished batch's submitters: by the time the
    # first submitter resumes, the tenant's next batch is already on the device.
    async def main() -> None:
        runner = Doubler(max_batch_size=1)
        runner.gate.clear()
        async with Scheduler(SchedulerConfig(), cpu_devices(1)) as scheduler:
            seen: list[int] = []

            async def submit_and_look() -> int:
                result = await scheduler.submit("a", "m", 1, runner=runner)
                seen.append(queued(scheduler, "a"))  # in the submitter's own turn, right after its answer
                return result

            first = asyncio.ensure_future(submit_and_look())
            await until(lambda: len(runner.batches) == 1)
            second = asyncio.ensure_future(scheduler.submit("a", "m", 2, runner=runner))
            await until(lambda: queued(scheduler, "a") == 1)
            runner.gate.set()
            assert await first == 2
            assert seen == [0]  # the second request had left the queue for the device before the first answer
            assert await second == 4

    run(main())
