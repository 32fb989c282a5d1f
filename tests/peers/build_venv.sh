#!/usr/bin/env bash
# Build .venv-peers once: llama-cpp-python[server] from source plus gguf.
# Usage: tests/peers/build_venv.sh VENV STAMP   (called by `make test-peers`)
# Runs at the lowest CPU priority so it yields to whatever else runs on the machine.
set -euo pipefail
venv=$1
stamp=$2
python=${PYTHON:-python3}
here=$(dirname "$0")

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
# LLAVA_BUILD=OFF skips the multimodal library (mtmd), which the server only imports
# for vision chat formats; it saves a third of the build.
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
start=$(date +%s)
nice -n 19 "$venv/bin/python" -m pip install --no-binary llama-cpp-python -r "$here/requirements.txt"
echo "built in $(( $(date +%s) - start ))s"
rm -f "$venv"/.peers-*
touch "$stamp"
