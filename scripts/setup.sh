#!/usr/bin/env bash
# One-time (idempotent) set-up on a fresh Debian machine with Python 3.11:
# Fashion-MNIST from Debian's package, and a virtual environment .venv with
# fedtflite and its dependencies (TensorFlow only builds models; clients use LiteRT).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${FEDTFLITE_DATA_DIR:-}" ] && [ ! -e /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dataset-fashion-mnist
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[dev]"
