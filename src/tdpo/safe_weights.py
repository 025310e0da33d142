"""Loading Hugging Face models from safetensors only: no weights file tdpo loads is unpickled.

Every model tdpo loads (policy, reference, judge and reward models, the IMDb sentiment classifier and
SFT models) goes through :func:`from_pretrained`, which passes ``use_safetensors=True`` for local folders
and hub ids alike. A local folder holding pickled weights (``pytorch_model.bin``, ``*.pt``, ``*.pth``,
``*.ckpt``) and no ``*.safetensors`` file is refused before transformers looks at it, with one line
naming the file and the command that converts it; so is a ``config.json`` whose ``transformers_weights``
names a file that is not safetensors (transformers would load that file whatever ``use_safetensors``
says). Unpickling runs whatever code the file asks for, so the conversion is for the user to run, on a
file they trust.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from tdpo.model_errors import ModelLoadError

PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
"""Suffixes of weight files written with ``torch.save`` / pickle."""
_NOT_WEIGHTS = {"training_args.bin"}  # pickled, but settings, not weights: named only when nothing else is


def pickled_weight_files(folder: str | Path) -> list[str]:
    """The pickled weight files in ``folder`` (top level, sorted, ``pytorch_model*`` first) when it holds
    no ``*.safetensors`` file; ``[]`` when it holds one, or no pickled file."""
    folder = Path(folder)
    files = [p.name for p in folder.iterdir() if p.is_file()]
    if any(name.endswith(".safetensors") for name in files):
        return []
    pickled = sorted(name for name in files if name.lower().endswith(PICKLED_SUFFIXES))
    weights = [name for name in pickled if name not in _NOT_WEIGHTS]
    return sorted(weights, key=lambda name: (not name.startswith("pytorch_model"), name))


def conversion_command(folder: str | Path, auto_class: str = "AutoModelForCausalLM") -> str:
    """A shell command that rewrites the pickled weights of model folder ``folder`` as safetensors (to
    run only on a file one trusts: loading it unpickles it)."""
    path = json.dumps(str(folder))
    code = (f"from transformers import {auto_class} as M; "
            f"M.from_pretrained({path}).save_pretrained({path}, safe_serialization=True)")
    return f"python -c {shlex.quote(code)}"


def check_safetensors_folder(name_or_path: str | Path, *, auto_class: str = "AutoModelForCausalLM",
                             what: str = "model", key: str | None = None) -> None:
    """Refuse a local model folder whose weights could only be loaded by unpickling.

    Args:
        name_or_path: a local folder (anything else, such as a hub id, passes: transformers is asked
            for safetensors with ``use_safetensors=True``).
        auto_class: the transformers class the folder is loaded with, for the conversion command.
        what: ``"model"``, ``"reward model"`` ..., for the message.
        key: the config key or option holding ``name_or_path``, named in the message.

    Raises:
        tdpo.model_errors.ModelLoadError: one line naming the pickled file (or the ``config.json`` entry)
            and how to convert it.
    """
    folder = Path(name_or_path).expanduser()
    if not folder.is_dir():
        return
    pickled = pickled_weight_files(folder)
    if pickled:
        more = f" (and {len(pickled) - 1} more)" if len(pickled) > 1 else ""
        raise ModelLoadError(
            str(name_or_path),
            f"{folder / pickled[0]}{more} holds pickled weights and the folder has no .safetensors file; tdpo loads "
            f"safetensors only, as unpickling can run code. If you trust the file, convert it once: "
            f"{conversion_command(folder, auto_class)}", what=what, key=key)
    config = folder / "config.json"
    try:
        named = json.loads(config.read_text(encoding="utf-8")).get("transformers_weights")
    except (OSError, ValueError, AttributeError):
        return  # no readable config: transformers says so
    if named is not None and not str(named).endswith((".safetensors", ".safetensors.index.json")):
        raise ModelLoadError(
            str(name_or_path), f"{config}: transformers_weights names {named!r}, which is not a safetensors file; "
            "tdpo loads safetensors only", what=what, key=key)


def from_pretrained(auto_class: Any, name_or_path: str | Path, *, what: str = "model", key: str | None = None,
                    **kwargs: Any) -> Any:
    """``auto_class.from_pretrained(name_or_path, use_safetensors=True, **kwargs)`` after
    :func:`check_safetensors_folder`.

    Args:
        auto_class: a transformers class (``AutoModelForCausalLM``, ``AutoModelForSequenceClassification``, ...).
        name_or_path: a local folder or a hub id.
        what, key: named in the error for a folder with pickled weights only.
        kwargs: passed on (``dtype``, ``revision``, ``trust_remote_code``, ...).

    Raises:
        tdpo.model_errors.ModelLoadError: a local folder with pickled weights only.
        OSError: what transformers raises (no safetensors weights on the hub, no such folder, ...).
    """
    check_safetensors_folder(name_or_path, auto_class=getattr(auto_class, "__name__", "AutoModel"), what=what,
                             key=key)
    return auto_class.from_pretrained(name_or_path, use_safetensors=True, **kwargs)
