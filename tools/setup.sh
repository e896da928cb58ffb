#!/usr/bin/env bash
# Installs what swin-rollout needs on Debian 12, and nothing that is already there.
# Idempotent: `make demo` and `make test` run it first.
set -euo pipefail

packages=(
  build-essential pkg-config clang libclang-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
  dataset-fashion-mnist
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install the Rust toolchain (https://rustup.rs) and run again" >&2
  exit 1
fi

# The Python package's test environment (.venv): maturin builds the bindings into it, pytest
# runs them, torch/transformers/timm make the tiny reference models `capture` is tested on.
# Pinned, so that CI and every machine test against the same versions.
python_packages=(
  maturin==1.16.0 numpy==2.4.6 pytest==9.2.0
  torch==2.15.0 transformers==5.24.0 timm==1.0.31 safetensors==0.8.0
)
python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null 2>&1; then
  echo "setup: $python not found; install Python 3.9 or newer (apt-get install python3 python3-venv) and run again" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$python" -m venv .venv
fi
stamp=.venv/.swin-rollout-packages
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${python_packages[*]}" ]; then
  echo "setup: installing ${python_packages[*]} into .venv (once; torch is large)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "${python_packages[@]}"
  echo "${python_packages[*]}" > "$stamp"
fi
