#!/usr/bin/env bash
# Creates .venv if it is missing and installs the project into it; safe to run again.
# torch==2.13.0 goes in first: without the pin pip resolves a multi-GB CUDA build.
#   scripts/setup.sh [dev|run]   dev (the default): the project with its dev extra (tests, lint,
#                                docs: make setup, make test); run: the project alone, what a
#                                sweep needs (make sweep: a fresh clone's study starts ~10 s
#                                sooner). An install of dev serves run too.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
SET=${1:-dev}
case "$SET" in
  dev) spec='.[dev]' ;;
  run) spec='.' ;;
  *) echo "setup: unknown set '$SET' (dev | run)" >&2; exit 2 ;;
esac
stamp=.venv/.harness-installed
base="torch=${TORCH_VERSION} $(cat pyproject.toml setup.py | sha256sum | cut -d' ' -f1)"

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
if [ -f "$stamp" ]; then
  have=$(cat "$stamp")
  if [ "$have" = "$base dev" ] || [ "$have" = "$base $SET" ]; then
    exit 0
  fi
fi
echo "setup: installing torch==${TORCH_VERSION}, then the project ('${spec}')"
# pip's exit status is kept; only the local index's "Location ... is ignored" noise is dropped.
pip_install() {
  .venv/bin/python -m pip install -q --disable-pip-version-check "$@" \
    2> >(grep -v '^WARNING: Location' >&2)
}
# pip installs torch (it honours pip's configuration: a local wheel, a constraints file) without
# compiling its ~2,000 modules to bytecode (the few a run imports compile on first use), and uv.
# uv installs the project and its ~130 dependencies several times faster than pip: a fresh
# `make sweep` set-up took 36 s against 78 s (docs/benchmarks.md, "The default study, end to
# end"). Where uv cannot be installed or fails, pip installs them as before.
pip_install --no-compile "torch==${TORCH_VERSION}"
if pip_install uv && .venv/bin/python -m uv pip install -q --compile-bytecode \
    --python .venv/bin/python -e "$spec"; then
  :
else
  echo "setup: uv is unavailable or failed; installing with pip" >&2
  pip_install -U pip
  pip_install -e "$spec"
fi
.venv/bin/python -c "import torch, transformers, peft, optuna, mlflow, evaluate, hydra" \
  || { echo "setup: the install is incomplete (see pip's output above)" >&2; exit 1; }
echo "$base $SET" > "$stamp"
echo "setup: done"
