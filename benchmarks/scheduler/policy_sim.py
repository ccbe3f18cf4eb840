"""Policy-level benchmarks of the tenant-fair scheduler, on the discrete-event simulation.

The real `SchedulerCore` (the code the server runs) on a simulated clock: devices take `fixed + per_item * n`
seconds per batch of n, plus `scrub` seconds before a batch that changes the device's tenant. No server, no
threads, deterministic (seeded); the real-server benchmarks with `minilm` come once the scheduler is wired in.

    .venv/bin/python benchmarks/scheduler/policy_sim.py                 # all scenarios, all cost models
    .venv/bin/python benchmarks/scheduler/policy_sim.py --cost gpu --json out.json

Scenarios (goals from issue 3):
1. light tenant's p99 latency while a heavy tenant floods with 16 concurrent clients, over its p99 alone
   (goal <= 2x); FIFO beside it, with the same batching and with one request per forward pass;
2. tenant switches per 1000 requests, 8 tenants with interleaved arrivals, vs FIFO (goal <= 0.25x FIFO
   at the default latency bound): open loop, round-robin arrivals at 0.5, 0.9 and 1.2 of the
   one-request-per-forward capacity; closed loop, 4 clients per tenant with random think times; and
   closed loop, 2 clients per tenant with a 0.5-1.5 ms round trip (anticipation's case);
3. throughput of tenant-grouped batching vs one request per forward pass, one tenant, 32 clients.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass
from typing import Any

from cleanroom.runtime.admission import TenantLimits
from cleanroom.runtime.scheduler_config import SchedulerConfig
from cleanroom.runtime.scheduler_sim import LinearCost, Simulation, percentile

ROOMY = TenantLimits(max_queued=1_000_000, max_in_flight=1_000_000, queue_timeout_s=1e9)


@dataclass(frozen=True)
class CostModel:
    name: str
    cost: LinearCost
    scrub_s: float
    source: str


COSTS = {
    "gpu": CostModel(
        "gpu",
        LinearCost(0.005, 0.0002),
        0.002,
        "assumed: small encoder on an H100-class GPU, launch-bound (5 ms + 0.2 ms/request); scrub "
        "2 ms (zero + verify ~2 GB of freed blocks at ~2 TB/s, plus synchronisation)",
    ),
    "cpu-minilm": CostModel(
        "cpu-minilm",
        LinearCost(0.070, 0.016),
        0.001,
        "measured here: all-MiniLM-L6-v2 forward on this shared 2-core VM, one 14-word "
        "text per request (n=1: 85 ms, n=32: 573 ms, noisy); scrub 1 ms assumed",
    ),
    "cpu-per-item": CostModel(
        "cpu-per-item",
        LinearCost(0.001, 0.004),
        0.001,
        "assumed: per-request cost dominates (1 ms + 4 ms/request); scrub 1 ms",
    ),
}


def config(policy: str = "fair", **overrides: Any) -> SchedulerConfig:
    return SchedulerConfig(policy=policy, default_limits=ROOMY, **overrides)  # type: ignore[arg-type]


# --- 1. light tenant under a flood ---------------------------------------------------------------------
def light_p99(cm: CostModel, *, policy: str, batch_size: int, flood: bool, duration_s: float, seed: int) -> float:
    sim = Simulation(config(policy), cm.cost, scrub_s=cm.scrub_s)
    sim.model("m", batch_size)
    # The light tenant alone would keep the device 10% busy, whatever the cost model.
    sim.poisson("light", "m", 0.10 / cm.cost("m", 1), 0.0, duration_s, random.Random(seed))
    if flood:
        sim.closed_loop("heavy", "m", 16)
    sim.run(duration_s)
    return percentile(sim.latencies("light", since_s=duration_s * 0.05), 99)


def light_scenario(cm: CostModel, duration_s: float, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, policy, batch_size in (("fair", "fair", 32), ("fifo", "fifo", 32), ("fifo_one_per_forward", "fifo", 1)):
        alone = light_p99(cm, policy=policy, batch_size=batch_size, flood=False, duration_s=duration_s, seed=seed)
        flooded = light_p99(cm, policy=policy, batch_size=batch_size, flood=True, duration_s=duration_s, seed=seed)
        out[label] = {"p99_alone_ms": alone * 1e3, "p99_flood_ms": flooded * 1e3, "ratio": flooded / alone}
    return out


# --- 2. tenant switches ------------------------------------------------------------------------------------
def switch_run(cm: CostModel, *, policy: str, batch_size: int, load: float, requests: int) -> dict[str, float]:
    sim = Simulation(config(policy), cm.cost, scrub_s=cm.scrub_s)
    sim.model("m", batch_size)
    rate = load / cm.cost("m", 1)  # offered load, relative to one-request-per-forward capacity
    for i in range(8):
        sim.open_loop(f"t{i}", "m", [k / rate for k in range(i, requests, 8)])  # t0 t1 ... t7 t0 t1 ...
    sim.run(1e9)
    done = sim.completed()
    assert done == requests, (done, requests)
    latencies = sorted(o.latency_s for o in sim.outcomes if o.outcome == "ok")
    return {"switches_per_1000": 1000.0 * sim.tenant_switches / done, "p99_ms": percentile(latencies, 99) * 1e3}


def switch_run_closed(cm: CostModel, *, policy: str, batch_size: int, duration_s: float, seed: int) -> dict[str, float]:
    """8 tenants x 4 clients, random think times (mean: two requests' service): saturated, interleaved."""
    sim = Simulation(config(policy), cm.cost, scrub_s=cm.scrub_s)
    sim.model("m", batch_size)
    rng = random.Random(seed)
    mean_think_s = 2 * cm.cost("m", 1)
    for i in range(8):
        sim.closed_loop(f"t{i}", "m", 4, think_s=lambda: rng.expovariate(1 / mean_think_s))
    sim.run(duration_s)
    latencies = sorted(o.latency_s for o in sim.outcomes if o.outcome == "ok")
    return {
        "switches_per_1000": 1000.0 * sim.tenant_switches / sim.completed(),
        "p99_ms": percentile(latencies, 99) * 1e3,
        "throughput_rps": sim.completed() / duration_s,
    }


def switch_run_round_trip(
    cm: CostModel, *, policy: str, batch_size: int, duration_s: float, seed: int, **overrides: Any
) -> dict[str, float]:
    """8 tenants x 2 clients that resubmit after a 0.5-1.5 ms round trip: every batch empties its queue."""
    sim = Simulation(config(policy, **overrides), cm.cost, scrub_s=cm.scrub_s)
    sim.model("m", batch_size)
    rng = random.Random(seed)
    for i in range(8):
        sim.closed_loop(f"t{i}", "m", 2, think_s=lambda: rng.uniform(0.0005, 0.0015))
    sim.run(duration_s)
    latencies = sorted(o.latency_s for o in sim.outcomes if o.outcome == "ok")
    return {
        "switches_per_1000": 1000.0 * sim.tenant_switches / sim.completed(),
        "p99_ms": percentile(latencies, 99) * 1e3,
        "throughput_rps": sim.completed() / duration_s,
    }


def switch_scenario(cm: CostModel, requests: int, duration_s: float, seed: int) -> list[dict[str, Any]]:
    rows = []
    for batch_size in (1, 32):
        for load in (0.5, 0.9, 1.2, "closed", "rtt"):
            if load == "rtt":
                kw = {"batch_size": batch_size, "duration_s": duration_s, "seed": seed}
                fifo = switch_run_round_trip(cm, policy="fifo", **kw)
                fair = switch_run_round_trip(cm, policy="fair", **kw)
                fair["no_anticipation_switches_per_1000"] = switch_run_round_trip(
                    cm, policy="fair", anticipate=False, **kw
                )["switches_per_1000"]
            elif load == "closed":
                fifo = switch_run_closed(cm, policy="fifo", batch_size=batch_size, duration_s=duration_s, seed=seed)
                fair = switch_run_closed(cm, policy="fair", batch_size=batch_size, duration_s=duration_s, seed=seed)
            else:
                fifo = switch_run(cm, policy="fifo", batch_size=batch_size, load=float(load), requests=requests)
                fair = switch_run(cm, policy="fair", batch_size=batch_size, load=float(load), requests=requests)
            rows.append(
                {
                    "batch_size": batch_size,
                    "load": load,
                    "fifo": fifo,
                    "fair": fair,
                    "ratio": fair["switches_per_1000"] / fifo["switches_per_1000"]
                    if fifo["switches_per_1000"]
                    else float("nan"),  # too few requests for FIFO to switch at all
                }
            )
    return rows


# --- 3. grouped batching throughput ------------------------------------------------------------------------
def batching_scenario(cm: CostModel, duration_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, batch_size in (("batched", 32), ("one_per_forward", 1)):
        sim = Simulation(config(), cm.cost, scrub_s=cm.scrub_s)
        sim.model("m", batch_size)
        sim.closed_loop("a", "m", 32)
        sim.run(duration_s)
        sizes = [b.size for b in sim.batches]
        out[label] = {"throughput_rps": sim.completed() / duration_s, "mean_batch": sum(sizes) / len(sizes)}
    out["ratio"] = out["batched"]["throughput_rps"] / out["one_per_forward"]["throughput_rps"]
    out["cost_model_ratio"] = 32 * cm.cost("m", 1) / cm.cost("m", 32)  # what full batches could give
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cost", choices=[*COSTS, "all"], default="all")
    parser.add_argument("--duration", type=float, default=60.0, help="simulated seconds per latency run")
    parser.add_argument("--requests", type=int, default=8000, help="requests per tenant-switch run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    if args.duration <= 0 or args.requests < 1:
        parser.error("--duration must be > 0 and --requests >= 1")
    defaults = SchedulerConfig()
    print(
        f"scheduler defaults: fairness_bound_s={defaults.fairness_bound_s} latency_bound_s={defaults.latency_bound_s}"
        f" max_batch_delay_ms={defaults.max_batch_delay_ms} shared_batch_cost_factor="
        f"{defaults.shared_batch_cost_factor}"
    )
    results: dict[str, Any] = {}
    started = time.perf_counter()
    for cm in COSTS.values() if args.cost == "all" else [COSTS[args.cost]]:
        print(
            f"\n== cost model {cm.name}: batch of n = {cm.cost.fixed_s * 1e3:g} ms + {cm.cost.per_item_s * 1e3:g}"
            f" ms * n, scrub {cm.scrub_s * 1e3:g} ms ({cm.source})"
        )
        light = light_scenario(cm, args.duration, args.seed)
        print("1. light tenant p99 (10% load, Poisson) while a heavy tenant floods with 16 clients [goal <= 2x]")
        for label, row in light.items():
            print(
                f"   {label:22s} alone {row['p99_alone_ms']:8.1f} ms  flood {row['p99_flood_ms']:8.1f} ms  "
                f"ratio {row['ratio']:5.2f}x"
            )
        switches = switch_scenario(cm, args.requests, args.duration, args.seed)
        print(
            "2. tenant switches per 1000 requests, 8 tenants interleaved [goal <= 0.25x FIFO]: open loop, "
            "round-robin arrivals at a load relative to one-per-forward capacity; closed: 4 clients each, "
            "think time 2 requests' service; rtt: 2 clients each, 0.5-1.5 ms round trip"
        )
        for row in switches:
            load = row["load"] if isinstance(row["load"], str) else f"{row['load']:.1f}"
            extra = ""
            if "throughput_rps" in row["fair"]:
                extra = f"  req/s FIFO {row['fifo']['throughput_rps']:.0f} fair {row['fair']['throughput_rps']:.0f}"
            if "no_anticipation_switches_per_1000" in row["fair"]:
                extra += f"  (fair without anticipation {row['fair']['no_anticipation_switches_per_1000']:.0f})"
            print(
                f"   batch<= {row['batch_size']:2d} load {load:>6s}: FIFO {row['fifo']['switches_per_1000']:6.0f}"
                f" (p99 {row['fifo']['p99_ms']:9.1f} ms)  fair {row['fair']['switches_per_1000']:6.0f}"
                f" (p99 {row['fair']['p99_ms']:9.1f} ms)  ratio {row['ratio']:.2f}x{extra}"
            )
        batching = batching_scenario(cm, args.duration)
        print("3. one tenant, 32 clients: grouped batching vs one request per forward")
        print(
            f"   batched {batching['batched']['throughput_rps']:8.1f} req/s (mean batch "
            f"{batching['batched']['mean_batch']:.1f})  one-per-forward "
            f"{batching['one_per_forward']['throughput_rps']:8.1f} req/s  ratio {batching['ratio']:.2f}x "
            f"(cost model allows {batching['cost_model_ratio']:.2f}x)"
        )
        results[cm.name] = {
            "cost": {
                "fixed_s": cm.cost.fixed_s,
                "per_item_s": cm.cost.per_item_s,
                "scrub_s": cm.scrub_s,
                "source": cm.source,
            },
            "light_tenant": light,
            "tenant_switches": switches,
            "batching": batching,
        }
    print(f"\n({time.perf_counter() - started:.1f} s wall)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
