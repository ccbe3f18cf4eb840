"""Argument helpers every `cleanroom` command group shares: `--data-dir`, `Settings` from the arguments and
the environment, and the checked number types argparse lacks.

Separate from cli.py so that the command-group modules (cli_serve.py, cli_tenant.py, ...) and the plugin
groups (doctor, backup, keys) can use them without importing the parser that imports them.
"""

from __future__ import annotations

import argparse
import errno
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
    settings = Settings(**values)
    if hasattr(args, "data_dir"):  # a command that works in a data dir
        check_data_dir_path(Path(settings.data_dir))
    return settings


def check_data_dir_path(data_dir: Path) -> None:
    """Refuse a data dir that can never be one: it, or the nearest part of its path that exists, is not a
    directory. Checked up front because the first file a command opens in it otherwise failed as
    `Not a directory: DIR/server.json`, naming a file the user never gave. Raised as the OS error it is
    (`cleanroom: Not a directory: DIR (...)`, exit 1)."""
    for path in (data_dir, *data_dir.parents):
        if path.exists():
            if path.is_dir():
                return
            why = "the data dir is a file" if path == data_dir else f"a file on the path of the data dir {data_dir}"
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", f"{path} ({why})")


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
