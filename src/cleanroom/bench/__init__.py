"""Benchmarks shipped with the runtime (`cleanroom bench ...`). Heavy imports happen inside commands."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `bench` command group (see `cleanroom.bench.scrub.register`)."""
    from cleanroom.bench.scrub import register as register_scrub

    register_scrub(subparsers)


__all__ = ["register"]
