"""Runnable examples of embedding cleanroom (see docs/embedding.md); a package so `examples.X.Y` imports."""
