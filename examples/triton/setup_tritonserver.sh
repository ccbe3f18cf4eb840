#!/usr/bin/env bash
# Install a CPU-capable Triton Inference Server for the example and tests, outside the project's venv.
#
# Triton 2.51 (tritonserver, the python backend and its stub for this Python) comes from the
# `nvidia-pytriton` 0.7.0 wheel on PyPI, unpacked rather than pip-installed: PyTriton pins numpy<2, which
# would downgrade the venv. That backend's C++ half predates NumPy 2, so the stub gets its own numpy<2 in
# DEST/pydeps, first on its PYTHONPATH. The stub embeds the system's libpython3.X (Debian: libpython3.11).
#
#   examples/triton/setup_tritonserver.sh [DEST]      # prints DEST; idempotent
#
# DEST defaults to $CLEANROOM_TRITON_HOME or ~/.cache/cleanroom/tritonserver-2.51.
set -euo pipefail

DEST="${1:-${CLEANROOM_TRITON_HOME:-$HOME/.cache/cleanroom/tritonserver-2.51}}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-$REPO/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
PYVER="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"

if [ -f "$DEST/.complete-$PYVER" ]; then
    echo "$DEST"
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PY" -m pip download --quiet --no-deps --dest "$work" "nvidia-pytriton==0.7.0" >&2
"$PY" - "$work" <<'PYEOF'
import sys, zipfile, pathlib
work = pathlib.Path(sys.argv[1])
wheel = next(work.glob("nvidia_pytriton-*.whl"))
zipfile.ZipFile(wheel).extractall(work / "x")
PYEOF
src="$work/x/pytriton/tritonserver"
stub="$src/python_backend_stubs/$PYVER/triton_python_backend_stub"
[ -f "$stub" ] || { echo "no python backend stub for Python $PYVER in nvidia-pytriton 0.7.0" >&2; exit 1; }

mkdir -p "$DEST/bin" "$DEST/lib" "$DEST/backends/python"
install -m 0755 "$src/bin/tritonserver" "$DEST/bin/tritonserver"
cp "$work/x/nvidia_pytriton.libs/"* "$DEST/lib/"
cp "$src/backends/python/"* "$DEST/backends/python/"
install -m 0755 "$stub" "$DEST/backends/python/triton_python_backend_stub"
"$PY" -m pip install --quiet --no-deps --target "$DEST/pydeps" "numpy<2" >&2

if ldd "$DEST/backends/python/triton_python_backend_stub" | grep -q "libpython$PYVER.*not found"; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y -q "libpython$PYVER" >&2 || { apt-get update -q >&2 && apt-get install -y -q "libpython$PYVER" >&2; }
    else
        echo "the Triton python stub needs libpython$PYVER.so.1.0 (Debian: apt-get install libpython$PYVER)" >&2
        exit 1
    fi
fi
touch "$DEST/.complete-$PYVER"
echo "$DEST"
