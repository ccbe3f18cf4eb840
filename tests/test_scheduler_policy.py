"""The scheduling policy on a simulated clock: fair shares, no banked credit, no starvation, bounded
stickiness, tenant-grouped batching and fewer tenant switches than FIFO. Deterministic, no threads."""

from __future__ import annotations

import itertools
import random

import pytest

from cleanroom.runtime.admission import TenantLimits
from cleanroom.runtime.fairness import jain_index
from cleanroom.runtime.scheduler_core import SchedulerConfig
from cleanroom.runtime.scheduler_sim import LinearCost, Simulation, percentile

ROOMY = TenantLimits(max_queued=100_000, max_in_flight=100_000, queue_timeout_s=1e9)


DEFAULT_COST = LinearCost(0.002, 0.001)


def simulation(
    cost: LinearCost = DEFAULT_COST, *, scrub_s: float = 0.001, devices: int = 1, **config: object
) -> Simulation:
    config.setdefault("default_limits", ROOMY)
    return Simulation(
        SchedulerConfig(**config),  # type: ignore[arg-type]
        cost,
        devices=[f"sim:{i}" for i in range(devices)],
        scrub_s=scrub_s,
    )


def shares(service: dict[str, float]) -> dict[str, float]:
    total = sum(service.values())
    return {tenant: s / total for tenant, s in service.items()}


@pytest.mark.parametrize("batch_size", [1, 8])
@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.0, 3.0)])
def test_backlogged_tenants_get_service_in_proportion_to_their_weights(
    weights: tuple[float, float], batch_size: int
) -> None:
    sim = simulation()
    sim.model("m", batch_size)
    sim.core.set_weight("a", weights[0])
    sim.core.set_weight("b", weights[1])
    # Unequal demand on purpose: b floods with 4x the clients; only the weights may decide the split.
    sim.closed_loop("a", "m", 8)
    sim.closed_loop("b", "m", 32)
    sim.run(40.0)
    got = shares(sim.service_s(5.0, 40.0))
    for tenant, weight in zip("ab", weights, strict=True):
        expected = weight / sum(weights)
        assert abs(got[tenant] - expected) <= 0.05 * expected, (tenant, got, expected)


def test_shares_follow_measured_cost_not_request_count() -> None:
    # Tenant "big" sends requests that cost 10x more: equal service means ~10x fewer of its requests.
    sim = Simulation(
        SchedulerConfig(default_limits=ROOMY), lambda model, n: (0.010 if model == "big" else 0.001) * n, scrub_s=0.0
    )
    sim.closed_loop("big", "big", 8)
    sim.closed_loop("small", "small", 8)
    sim.run(30.0)
    got = shares(sim.service_s(5.0, 30.0))
    assert abs(got["big"] - 0.5) <= 0.025, got
    assert sim.completed("small") > 8 * sim.completed("big")


def test_a_weight_change_takes_effect_at_run_time() -> None:
    sim = simulation()
    sim.model("m", 4)
    sim.closed_loop("a", "m", 8)
    sim.closed_loop("b", "m", 8)
    sim.at(20.0, lambda: sim.core.set_weight("b", 3.0))
    sim.run(50.0)
    before = shares(sim.service_s(5.0, 20.0))
    after = shares(sim.service_s(25.0, 50.0))
    assert abs(before["b"] - 0.5) <= 0.025, before
    assert abs(after["b"] - 0.75) <= 0.0375, after


def test_jain_index_over_eight_equal_tenants_with_unequal_demand() -> None:
    sim = simulation()
    sim.model("m", 4)
    for i in range(8):
        sim.closed_loop(f"t{i}", "m", clients=8 + 3 * i)  # 8 to 29 concurrent clients: all backlogged
    sim.run(25.0)
    service = sim.service_s(5.0, 25.0)
    assert len(service) == 8
    assert jain_index(list(service.values())) >= 0.99, service
    counts = [sim.completed(f"t{i}") for i in range(8)]
    assert jain_index(counts) >= 0.99  # equal per-request cost here, so counts are even too


def test_an_idle_tenant_banks_no_credit() -> None:
    fairness_bound_s = 0.05
    cost = LinearCost(0.002, 0.001)
    sim = simulation(cost, fairness_bound_s=fairness_bound_s)
    sim.model("m", 4)
    sim.closed_loop("a", "m", 8)
    sim.closed_loop("b", "m", 8)
    # c is idle for 20 s while a and b use the device, then floods.
    sim.closed_loop("c", "m", 16, start_s=20.0)
    sim.run(40.0)
    largest_batch_s = cost("m", 4) + sim.scrub_s
    bound_s = fairness_bound_s + 2 * largest_batch_s
    for step in range(1, 200):
        t = 20.0 + step * 0.1
        got = sim.service_s(20.0, t).get("c", 0.0)
        fair = (t - 20.0) / 3.0
        assert got <= fair + bound_s, (t, got, fair)  # had c banked its 20 idle seconds, it would take all
    final = shares(sim.service_s(25.0, 40.0))
    assert abs(final["c"] - 1 / 3) <= 0.05 / 3, final


@pytest.mark.parametrize("bounds", [{}, {"fairness_bound_s": 1e9}, {"latency_bound_s": 1e9}])
def test_no_starvation_with_extreme_weights(bounds: dict[str, float]) -> None:
    cost = LinearCost(0.002, 0.001)
    sim = simulation(cost, **bounds)
    sim.model("m", 1)
    sim.core.set_weight("whale", 50.0)
    sim.closed_loop("whale", "m", 64)
    sim.closed_loop("minnow", "m", 2)
    sim.run(30.0)
    minnow = sim.latencies("minnow", since_s=2.0)
    assert len(minnow) > 100
    assert all(o.outcome == "ok" for o in sim.outcomes)
    got = shares(sim.service_s(2.0, 30.0))
    assert abs(got["minnow"] - 1 / 51) <= 0.1 / 51, got  # its weight's share: not starved, not more
    per_request = cost("m", 1) + sim.scrub_s
    if not bounds:
        # One turn in 51 requests for each of its 2 clients, plus what stickiness may add (each bound, and
        # the batch that crosses it).
        cfg = sim.config
        limit = 2 * 51 * per_request + cfg.latency_bound_s + cfg.fairness_bound_s + 4 * per_request
        assert max(minnow) <= limit, (max(minnow), limit)
    else:
        assert max(minnow) <= 5.0  # one bound alone still ends every sticky run


def test_fairness_bound_limits_stickiness_when_latency_bound_is_off() -> None:
    cost = LinearCost(0.0, 0.002)
    sim = simulation(cost, fairness_bound_s=0.02, latency_bound_s=1e9, scrub_s=0.002)
    sim.model("m", 1)
    sim.closed_loop("a", "m", 4)
    sim.closed_loop("b", "m", 4)
    sim.run(20.0)
    runs: list[int] = []
    for batch in sim.batches:
        if runs and not batch.tenant_switch:
            runs[-1] += 1
        else:
            runs.append(1)
    # A run starts with the tenant up to the bound behind (10 requests of 0.002 s), catches up, and may
    # then lead by the bound (10 more), plus the batch that crosses it.
    assert max(runs[2:]) <= 2 * 0.02 / 0.002 + 2, max(runs)
    assert sum(runs) / len(runs) > 5  # and it does save switches


def test_a_light_tenant_is_never_held_for_a_switch() -> None:
    """Stickiness saves scrubs among heavy tenants; it must not make a light tenant wait."""
    cost = LinearCost(0.005, 0.0002)
    alone = simulation(cost, scrub_s=0.002)
    alone.model("m", 32)
    alone.poisson("light", "m", 20.0, 0.0, 30.0, random.Random(7))
    alone.run(30.0)
    flooded = simulation(cost, scrub_s=0.002, latency_bound_s=10.0, fairness_bound_s=10.0)
    flooded.model("m", 32)
    flooded.poisson("light", "m", 20.0, 0.0, 30.0, random.Random(7))
    flooded.closed_loop("heavy", "m", 16)
    flooded.run(30.0)
    heavy_batch_s = cost("m", 16) + 0.002
    p99_alone = percentile(alone.latencies("light", since_s=2.0), 99)
    p99_flood = percentile(flooded.latencies("light", since_s=2.0), 99)
    # Huge bounds, yet the light tenant waits at most about one heavy batch and a scrub more.
    assert p99_flood <= p99_alone + 2 * heavy_batch_s, (p99_alone, p99_flood)


def test_batches_never_mix_tenants_or_models_and_respect_max_size() -> None:
    sim = simulation()
    sim.model("m", 8)
    sim.model("n", 3)
    rng = random.Random(3)
    for i in range(6):
        sim.poisson(f"t{i}", "m" if i % 2 else "n", 300.0, 0.0, 10.0, rng)
    sim.poisson("t0", "m", 200.0, 0.0, 10.0, rng)  # one tenant on two models
    sim.run(20.0)
    assert sim.batches
    for batch in sim.batches:
        assert set(batch.request_tenants) == {batch.tenant_id}
        assert set(batch.request_models) == {batch.model}
        assert batch.size <= {"m": 8, "n": 3}[batch.model]
    assert max(b.size for b in sim.batches if b.model == "m") > 1  # and it does batch


def test_partial_batch_waits_at_most_the_max_delay() -> None:
    # An idle device, a steady stream every 0.5 ms, batches of up to 32, 2 ms delay: requests gather.
    sim = simulation(LinearCost(0.0, 0.00001), max_batch_delay_ms=2.0, scrub_s=0.0)
    sim.model("m", 32)
    sim.open_loop("a", "m", [i * 0.0005 for i in range(2000)])
    sim.run(2.0)
    waits = [o.started_at - o.arrived_at for o in sim.outcomes if o.started_at is not None]
    assert len(waits) == 2000
    assert max(waits) <= 0.002 + 1e-9
    assert max(b.size for b in sim.batches) >= 4


def test_sparse_requests_do_not_pay_the_batching_delay() -> None:
    sim = simulation(LinearCost(0.001, 0.0), max_batch_delay_ms=5.0, scrub_s=0.0)
    sim.model("m", 32)
    sim.open_loop("a", "m", [i * 0.02 for i in range(100)])
    sim.run(3.0)
    assert all(o.started_at == o.arrived_at for o in sim.outcomes)


def test_a_burst_is_one_batch() -> None:
    sim = simulation(LinearCost(0.001, 0.0001), scrub_s=0.0)
    sim.model("m", 32)
    sim.open_loop("a", "m", [1.0] * 32)
    sim.run(2.0)
    assert [b.size for b in sim.batches] == [32]


@pytest.mark.parametrize(("factor", "largest_shared"), [(2.0, 2), (1.0, 1), (float("inf"), 16), (None, 16)])
def test_shared_batches_are_capped_so_others_do_not_wait_for_a_whole_big_batch(
    factor: float | None, largest_shared: int
) -> None:
    # Per-item cost dominates (CPU-like): a 16-request batch is 16x a single request.
    cost = LinearCost(0.0005, 0.004)
    sim = simulation(cost, shared_batch_cost_factor=factor)
    sim.model("m", 32)
    sim.closed_loop("heavy", "m", 16, stop_s=5.0)
    sim.poisson("light", "m", 20.0, 5.0, 20.0, random.Random(5))
    sim.closed_loop("heavy", "m", 16, start_s=5.0)
    sim.run(20.0)
    alone = [b.size for b in sim.batches if b.tenant_id == "heavy" and b.end < 5.0]
    shared = [b.size for b in sim.batches if b.tenant_id == "heavy" and b.service_start > 6.5]
    assert max(alone) >= 8  # alone it batches freely
    # factor 2: 2 x cost(1) = 0.009 s -> at most 2 requests while light is around; inf or None: no cap
    assert max(shared) == largest_shared


@pytest.mark.parametrize("batch_size", [1, 32])
def test_fewer_tenant_switches_than_fifo(batch_size: int) -> None:
    switches = {}
    for policy in ("fifo", "fair"):
        sim = simulation(LinearCost(0.001, 0.001), policy=policy)
        sim.model("m", batch_size)
        rate = 1.1 / 0.002  # round-robin arrivals, 8 tenants, just over one-request-per-forward capacity
        for i in range(8):
            sim.open_loop(f"t{i}", "m", [k / rate for k in range(i, int(10 * rate), 8)])
        sim.run(1000.0)
        assert sim.completed() == int(10 * rate)
        switches[policy] = sim.tenant_switches
    assert switches["fifo"] >= 0.99 * int(10 * 1.1 / 0.002)  # FIFO switches at nearly every request
    assert switches["fair"] <= 0.5 * switches["fifo"], switches


def test_two_devices_keep_their_tenants() -> None:
    sim = simulation(LinearCost(0.001, 0.001), devices=2)
    sim.model("m", 1)
    sim.closed_loop("a", "m", 8)
    sim.closed_loop("b", "m", 8)
    sim.run(10.0)
    assert sim.tenant_switches <= 0.05 * sim.completed()
    got = shares(sim.service_s(1.0, 10.0))
    assert abs(got["a"] - 0.5) <= 0.025


def test_cancel_removes_a_queued_request() -> None:
    sim = simulation(LinearCost(0.1, 0.0))
    sim.model("m", 1)
    sim.submit("a", "m")  # occupies the device for 0.1 s
    victim = sim.submit("a", "m")
    keeper = sim.submit("a", "m")
    sim.run(0.0)
    assert victim is not None and keeper is not None
    assert sim.cancel(victim)
    assert not sim.cancel(victim)
    sim.run(1.0)
    assert [o.outcome for o in sim.outcomes] == ["cancelled", "ok", "ok"]
    assert sum(b.size for b in sim.batches) == 2
    assert sim.core.tenant("a").queued == 0 and sim.core.idle


def test_anticipation_saves_switches_within_the_bounds_without_costing_throughput() -> None:
    """8 tenants x 2 closed-loop clients whose round trip (answer read, next request sent) takes ~1 ms:
    each tenant's queue is empty for a moment after every batch, so without anticipation every batch is a
    switch. Waiting for the comeback (shorter than the 2 ms scrub it saves) must cut the switches, keep
    the shares equal, idle the device no longer than the latency bound, and lose no throughput."""
    cost = LinearCost(0.005, 0.0002)
    runs = {}
    for label, config in (("fifo", {"policy": "fifo"}), ("fair", {}), ("no_anticipation", {"anticipate": False})):
        sim = simulation(cost, scrub_s=0.002, **config)
        sim.model("m", 32)
        rng = random.Random(3)
        for i in range(8):
            sim.closed_loop(f"t{i}", "m", 2, think_s=lambda: rng.uniform(0.0005, 0.0015))
        sim.run(20.0)
        runs[label] = sim
    fair, fifo, plain = runs["fair"], runs["fifo"], runs["no_anticipation"]
    assert fair.tenant_switches <= 0.25 * fifo.tenant_switches, (fair.tenant_switches, fifo.tenant_switches)
    assert plain.tenant_switches > 0.9 * fifo.tenant_switches  # closed loop: nothing queued to stay for
    assert fair.completed() >= 0.95 * plain.completed()
    assert jain_index(list(fair.service_s(2.0, 20.0).values())) >= 0.99
    gaps = [(b.service_start - b.scrub_s) - a.end for a, b in itertools.pairwise(fair.batches)]
    assert max(gaps) <= fair.config.latency_bound_s + 1e-9
    assert fair.core.devices["sim:0"].holds > 100


def test_anticipation_ends_at_the_fairness_bound_when_the_latency_bound_is_off() -> None:
    cost = LinearCost(0.005, 0.0002)
    sim = simulation(cost, scrub_s=0.002, fairness_bound_s=0.02, latency_bound_s=1e9)
    sim.model("m", 32)
    rng = random.Random(4)
    for i in range(4):
        sim.closed_loop(f"t{i}", "m", 2, think_s=lambda: rng.uniform(0.0005, 0.0015))
    sim.run(20.0)
    runs: list[float] = []  # device seconds per run of one tenant
    for batch in sim.batches:
        if runs and not batch.tenant_switch:
            runs[-1] += batch.end - batch.service_start
        else:
            runs.append(batch.end - batch.service_start)
    # A run starts up to the bound behind, catches up, may lead by the bound, plus the batch that crosses it.
    assert max(runs[4:]) <= 2 * 0.02 + 2 * cost("m", 2), max(runs)
    assert sum(runs) / len(runs) > 3 * cost("m", 2)  # and it does keep the device
    assert jain_index(list(sim.service_s(2.0, 20.0).values())) >= 0.99
