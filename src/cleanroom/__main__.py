"""`python -m cleanroom` is the `cleanroom` command (used when `serve` re-executes itself hardened)."""

from cleanroom.cli import main

raise SystemExit(main())
