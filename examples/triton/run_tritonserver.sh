#!/usr/bin/env bash
# Run Triton on examples/triton/model_repository under `cleanroom exec` (hardened allocator, no core dumps).
#
#   CLEANROOM_DATA_DIR=./cleanroom-data examples/triton/run_tritonserver.sh [extra tritonserver args]
#
# Create a tenant first: cleanroom tenant create shop --data-dir ./cleanroom-data --json
# then call it with examples/triton/client.py.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PY="${PYTHON:-$REPO/.venv/bin/python}"
TRITON="$("$HERE/setup_tritonserver.sh")"
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
export CLEANROOM_DATA_DIR="${CLEANROOM_DATA_DIR:-$PWD/cleanroom-data}"
exec "$PY" -m cleanroom exec -- env \
    LD_LIBRARY_PATH="$TRITON/lib" \
    CLEANROOM_TRITON_PYTHONPATH="$TRITON/pydeps:$REPO/src:$SITE" \
    "$TRITON/bin/tritonserver" \
    --model-repository="$HERE/model_repository" \
    --backend-directory="$TRITON/backends" \
    --http-port="${TRITON_HTTP_PORT:-8000}" --allow-grpc=false --allow-metrics=false \
    "$@"
