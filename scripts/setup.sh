#!/usr/bin/env bash
# Set up softbits from a fresh clone: system tools (gcc, g++, Cortex-M gcc/g++ with newlib, QEMU's
# emulated Arm boards, libcoap client, mosquitto), a virtual environment in .venv with the CPU build of
# torch and the package with all extras.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v g++ >/dev/null 2>&1 || missing+=(g++)  # the C++ builds of the header and the package's sketch
if ! command -v arm-none-eabi-gcc >/dev/null 2>&1; then
  missing+=(gcc-arm-none-eabi libnewlib-arm-none-eabi)
elif [ "$(arm-none-eabi-gcc -print-file-name=rdimon.specs)" = rdimon.specs ]; then
  missing+=(libnewlib-arm-none-eabi)  # gcc names the file back when newlib is not installed
fi
command -v qemu-system-arm >/dev/null 2>&1 || missing+=(qemu-system-arm)
command -v coap-client-notls >/dev/null 2>&1 || missing+=(libcoap3-bin)
{ command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; } || missing+=(mosquitto)  # the MQTT bridge's tests
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "note: missing system packages (${missing[*]}); the tests that need them will be skipped" >&2
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip_install() {  # quiet, without the per-package notes some local package indexes print
  .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2>&1 | { grep -v 'WARNING: Location .* is ignored' || true; }
}
pip_install torch==2.13.0
pip_install -e ".[all]"
echo "softbits is set up in .venv ($(.venv/bin/softbits --version 2>/dev/null || echo installed))"
