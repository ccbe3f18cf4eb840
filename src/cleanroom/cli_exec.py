"""`cleanroom exec -- COMMAND`: run another program with cleanroom's process hardening (no core dumps,
glibc's freed memory overwritten with `--perturb-byte`).

Its own module because it replaces the process (execve) rather than returning, and checks the one flag
whose bad value would silently turn the wipe off.
"""

from __future__ import annotations

import argparse
import sys


def perturb_byte(text: str) -> int:
    """`--perturb-byte`: 1..255 (0x.. accepted). glibc ignores an out-of-range `glibc.malloc.perturb`
    and 0 turns it off, so either would leave freed memory unwiped without a word."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= 255:
        raise argparse.ArgumentTypeError(f"must be 1..255 (0 or more than a byte disables the wipe), got {text}")
    return value


def cmd_exec(args: argparse.Namespace) -> int:
    from cleanroom.memory.hardening import apply_process_hardening, exec_hardened, preloaded_allocators

    # Only the separator goes: a `--` inside COMMAND is the command's own (`python -c ... -- x`).
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("cleanroom exec: give the command after --", file=sys.stderr)
        return 2
    preloaded = preloaded_allocators()
    if preloaded:
        print(
            f"cleanroom exec: warning: LD_PRELOAD replaces glibc's malloc ({', '.join(preloaded)}); the freed-memory "
            "wiping applies to glibc's malloc only, so the command's freed plaintext may stay in memory",
            file=sys.stderr,
        )
    # RLIMIT_CORE=0 survives execve and the allocator settings travel in the environment; dumpability
    # does not (the kernel resets it on exec), so embedded cleanroom code (the ASGI middleware, the Ray
    # and Triton integrations) turns it off again inside the target process.
    apply_process_hardening(disable_core_dumps=True, not_dumpable=False)
    try:
        exec_hardened(command, args.perturb_byte)
    except FileNotFoundError:
        print(f"cleanroom exec: command not found: {command[0]}", file=sys.stderr)
        return 127
    except PermissionError:  # a file that is there but may not be run: 126, as a shell answers
        print(f"cleanroom exec: not executable: {command[0]}", file=sys.stderr)
        return 126


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    execp = sub.add_parser("exec", help="run COMMAND with cleanroom's process hardening")
    execp.add_argument(
        "--perturb-byte", type=perturb_byte, default=0xA5, help="fill byte for freed memory, 1..255 (default 0xA5)"
    )
    execp.add_argument("command", nargs=argparse.REMAINDER)
    execp.set_defaults(func=cmd_exec)
