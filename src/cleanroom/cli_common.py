"""Argument helpers every `cleanroom` command group shares: `--data-dir`, `Settings` from the arguments and
the environment, and the checked number types argparse lacks.

Separate from cli.py so that the command-group modules (cli_serve.py, cli_tenant.py, ...) and the plugin
groups (doctor, backup, keys) can use them without importing the parser that imports them.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any


def settings_from_args(args: argparse.Namespace, **overrides: Any) -> Any:
    from cleanroom.config import Settings
    from cleanroom.errors import ConfigurationError

    config_path = os.environ.get("CLEANROOM_CONFIG")
    if config_path and not Path(config_path).is_file():
        # pydantic-settings reads a missing TOML file as empty: every setting in it would be dropped unseen.
        raise ConfigurationError(f"CLEANROOM_CONFIG names {config_path}, which is not a file")
    values: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    if getattr(args, "data_dir", None) is not None:
        values["data_dir"] = args.data_dir
    return Settings(**values)


def positive_finite(text: str) -> float:
    """A float flag that must be a real, positive number (argparse's `float` takes inf and nan)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive, finite number, got {text}")
    return value


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="data directory (default: $CLEANROOM_DATA_DIR or ./cleanroom-data)"
    )
