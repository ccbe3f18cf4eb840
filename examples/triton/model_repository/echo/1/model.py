"""Triton loads `TritonPythonModel` from this file; cleanroom's base class does all the work."""

import os
import sys

# Triton's python stub starts its interpreter isolated: PYTHONPATH (and PYTHONMALLOC) are ignored. If
# cleanroom is not installed into the Python that Triton embeds, name where it is (run_tritonserver.sh does).
sys.path[:0] = [p for p in os.environ.get("CLEANROOM_TRITON_PYTHONPATH", "").split(os.pathsep) if p]

from cleanroom.integrations.triton import CleanroomTritonModel  # noqa: E402


class TritonPythonModel(CleanroomTritonModel):
    pass
