"""The checks before a run: what can be known to fail before anything is loaded or written.

:func:`check_before_training` is run by :func:`tdpo.train` (so by ``tdpo train`` too) before the
trainer starts: the run folder can be made (:func:`output_dir_problem`), the data source exists (offline:
a hub dataset is in the local cache), the model, tokenizer and reference sources can load
(:func:`check_model_source`), and the packages that options need are installed. Each error is one line
naming the config key.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from tdpo.config import ConfigError, TrainConfig
from tdpo.data import check_source
from tdpo.files import cache_root
from tdpo.hub import hub_offline, looks_like_path
from tdpo.loss.registry import get_loss
from tdpo.model_errors import model_load_error
from tdpo.pretrained import BUILTIN_MODEL_NAME, MARKER_FILE, gguf_source
from tdpo.safe_weights import check_safetensors_folder


def output_dir_problem(cfg: TrainConfig) -> str | None:
    """Why the run folder cannot be made, or None: ``output_dir`` (or a folder above it, or the run
    folder itself) is a file, or the nearest existing folder cannot be written."""
    out = Path(cfg.output_dir)
    run_dir = cfg.run_dir()
    for path in (out, *out.parents):
        if path.is_dir():
            break
        if path.exists():
            if path == out:
                return f"output_dir {cfg.output_dir!r} is a file, not a folder"
            return f"output_dir {cfg.output_dir!r}: {path} is a file, not a folder"
    if run_dir.exists() and not run_dir.is_dir():
        return f"the run folder {run_dir} (output_dir/run_name) is a file, not a folder"
    existing = next((p for p in (run_dir, *run_dir.parents) if p.is_dir()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        return f"output_dir {cfg.output_dir!r}: cannot write into {existing} (permission denied)"
    return None


def check_model_source(name_or_path: str, *, key: str, what: str = "model", revision: str | None = None) -> None:
    """Fail fast, without loading anything, on a model source that cannot load: a local folder that does
    not exist or is a file or holds pickled weights only (:mod:`tdpo.safe_weights`), the built-in model
    without its package, or (offline, ``HF_HUB_OFFLINE=1``) a hub id not in the local hub cache.

    Raises:
        tdpo.model_errors.ModelLoadError: naming ``key``.
    """
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
            check_safetensors_folder(name_or_path, key=key)
        return
    if hub_offline() is None:
        return  # a hub id: only loading it tells
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(name_or_path, revision=revision, local_files_only=True)
    except Exception as err:  # not in the cache (or an invalid id): say so in one line
        raise model_load_error(name_or_path, err, what=what, key=key) from None


def check_before_training(cfg: TrainConfig, *, data_from_config: bool = True) -> None:
    """Check, before anything is loaded or written, what can be checked cheaply: the run folder can be
    made, local data files exist (offline, a hub dataset is in the local cache), and the local model
    folders exist (offline, hub models are in the local cache). Each error names the key.

    Args:
        cfg: the run's configuration.
        data_from_config: whether the run reads ``cfg.data`` (False: the data was given, the data source
            is not checked).

    Raises:
        ConfigError: ``output_dir`` (or the run folder) is a file or cannot be written; an option needs a
            package that is not installed (``logging.wandb``, ``logging.tensorboard``, ``lora.enabled``).
        FileNotFoundError, ValueError, tdpo.data.HubDatasetError: the data source (see
            :func:`tdpo.data.check_source`).
        tdpo.model_errors.ModelLoadError: a model or tokenizer source (see :func:`check_model_source`).
    """
    problem = output_dir_problem(cfg)
    if problem:
        raise ConfigError(problem)
    if data_from_config:
        check_source(cfg.data)
    if cfg.model.tokenizer:
        check_model_source(cfg.model.tokenizer, key="model.tokenizer", what="tokenizer", revision=cfg.model.revision)
    check_model_source(cfg.model.name_or_path, key="model.name_or_path", revision=cfg.model.revision)
    if cfg.reference.name_or_path and get_loss(cfg.loss.name).needs_reference and not cfg.reference.cache_logps:
        check_model_source(cfg.reference.name_or_path, key="reference.name_or_path")
    for key, on, package in (("logging.wandb", cfg.logging.wandb, "wandb"),
                             ("logging.tensorboard", cfg.logging.tensorboard, "tensorboard"),
                             ("lora.enabled", cfg.lora.enabled, "peft")):
        if on and importlib.util.find_spec(package) is None:
            raise ConfigError(f"{key}: true needs the {package} package: pip install {package} (or set {key}=false)")
