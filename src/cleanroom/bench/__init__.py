"""Benchmarks shipped with the runtime (`cleanroom bench ...`). Heavy imports happen inside commands."""

from cleanroom.bench.scrub import register

__all__ = ["register"]
