"""KMS calls per request and the latency the key cache saves, cache on vs off, in one run.

    .venv/bin/python benchmarks/keys/key_cache.py [--requests 400] [--tenants 4] [--kms-latency-ms 2.0]

The KMS is the local one wrapped with a fixed round-trip delay (a remote KMS costs a network round trip
per unwrap; 2 ms is a same-region Vault/KMS call). Goal: <= 1 KMS call per tenant per TTL with the cache.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cleanroom.config import Settings
from cleanroom.keys.local import LocalKMS
from cleanroom.runtime.models import EchoModel, ModelRegistry
from cleanroom.runtime.session import CallContext
from cleanroom.server.services import build_services


class SlowKMS:
    """Delegates to a real KMS after sleeping one simulated round trip per call."""

    def __init__(self, inner: LocalKMS, latency_s: float) -> None:
        self._inner, self._latency_s, self.name = inner, latency_s, inner.name
        self.calls = 0
        self.by_method: Counter[str] = Counter()

    def __getattr__(self, attribute: str) -> Any:
        target = getattr(self._inner, attribute)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            self.by_method[attribute] += 1
            time.sleep(self._latency_s)
            return target(*args, **kwargs)

        return call


class NullAudit:
    def record(self, event: Any) -> None:
        pass


def run(ttl_s: float, requests: int, tenants: int, latency_s: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="cleanroom-keybench-") as tmp:  # tenant keys: removed after
        return _run(Path(tmp), ttl_s, requests, tenants, latency_s)


def _run(data_dir: Path, ttl_s: float, requests: int, tenants: int, latency_s: float) -> dict[str, float]:
    services = build_services(
        Settings(data_dir=data_dir, key_cache_ttl_s=ttl_s, models=["echo"]),
        audit=NullAudit(),
        models=ModelRegistry({"echo": EchoModel()}),
    )
    slow = SlowKMS(services.kms, latency_s)  # type: ignore[arg-type]
    services.keyring.kms = slow  # type: ignore[assignment]
    from cleanroom.crypto.sealed import seal_request
    from cleanroom.keys.public_key import TenantPublicKey

    created = [services.tenants.create(f"t{i}") for i in range(tenants)]
    principals = [services.tenants.authenticate(c.api_key) for c in created]
    keys = [TenantPublicKey.parse(c.public_key) for c in created]
    slow.calls = 0
    slow.by_method.clear()
    times = []
    start = time.perf_counter()
    for i in range(requests):
        n = i % tenants
        body = seal_request(keys[n].key, keys[n].key_id, b"x" * 1024, tenant_id=keys[n].tenant_id, model="echo").body
        t0 = time.perf_counter()
        services.runtime.handle(CallContext(principals[n], "echo"), body)
        times.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    services.close()
    return {
        "kms_calls": slow.calls,
        "unwraps": slow.by_method["unwrap"],
        "kms_calls_per_request": slow.calls / requests,
        "median_ms": statistics.median(times) * 1e3,
        "elapsed_s": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="sealed echo requests, round-robin over tenants")
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--kms-latency-ms", type=float, default=2.0, help="simulated KMS round trip per call")
    args = parser.parse_args()
    if args.tenants < 1 or args.requests < args.tenants:
        parser.error("need --tenants >= 1 and --requests >= --tenants")
    latency = args.kms_latency_ms / 1000
    cached = run(30.0, args.requests, args.tenants, latency)
    uncached = run(0.0, args.requests, args.tenants, latency)
    print(
        f"cache on  (TTL 30 s): {cached['unwraps']:.0f} unwraps for {args.requests} requests of "
        f"{args.tenants} tenants ({cached['unwraps'] / args.tenants:.2f} per tenant per TTL); "
        f"{cached['kms_calls']:.0f} KMS calls with the per-request policy check; "
        f"median request {cached['median_ms']:.2f} ms"
    )
    print(
        f"cache off           : {uncached['unwraps']:.0f} unwraps ({uncached['unwraps'] / args.requests:.2f} "
        f"per request); {uncached['kms_calls']:.0f} KMS calls; median request {uncached['median_ms']:.2f} ms"
    )
    print(
        f"latency saved by the cache: {uncached['median_ms'] - cached['median_ms']:.2f} ms per request "
        f"({uncached['median_ms'] / cached['median_ms']:.2f}x)"
    )


if __name__ == "__main__":
    main()
