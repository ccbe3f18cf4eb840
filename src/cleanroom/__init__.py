"""cleanroom: a GPU-aware secure inference runtime.

The parts users touch are `cleanroom.client.Client`, the `cleanroom` command, the ASGI middleware in
`cleanroom.integrations` and `cleanroom.runtime.spill.SpillFile`. Everything under `crypto`, `memory` and
`kernels` is a sharp internal: correct only when used the way the runtime uses it.
"""

__version__ = "0.1.0"
