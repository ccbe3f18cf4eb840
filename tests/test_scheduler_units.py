"""Units of the scheduler on explicit clock readings: admission errors and their Retry-After, token
bucket, queue timeout, cancellation, shutdown, batch readiness, the cost model and the fairness rules."""

from __future__ import annotations

import itertools
import math
from collections import deque

import pytest

from cleanroom.errors import RequestTimeout, ServiceUnavailable, TooManyRequests
from cleanroom.runtime.admission import TenantLimits, TokenBucket, bucket_for, clamp_retry
from cleanroom.runtime.batching import ArrivalGap, BatchCostModel, QueuedRequest, ready_at, take_batch
from cleanroom.runtime.fairness import Candidate, choose_fair, choose_fifo, jain_index, lifted_counter
from cleanroom.runtime.scheduler_core import SchedulerConfig, SchedulerCore
from cleanroom.runtime.scheduler_sim import SimRunner

RUNNER = SimRunner(max_batch_size=4)
ONE = SimRunner(max_batch_size=1)


def core(devices: int = 1, **config: object) -> SchedulerCore:
    return SchedulerCore(SchedulerConfig(**config), [f"d{i}" for i in range(devices)])  # type: ignore[arg-type]


# --- admission --------------------------------------------------------------------------------------------
def test_tenant_queue_limit_is_a_429_with_retry_after() -> None:
    c = core(default_limits=TenantLimits(max_queued=3))
    for _ in range(3):
        c.admit("a", "m", None, RUNNER, 0.0)
    with pytest.raises(TooManyRequests) as err:
        c.admit("a", "m", None, RUNNER, 0.0)
    assert err.value.status == 429 and err.value.code == "tenant_queue_full"
    assert err.value.retry_after_s is not None and err.value.retry_after_s > 0
    assert int(err.value.headers()["Retry-After"]) >= 1
    c.admit("b", "m", None, RUNNER, 0.0)  # the limit is per tenant
    assert c.tenant("a").queued == 3


def test_in_flight_limit_counts_running_requests() -> None:
    c = core(default_limits=TenantLimits(max_queued=10, max_in_flight=2))
    c.admit("a", "m", None, RUNNER, 0.0)
    c.admit("a", "m", None, RUNNER, 0.0)
    [batch] = c.dispatch(1.0)
    assert c.tenant("a").queued == 0 and c.tenant("a").running == 2
    with pytest.raises(TooManyRequests) as err:
        c.admit("a", "m", None, RUNNER, 1.0)
    assert err.value.code == "tenant_in_flight_limit"
    c.complete(batch, 0.01, 1.01)
    c.admit("a", "m", None, RUNNER, 1.01)


def test_rate_limit_retry_after_is_the_wait_for_a_token() -> None:
    c = core(default_limits=TenantLimits(rate_per_s=2.0, burst=2))
    c.admit("a", "m", None, RUNNER, 10.0)
    c.admit("a", "m", None, RUNNER, 10.0)
    with pytest.raises(TooManyRequests) as err:
        c.admit("a", "m", None, RUNNER, 10.1)
    assert err.value.code == "tenant_rate_limited"
    assert err.value.retry_after_s == pytest.approx(0.4)  # 1 token at 2/s, 0.2 already refilled
    c.admit("a", "m", None, RUNNER, 10.5)


def test_a_refused_request_takes_no_token() -> None:
    c = core(default_limits=TenantLimits(max_queued=1, rate_per_s=1.0, burst=2))
    c.admit("a", "m", None, RUNNER, 0.0)
    for _ in range(5):
        with pytest.raises(TooManyRequests, match="queued"):
            c.admit("a", "m", None, RUNNER, 0.0)
    assert c.tenant("a").bucket is not None and c.tenant("a").bucket.tokens == pytest.approx(1.0)


def test_global_overload_is_a_503_with_retry_after() -> None:
    c = core(max_total_queued=4)
    for tenant in "abcd":
        c.admit(tenant, "m", None, RUNNER, 0.0)
    with pytest.raises(ServiceUnavailable) as err:
        c.admit("e", "m", None, RUNNER, 0.0)
    assert err.value.status == 503 and err.value.code == "overloaded"
    assert err.value.retry_after_s is not None and err.value.retry_after_s > 0


def test_queue_timeout_is_a_408_that_says_nothing_ran() -> None:
    c = core(default_limits=TenantLimits(queue_timeout_s=2.0))
    c.admit("a", "m", None, ONE, 0.0)
    late = c.admit("a", "m", None, ONE, 0.5)
    [batch] = c.dispatch(0.5)  # the device is busy with the first request from here on
    assert c.expire(2.4) == []
    assert c.expire(2.5) == [late]
    assert late.state == "expired" and c.tenant("a").queued == 0
    from cleanroom.runtime.admission import queue_timeout_error

    error = queue_timeout_error("m", 2.0, 2.0)
    assert isinstance(error, RequestTimeout) and error.status == 408 and error.code == "queue_timeout"
    assert "nothing of it ran" in error.message and "'m'" in error.message
    c.complete(batch, 0.1, 2.6)
    assert c.dispatch(2.6) == [] and c.idle


def test_limits_and_weights_are_checked_and_changeable_at_run_time() -> None:
    c = core()
    with pytest.raises(ValueError):
        c.set_weight("a", 0.0)
    with pytest.raises(ValueError):
        c.set_weight("a", float("nan"))
    with pytest.raises(ValueError):
        TenantLimits(max_queued=0)
    with pytest.raises(ValueError):
        TenantLimits(rate_per_s=-1.0)
    with pytest.raises(ValueError):
        SchedulerConfig(latency_bound_s=-1.0)
    with pytest.raises(ValueError):
        SchedulerConfig(policy="lifo")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SchedulerCore(SchedulerConfig(), ["d0", "d0"])
    c.set_limits("a", TenantLimits(max_queued=1), 0.0)
    c.admit("a", "m", None, RUNNER, 0.0)
    with pytest.raises(TooManyRequests):
        c.admit("a", "m", None, RUNNER, 0.0)
    c.set_limits("a", TenantLimits(max_queued=2), 0.0)
    c.admit("a", "m", None, RUNNER, 0.0)


def test_token_bucket_keeps_earned_tokens_across_a_limit_change() -> None:
    bucket = TokenBucket(1.0, 5.0, now=0.0)
    bucket.take(0.0)
    bucket.take(0.0)
    changed = bucket_for(TenantLimits(rate_per_s=10.0, burst=20), 0.0, bucket)
    assert changed is not None and changed.tokens == pytest.approx(3.0)  # not refilled to the new size
    assert bucket_for(TenantLimits(), 0.0, bucket) is None
    assert clamp_retry(float("inf"), 60.0) == 60.0 and clamp_retry(0.0, 60.0) == 0.1


# --- cancellation and shutdown ------------------------------------------------------------------------------
def test_cancel_only_removes_queued_requests() -> None:
    c = core()
    running = c.admit("a", "m", "x", ONE, 0.0)
    queued = c.admit("a", "m", "y", ONE, 0.0)
    [batch] = c.dispatch(0.0)
    assert batch.requests == [running]
    assert not c.cancel(running)  # it runs to completion
    assert c.cancel(queued) and queued.state == "cancelled" and queued.item is None
    assert not c.cancel(queued)
    c.complete(batch, 0.1, 0.1)
    assert c.dispatch(0.1) == [] and c.idle and c.total_queued == 0


def test_shutdown_refuses_new_work_and_stops_waiting_for_batches() -> None:
    c = core(max_batch_delay_ms=50.0)
    c.admit("a", "m", None, RUNNER, 0.0)
    c.admit("a", "m", None, RUNNER, 0.001)  # dense arrivals: the partial batch would wait for company
    c.admit("a", "m", None, RUNNER, 0.002)
    assert c.dispatch(0.002) == []
    c.begin_shutdown()
    with pytest.raises(ServiceUnavailable) as err:
        c.admit("a", "m", None, RUNNER, 0.003)
    assert err.value.code == "shutting_down" and err.value.status == 503
    [batch] = c.dispatch(0.003)
    assert len(batch.requests) == 3
    assert c.drain_queued() == []


def test_quarantined_devices_take_no_work() -> None:
    c = core(devices=2)
    c.quarantine("d0")
    c.admit("a", "m", None, ONE, 0.0)
    c.admit("b", "m", None, ONE, 0.0)
    batches = c.dispatch(0.0)
    assert [b.device for b in batches] == ["d1"]
    c.quarantine("d1")
    with pytest.raises(ServiceUnavailable) as err:
        c.admit("a", "m", None, ONE, 0.0)
    assert err.value.code == "no_device_available"
    assert len(c.drain_queued()) == 1


# --- tenant switches ---------------------------------------------------------------------------------------
def test_a_switch_is_flagged_only_when_the_device_changes_tenant() -> None:
    c = core()
    for tenant in ("a", "a", "b", "b", "a", "c"):
        c.admit(tenant, "m", None, ONE, 0.0)
    order = []
    now = 0.0
    while not c.idle:
        [batch] = c.dispatch(now)
        previous = order[-1] if order else None
        assert batch.previous_tenant == previous
        assert batch.tenant_switch == (previous is not None and previous != batch.tenant_id)
        assert batch.needs_scrub == batch.tenant_switch  # scrub_on_first_use is off
        order.append(batch.tenant_id)
        now += 0.01
        c.complete(batch, 0.01, now)
    assert sorted(order) == ["a", "a", "a", "b", "b", "c"]
    switches = sum(1 for x, y in itertools.pairwise(order) if x != y)
    assert c.devices["d0"].tenant_switches == switches


def test_a_failed_scrub_keeps_the_old_tenant_and_refunds_the_charge() -> None:
    c = core(scrub_on_first_use=True)
    c.admit("a", "m", None, ONE, 0.0)
    [first] = c.dispatch(0.0)
    assert first.needs_scrub and not first.tenant_switch
    c.complete(first, 0.01, 0.01)
    c.admit("b", "m", None, ONE, 0.01)
    before = c.tenant("b").counter
    [batch] = c.dispatch(0.01)
    assert batch.tenant_switch
    c.complete(batch, 0.0, 0.02, ran=False)
    assert c.devices["d0"].current_tenant == "a"  # the next batch of b must scrub again
    assert c.tenant("b").counter == pytest.approx(before)
    assert c.devices["d0"].tenant_switches == 0


# --- batching ------------------------------------------------------------------------------------------
def request(seq: int, at: float, runner: SimRunner = RUNNER, tenant: str = "a") -> QueuedRequest:
    return QueuedRequest(seq, tenant, "m", None, runner, at, at + 30.0)


def test_ready_at_rules() -> None:
    queue = deque([request(0, 1.0)])
    dense, sparse = ArrivalGap(), ArrivalGap()
    for t in (0.9990, 0.9995, 1.0):
        dense.observe(t)
    for t in (0.5, 1.0):
        sparse.observe(t)
    assert ready_at(queue, None, 2.0, draining=False) == 1.0  # no history: go
    assert ready_at(queue, sparse, 2.0, draining=False) == 1.0  # sparse: waiting gathers nothing
    assert ready_at(queue, dense, 2.0, draining=False) == pytest.approx(1.0 + 2 * dense.mean_gap_s)  # type: ignore
    assert ready_at(queue, dense, 2.0, draining=False) <= 1.002
    assert ready_at(queue, dense, 2.0, draining=True) == 1.0
    assert ready_at(deque([request(0, 1.0, ONE)]), dense, 2.0, draining=False) == 1.0  # cannot batch
    full = deque(request(i, 1.0) for i in range(4))
    assert ready_at(full, dense, 2.0, draining=False) == 1.0


def test_take_batch_keeps_runner_size_and_order() -> None:
    other = SimRunner(max_batch_size=4)
    queue = deque([request(0, 0.0), request(1, 0.0), request(2, 0.0, other), request(3, 0.0)])
    assert [r.seq for r in take_batch(queue)] == [0, 1]  # stops at another runner object
    assert [r.seq for r in take_batch(queue)] == [2]
    queue = deque(request(i, 0.0) for i in range(10))
    assert [r.seq for r in take_batch(queue, max_items=3)] == [0, 1, 2]
    assert [r.seq for r in take_batch(queue)] == [3, 4, 5, 6]  # max_batch_size 4
    assert [r.seq for r in take_batch(queue, seq_below=8)] == [7]
    assert [r.seq for r in take_batch(queue, max_items=0)] == [8]  # the head always goes


def test_cost_model_learns_fixed_and_per_item_cost() -> None:
    model = BatchCostModel(0.01)
    assert model.coefficients("m") == (0.0, 0.01, False)
    model.observe("m", 4, 0.009)
    fixed, per_item, identified = model.coefficients("m")
    assert not identified and per_item == pytest.approx(0.009 / 4)
    for _ in range(20):
        model.observe("m", 16, 0.005 + 0.001 * 16)
        model.observe("m", 1, 0.005 + 0.001 * 1)
    fixed, per_item, identified = model.coefficients("m")
    assert identified and fixed == pytest.approx(0.005) and per_item == pytest.approx(0.001)
    assert model.estimate("m", 8) == pytest.approx(0.013, rel=0.05)
    assert model.estimate("other", 3) == pytest.approx(0.03)  # models are separate


def test_largest_batch_within_a_cost_budget_uses_measured_sizes_not_only_the_line() -> None:
    model = BatchCostModel(0.01)
    assert model.largest_within("m", 2.0, 32) is None  # nothing measured: no cap can be priced
    # CPU-like concave cost (measured on minilm: 1 -> 12 ms, 6 -> 33 ms, 16 -> 60 ms): the straight line
    # through all sizes says ~15 ms fixed, which would allow 7 requests in "twice one request" (24 ms)
    for n, ms in {1: 12.0, 2: 17.0, 3: 21.0, 4: 25.0, 6: 33.0, 8: 40.0, 12: 51.0, 16: 60.0}.items():
        model.observe("m", n, ms / 1000)
    fixed, per_item, _ = model.coefficients("m")
    assert math.floor((2 * (fixed + per_item) - fixed) / per_item) >= 5  # what the line alone allowed
    assert model.largest_within("m", 2.0, 32) == 3  # 4 took 25 ms > 24
    assert model.largest_within("m", 1.0, 32) == 1
    assert model.largest_within("m", 2.0, 2) == 2  # never above the runner's limit
    # past the largest measured size, the line decides: 100 x 12 ms = 1.2 s
    assert model.largest_within("m", 100.0, 1000) == math.floor((1.2 - fixed) / per_item + 1e-9)
    assert model.largest_within("m", 1000.0, 1000) == 1000


def test_largest_batch_within_a_budget_stops_at_the_first_size_over_it() -> None:
    model = BatchCostModel(0.01)
    for n, ms in {1: 10.0, 2: 30.0, 3: 15.0}.items():  # a noisy size: 2 measured over budget, 3 under
        model.observe("m", n, ms / 1000)
    assert model.largest_within("m", 2.0, 8) == 1


# --- fairness rules ----------------------------------------------------------------------------------------
def test_lift_never_lowers_and_never_banks() -> None:
    assert lifted_counter(5.0, [3.0, 4.0], 0.0) == 5.0  # ahead already: unchanged
    assert lifted_counter(1.0, [3.0, 4.0], 0.0) == 3.0  # behind: lifted to the least active
    assert lifted_counter(1.0, [], 2.0) == 2.0  # nobody active: the floor


def cand(tenant: str, counter: float, at: float = 0.0, seq: int = 0, cost: float = 0.01) -> Candidate:
    return Candidate(tenant, counter, at, seq, cost)


def test_choose_fair_prefers_the_least_counter_then_the_current_tenant_then_the_cheaper_batch() -> None:
    kw = {"sticky_since": None, "oldest_other_at": 0.0, "now": 1.0, "fairness_bound_s": 0.0, "latency_bound_s": 0.0}
    assert choose_fair([cand("a", 2.0), cand("b", 1.0)], current="a", **kw).tenant_id == "b"  # type: ignore
    assert choose_fair([cand("a", 1.0), cand("b", 1.0)], current="a", **kw).tenant_id == "a"  # type: ignore
    tie = [cand("a", 1.0, cost=0.05), cand("b", 1.0, cost=0.005)]
    assert choose_fair(tie, current=None, **kw).tenant_id == "b"  # type: ignore


def test_choose_fair_stickiness_respects_both_bounds_and_light_tenants() -> None:
    candidates = [cand("a", 1.03), cand("b", 1.0)]

    def pick(**kw: object) -> str:
        args: dict[str, object] = {
            "current": "a",
            "sticky_since": None,
            "oldest_other_at": 0.9,
            "now": 1.0,
            "fairness_bound_s": 0.05,
            "latency_bound_s": 0.025,
        }
        args.update(kw)
        return choose_fair(candidates, **args).tenant_id  # type: ignore[arg-type]

    assert pick() == "a"  # within both bounds: stay, save the scrub
    assert pick(fairness_bound_s=0.02) == "b"  # a leads by more than the fairness bound
    assert pick(sticky_since=0.97) == "b"  # the sticky run has held b for 30 ms >= 25 ms
    assert pick(sticky_since=0.98) == "a"
    assert pick(light_tenant_waiting=True) == "b"  # never hold a light tenant
    assert pick(latency_bound_s=0.0) == "b"  # bound 0 turns stickiness off


def test_fifo_and_jain() -> None:
    assert choose_fifo([cand("a", 0.0, seq=5), cand("b", 9.0, seq=2)]).tenant_id == "b"
    assert jain_index([1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert jain_index([1.0, 0.0, 0.0, 0.0]) == pytest.approx(0.25)


# --- anticipation ------------------------------------------------------------------------------------------
def anticipating_core(**config: object) -> SchedulerCore:
    """b ran, then a (a 4 ms scrub before it), then a came back 1 ms after its batch: a's comeback is known.

    At 0.031 a's second batch has finished, its queue is empty and b has a request waiting.
    """
    config.setdefault("latency_bound_s", 0.025)
    config.setdefault("fairness_bound_s", 0.05)
    c = core(**config)
    for tenant, start, scrub_s in (("b", 0.0, 0.0), ("a", 0.010, 0.004), ("a", 0.021, 0.0)):
        c.admit(tenant, "m", None, ONE, start)
        [batch] = c.dispatch(start)
        assert batch.tenant_id == tenant
        c.complete(batch, 0.010, start + 0.010, scrub_s=scrub_s)
    assert c.tenant("a").comeback_s == pytest.approx(0.001)
    c.admit("b", "m", None, ONE, 0.031)
    return c


def test_anticipation_holds_the_device_for_a_quick_comeback_and_saves_the_switch() -> None:
    c = anticipating_core()
    assert c.dispatch(0.031) == []  # b waits: a is expected back within ~1 ms
    hold = c.devices["d0"].hold_until
    assert hold == pytest.approx(0.031 + 2 * 0.001)  # at most two mean comebacks
    assert c.next_wake(0.031) == pytest.approx(hold)  # the driver wakes when the hold ends
    c.admit("a", "m", None, ONE, 0.0318)
    [batch] = c.dispatch(0.0318)
    assert batch.tenant_id == "a" and not batch.tenant_switch and batch.stayed_for_switch
    assert c.devices["d0"].holds == 1


def test_anticipation_ends_when_the_tenant_does_not_come_back() -> None:
    c = anticipating_core()
    assert c.dispatch(0.031) == []
    hold = c.devices["d0"].hold_until
    assert hold is not None
    assert c.dispatch(hold - 1e-6) == []
    [batch] = c.dispatch(hold)
    assert batch.tenant_id == "b" and batch.tenant_switch


def test_anticipation_never_outlasts_the_latency_bound() -> None:
    # b's request has waited since 0.031: a bound of 1.5 ms ends the hold before a's expected comeback.
    c = anticipating_core(latency_bound_s=0.0015)
    assert c.dispatch(0.031) == []
    assert c.devices["d0"].hold_until == pytest.approx(0.031 + 0.0015)


@pytest.mark.parametrize(
    "config",
    [
        {"latency_bound_s": 0.0},
        {"fairness_bound_s": 0.0},
        {"fairness_bound_s": 0.005},
        {"anticipate": False},
        {"policy": "fifo"},
        {"latency_bound_s": 0.0009},
    ],
)
def test_anticipation_is_bounded_by_both_settings(config: dict[str, object]) -> None:
    # Either bound at 0 turns it off; a leads b by 10 ms of service, beyond a 5 ms fairness bound; a
    # comeback (1 ms) not shorter than the latency bound is not waited for.
    c = anticipating_core(**config)
    [batch] = c.dispatch(0.031)
    assert batch.tenant_id == "b"


def test_anticipation_does_not_wait_longer_than_the_scrub_it_saves() -> None:
    c = core(latency_bound_s=0.025, fairness_bound_s=0.05)
    for tenant, start, scrub_s in (("b", 0.0, 0.0), ("a", 0.010, 0.0005), ("a", 0.021, 0.0)):
        c.admit(tenant, "m", None, ONE, start)
        [batch] = c.dispatch(start)
        c.complete(batch, 0.010, start + 0.010, scrub_s=scrub_s)
    c.admit("b", "m", None, ONE, 0.031)
    [batch] = c.dispatch(0.031)  # a 1 ms wait to save a 0.5 ms scrub would cost more than it saves
    assert batch.tenant_id == "b"


def test_anticipation_never_holds_a_light_tenant() -> None:
    c = anticipating_core()
    c.admit("newcomer", "m", None, ONE, 0.031)  # never served: light
    [batch] = c.dispatch(0.031)
    assert batch.tenant_id != "a"


# --- diagnostics: why a device left its tenant, comebacks ----------------------------------------------------
def test_run_end_reasons_say_why_the_device_left_its_tenant() -> None:
    c = anticipating_core()
    c.devices["d0"].run_ends.clear()  # the set-up's own switch (b to a, b not measured yet)
    [batch] = c.dispatch(0.031 + 0.003)  # a did not come back within its expected comeback
    assert batch.tenant_id == "b"
    assert c.devices["d0"].run_ends == {"empty_not_back": 1}
    c = anticipating_core()
    c.devices["d0"].run_ends.clear()
    assert c.dispatch(0.031) == []  # held for a; the hold ends without it
    [batch] = c.dispatch(c.devices["d0"].hold_until or 0.0)
    assert c.devices["d0"].run_ends == {"empty_not_back": 1}
    c = anticipating_core(fairness_bound_s=0.005)
    c.devices["d0"].run_ends.clear()
    c.dispatch(0.031)
    assert c.devices["d0"].run_ends == {"fairness_bound": 1}  # a's lead is past the bound: no hold
    c = core(latency_bound_s=0.025, fairness_bound_s=0.05)
    for tenant, start, scrub_s in (("b", 0.0, 0.0), ("a", 0.010, 0.0005), ("a", 0.021, 0.0)):
        c.admit(tenant, "m", None, ONE, start)
        [batch] = c.dispatch(start)
        c.complete(batch, 0.010, start + 0.010, scrub_s=scrub_s)
    c.devices["d0"].run_ends.clear()
    c.admit("b", "m", None, ONE, 0.031)
    c.dispatch(0.031)
    assert c.devices["d0"].run_ends == {"empty_comeback_dearer": 1}


def test_run_end_reasons_when_the_tenant_still_has_work() -> None:
    # a and b both backlogged with batches of one; a 1 ms fairness bound ends each run after one batch.
    c = core(latency_bound_s=1.0, fairness_bound_s=0.001)
    for _ in range(3):
        c.admit("a", "m", None, ONE, 0.0)
        c.admit("b", "m", None, ONE, 0.0)
    now = 0.0
    for _ in range(4):
        [batch] = c.dispatch(now)
        now += 0.010
        c.complete(batch, 0.010, now)
    ends = c.devices["d0"].run_ends
    assert ends.get("fairness_bound", 0) >= 1 and "latency_bound" not in ends  # (b is light at first)
    # With a generous fairness bound, the latency bound ends the run instead.
    c = core(latency_bound_s=0.015, fairness_bound_s=1.0)
    for _ in range(10):
        c.admit("a", "m", None, ONE, 0.0)
        c.admit("b", "m", None, ONE, 0.0)
    now = 0.0
    for _ in range(12):
        [batch] = c.dispatch(now)
        now += 0.010
        c.complete(batch, 0.010, now)
    ends = c.devices["d0"].run_ends
    assert ends.get("latency_bound", 0) >= 1 and "fairness_bound" not in ends


def test_comeback_and_regroup_are_measured_from_the_batch_end() -> None:
    c = core()
    for _ in range(3):
        c.admit("a", "m", None, RUNNER, 0.0)
    [batch] = c.dispatch(0.0)
    c.complete(batch, 0.010, 0.010)
    c.admit("a", "m", None, RUNNER, 0.012)
    assert c.last_comeback_s == pytest.approx(0.002) and c.last_regroup_s is None
    c.admit("a", "m", None, RUNNER, 0.013)
    assert c.last_comeback_s is None  # not a comeback: a already had work
    c.admit("a", "m", None, RUNNER, 0.015)
    assert c.last_regroup_s == pytest.approx(0.005)  # the third of the batch's three clients is back
    assert c.tenant("a").regroup_s == pytest.approx(0.005)


# --- tenant deletion ------------------------------------------------------------------------------------
def test_a_forgotten_idle_tenant_is_dropped_at_once() -> None:
    c = core()
    c.admit("gone", "m", None, ONE, 0.0)
    [batch] = c.dispatch(0.0)
    c.complete(batch, 0.01, 0.01)
    assert c.forget("gone") is True
    assert "gone" not in c.tenants
    assert c.dispatch(0.02) == [] and c.queued_of("gone") == 0  # a device that last served it does not revive it
    assert "gone" not in c.tenants


def test_a_forgotten_tenant_with_work_is_dropped_when_the_last_of_it_is_done() -> None:
    c = core(default_limits=TenantLimits(max_queued=10))
    c.admit("gone", "m", None, ONE, 0.0)
    queued = c.admit("gone", "m", None, ONE, 0.0)
    [running] = c.dispatch(0.0)
    assert c.forget("gone") is False  # one running, one queued: their answers still need the state
    assert c.cancel(queued)
    assert "gone" in c.tenants  # the running batch still counts against it
    c.complete(running, 0.01, 0.01)
    assert "gone" not in c.tenants
    c.admit("other", "m", None, ONE, 0.02)  # the scheduler goes on as before
    assert len(c.dispatch(0.02)) == 1
