"""`python -m cleanroom` is the `cleanroom` command (used when `serve` re-executes itself hardened)."""

try:
    from cleanroom.cli import main
except KeyboardInterrupt:  # Ctrl-C during the imports (0.1-0.3 s, twice for `serve`): no traceback
    import sys

    sys.stderr.write("cleanroom: interrupted\n")
    raise SystemExit(130) from None

raise SystemExit(main())
