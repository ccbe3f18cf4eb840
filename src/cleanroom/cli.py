"""The `cleanroom` command (DESIGN §5): the top-level parser, the entry point `main` (`cleanroom.cli:main`),
and how a failure ends (one line on stderr, exit 1 or 2).

Each command group lives beside the code it drives and contributes its parser through `register(sub)`:
the built-in ones in cli_serve.py, cli_tenant.py, cli_infer.py and cli_exec.py, the others in
`_PLUGIN_MODULES`; shared argument helpers are in cli_common.py, the failure text in cli_errors.py. The
names other modules and tests import from here (`settings_from_args`, `check_url_arg`, ...) still are.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, cast

from cleanroom import __version__
from cleanroom.cli_common import add_data_dir, positive_finite, settings_from_args
from cleanroom.cli_errors import describe_failure
from cleanroom.cli_exec import cmd_exec, perturb_byte
from cleanroom.cli_exec import register as register_exec
from cleanroom.cli_infer import check_api_key_arg, check_url_arg, cmd_infer, public_key_arg
from cleanroom.cli_infer import register as register_infer
from cleanroom.cli_serve import (
    UVICORN_STARTUP_FAILURE,
    cmd_serve,
    install_logging,
    listen_problem,
    run_explaining_bind_failures,
)
from cleanroom.cli_serve import register as register_serve
from cleanroom.cli_tenant import (
    cmd_tenant_create,
    cmd_tenant_delete,
    cmd_tenant_keys,
    cmd_tenant_list,
    cmd_tenant_update,
)
from cleanroom.cli_tenant import register as register_tenant
from cleanroom.errors import CleanroomError

# Command groups contributed by other packages: each module has `register(subparsers)`.
_PLUGIN_MODULES = (
    "cleanroom.logging_setup",  # redact
    "cleanroom.audit.commands",  # audit verify|show|prove
    "cleanroom.bench.scrub",  # bench scrub
    "cleanroom.keys.commands",  # keys rotate|revoke|restore|status
    "cleanroom.doctor",  # doctor
    "cleanroom.backup",  # backup create|restore
    "cleanroom.server.mtls",  # client-cert bind|unbind|list
    "cleanroom.batch_cli",  # batch submit|status|fetch|cancel
)


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), as every other error of the command:
    `cleanroom infer: the following arguments are required: --url (see cleanroom infer --help)`.
    Subcommand parsers, the plugins' included, are made from this class too."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._refuse_conflicting_repeats(list(sys.argv[1:] if args is None else args))
        return super().parse_known_args(args, namespace)

    def _refuse_conflicting_repeats(self, tokens: list[str]) -> None:
        """`--data-dir a ... --data-dir b` is a usage error (exit 2), not a silent `b`: the second value
        usually comes from a wrapper script or an alias the user forgot, and acting on the wrong data dir or
        port is worse than stopping. The same value twice is harmless and passes. Each (sub)parser checks
        the options it owns, up to `--` (and, in `exec`, up to the command it runs)."""
        stop_at_positional = any(action.nargs == argparse.REMAINDER for action in self._actions)
        seen: dict[str, tuple[str, str]] = {}
        i = 0
        while i < len(tokens):
            word = tokens[i]
            if word == "--" or (stop_at_positional and not word.startswith("-")):
                return
            name, has_value, value = word.partition("=")
            action = self._option_string_actions.get(name)
            if type(action) is argparse._StoreAction and action.nargs is None:
                if not has_value:
                    if i + 1 >= len(tokens):
                        return  # argparse says "expected one argument"
                    i += 1
                    value = tokens[i]
                earlier = seen.setdefault(action.dest, (name, value))
                if earlier[1] != value:
                    self.error(f"{earlier[0]} given twice ({earlier[1]!r}, then {value!r}): give it once")
            i += 1

    def error(self, message: str) -> Any:
        for action in self._actions:  # `required: tenant_command` names a variable; say what may go there
            if isinstance(action, argparse._SubParsersAction) and action.dest and action.choices:
                message = message.replace(action.dest, "{" + ",".join(action.choices) + "}")
        self.exit(2, f"{self.prog}: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="cleanroom", description="GPU-aware secure inference runtime")
    parser.add_argument("--version", action="version", version=f"cleanroom {__version__}")
    # Typed as the plugins' `register` takes it; the parsers it makes are OneLineErrorParsers all the same.
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]", parser.add_subparsers(dest="command", required=True)
    )
    for register_builtin in (register_serve, register_tenant, register_infer, register_exec):  # --help lists them first
        register_builtin(sub)
    for module_name in _PLUGIN_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(argv)
    except KeyboardInterrupt:  # Ctrl-C while starting (imports, model loading) or working: no traceback
        print("cleanroom: interrupted", file=sys.stderr)
        return 130


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CleanroomError as exc:
        print(f"cleanroom: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except Exception as exc:
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            for error in exc.errors():
                field = ".".join(str(p) for p in error["loc"])
                print(
                    f"cleanroom: invalid setting {field} (CLEANROOM_{field.upper()}): {error['msg']}", file=sys.stderr
                )
            return 2
        from cleanroom.client import ClientError
        from cleanroom.keys.public_key import KeyPinMismatch

        if isinstance(exc, ClientError | KeyPinMismatch):
            print(f"cleanroom: {exc}", file=sys.stderr)
            return 1
        if os.environ.get("CLEANROOM_DEBUG"):
            raise
        print(f"cleanroom: {describe_failure(exc)}", file=sys.stderr)
        return 1


__all__ = [
    "UVICORN_STARTUP_FAILURE",
    "OneLineErrorParser",
    "add_data_dir",
    "build_parser",
    "check_api_key_arg",
    "check_url_arg",
    "cmd_exec",
    "cmd_infer",
    "cmd_serve",
    "cmd_tenant_create",
    "cmd_tenant_delete",
    "cmd_tenant_keys",
    "cmd_tenant_list",
    "cmd_tenant_update",
    "describe_failure",
    "install_logging",
    "listen_problem",
    "main",
    "perturb_byte",
    "positive_finite",
    "public_key_arg",
    "run_explaining_bind_failures",
    "settings_from_args",
]
