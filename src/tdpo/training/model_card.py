"""The model card of a run's ``final/`` folder: ``README.md`` in the Hugging Face Hub's format.

The card is YAML front matter (``base_model``, ``library_name``, ``tags``, ``datasets``, ``license``)
followed by Markdown: what the model is (the loss and its parameters), the command that trained it,
the resolved config, the last train and evaluation metrics, and how to load it with transformers (and
peft for a LoRA adapter). ``hf upload <user>/<repo> runs/<run>/final`` publishes the folder with it.

:func:`render_model_card` is pure: a config dict, metrics and commands in, text out.
:func:`base_model_license` looks the base model's license up in local files only (its folder, or the
Hugging Face cache for a hub id; never the network); :func:`write_model_card` writes the text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tdpo.files import write_atomic
from tdpo.hub import looks_like_path

CARD_FILE = "README.md"
BUILTIN_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The hub id of the model ``model.name_or_path=builtin`` converts from its GGUF file."""
LICENSE_KEYS = ("license", "license_name", "license_link")
"""Front-matter keys copied from the base model's card (``license_name``/``license_link`` go with
``license: other``)."""
_BOOKKEEPING = ("split", "step", "examples", "epoch")
"""Keys of a ``metrics.jsonl`` row that say where it was logged, not what was measured."""


def base_model_name(name_or_path: str) -> str:
    """The name the card gives the base model: ``builtin`` -> its hub id; anything else as written
    (a hub id, or a local path)."""
    return BUILTIN_HUB_ID if name_or_path == "builtin" else name_or_path


def hub_dataset_id(source: str) -> str | None:
    """The hub dataset id of a ``data.source`` (aliases expanded: ``hh`` -> ``Anthropic/hh-rlhf``), or
    None for a local file or folder."""
    from tdpo.data.sources import is_local, resolve_source

    return None if is_local(source) else resolve_source(source)


def front_matter_of(text: str) -> dict[str, Any]:
    """The YAML front matter of a Markdown text (between a first line ``---`` and the next ``---``),
    or ``{}`` when it has none or it is not a mapping."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        return {}
    try:
        data = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _license_in_folder(folder: Path) -> dict[str, str]:
    """License keys of ``folder/README.md``'s front matter, else of ``folder/config.json``."""
    readme, config = folder / CARD_FILE, folder / "config.json"
    if readme.is_file():
        found = front_matter_of(readme.read_text(encoding="utf-8", errors="replace"))
        if found.get("license"):
            return {k: str(found[k]) for k in LICENSE_KEYS if found.get(k)}
    if config.is_file():
        try:
            data = json.loads(config.read_text())
        except (OSError, ValueError):
            return {}
        if isinstance(data, dict) and isinstance(data.get("license"), str) and data["license"]:
            return {"license": data["license"]}
    return {}


def base_model_license(name_or_path: str, revision: str | None = None) -> dict[str, str]:
    """The base model's ``license`` (with ``license_name``/``license_link`` when given), read from
    local files only: the folder's ``README.md`` front matter or ``config.json``, or for a hub id the
    copies of those in the Hugging Face cache. ``{}`` when not known."""
    if name_or_path == "builtin":
        from tdpo.models import resolve_model_path

        name_or_path = resolve_model_path(name_or_path)
    if looks_like_path(name_or_path):
        folder = Path(name_or_path).expanduser()
        return _license_in_folder(folder) if folder.is_dir() else {}
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return {}
    found: dict[str, str] = {}
    for filename in (CARD_FILE, "config.json"):
        try:
            cached = try_to_load_from_cache(name_or_path, filename, revision=revision)
        except Exception:  # an id the hub library refuses: nothing known
            return {}
        if isinstance(cached, str):  # a path (None or a sentinel when not cached)
            found = _license_in_folder(Path(cached).parent)
            if found:
                break
    return found


def last_metrics(rows: Sequence[Mapping[str, Any]]) -> tuple[int | None, dict[str, float | None]]:
    """The step and the measured values of the last of ``rows`` (``metrics.jsonl`` rows of one
    split); ``(None, {})`` for none."""
    if not rows:
        return None, {}
    row = rows[-1]
    step = row.get("step")
    return (int(step) if isinstance(step, int | float) else None,
            {k: v for k, v in row.items() if k not in _BOOKKEEPING})


class _OneLineDumper(yaml.SafeDumper):
    """PyYAML's safe dumper writing strings that hold line breaks double-quoted (``"\\n"``), on one line."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"' if "\n" in data else None)


_OneLineDumper.add_representer(str, _represent_str)


def compact_yaml(config: Mapping[str, Any]) -> str:
    """``config`` as YAML with each top-level entry on one line (a section as a flow mapping); it
    loads back to ``config``."""
    lines = []
    for key, value in config.items():
        text = yaml.dump({key: value}, Dumper=_OneLineDumper, sort_keys=False, allow_unicode=True,
                         default_flow_style=True, width=float("inf")).strip()
        lines.append(text[1:-1] if text.startswith("{") and text.endswith("}") else text)
    return "\n".join(lines)


def _format_value(value: Any) -> str:
    if value is None:
        return "n/a (not finite)"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _metrics_table(train: Mapping[str, Any], evaluation: Mapping[str, Any]) -> list[str]:
    """A Markdown table of metric names against their train and eval values."""
    names = list(evaluation) + [k for k in train if k not in evaluation]
    lines = ["| metric | train | eval |", "| --- | --- | --- |"]
    for name in names:
        cells = [_format_value(m[name]) if name in m else "" for m in (train, evaluation)]
        lines.append(f"| `{name}` | {cells[0]} | {cells[1]} |")
    return lines


def card_front_matter(config: Mapping[str, Any], *, license_info: Mapping[str, str] | None = None,
                      data_from_config: bool = True) -> dict[str, Any]:
    """The card's YAML front matter as a dict.

    Args:
        config: the resolved config (:func:`tdpo.config.config_to_dict`).
        license_info: the base model's license keys (:func:`base_model_license`); omitted when empty.
        data_from_config: whether the run read ``data.source`` (False when the caller handed the trainer
            its data: no ``datasets`` entry then).
    """
    loss = config["loss"]["name"]
    lora = bool(config.get("lora", {}).get("enabled"))
    front: dict[str, Any] = {"base_model": base_model_name(config["model"]["name_or_path"]),
                             "library_name": "transformers"}
    tags = ["tdpo", loss] + (["peft", "lora"] if lora else [])
    front["tags"] = list(dict.fromkeys(tags))
    dataset = hub_dataset_id(config["data"]["source"]) if data_from_config else None
    if dataset:
        front["datasets"] = [dataset]
    front.update({k: v for k, v in (license_info or {}).items() if v})
    return front


def _describe_loss(config: Mapping[str, Any]) -> str:
    """One sentence: the loss, what it computes and its parameter values."""
    from tdpo.loss.registry import LOSSES

    loss = config["loss"]
    spec = LOSSES.get(loss["name"])
    if spec is None:
        return f"the `{loss['name']}` loss"
    params = ", ".join(f"{p}={loss[p]}" for p in spec.param_names if p in loss)
    return f"the `{spec.name}` loss ({spec.description}{'; ' + params if params else ''})"


def render_model_card(
    config: Mapping[str, Any],
    *,
    train_metrics: Mapping[str, Any] | None = None,
    eval_metrics: Mapping[str, Any] | None = None,
    step: int | None = None,
    commands: Sequence[str] = (),
    license_info: Mapping[str, str] | None = None,
    data_from_config: bool = True,
    merged: bool = True,
    folder: str = "path/to/final",
) -> str:
    """The text of ``final/README.md``.

    Args:
        config: the resolved config as a nested dict (:func:`tdpo.config.config_to_dict`).
        train_metrics, eval_metrics: the last logged values of each split (names as in
            ``metrics.jsonl``; None for a value that was not finite).
        step: the optimizer steps trained.
        commands: the command lines that trained the run (the first one, then each resume).
        license_info: the base model's license keys, copied into the front matter.
        data_from_config: whether the data came from ``data.source`` (see :func:`card_front_matter`).
        merged: for a LoRA run, whether ``final/`` holds the merged model besides ``final/adapter``
            (not under FSDP/DeepSpeed).
        folder: the path the loading example reads the model from (the run's ``final/``).

    Returns:
        Markdown with YAML front matter, ending with a newline.
    """
    front = card_front_matter(config, license_info=license_info, data_from_config=data_from_config)
    base = front["base_model"]
    lora = bool(config.get("lora", {}).get("enabled"))
    run_name = config.get("run_name") or config["loss"]["name"]
    source = config["data"]["source"] if data_from_config else None
    if source:
        source = hub_dataset_id(source) or source
    lines = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip("\n"), "---", "",
             f"# {run_name}", ""]
    lines += [_what(config, base, source, step, lora, merged), ""]
    lines += _training_section(config, commands)
    lines += _results_section(train_metrics, eval_metrics, step)
    lines += _use_section(base, folder, lora, merged)
    return "\n".join(lines)


def _what(config: Mapping[str, Any], base: str, source: str | None, step: int | None, lora: bool,
          merged: bool) -> str:
    """The card's opening paragraph: the base model, the loss, the data, the steps, the LoRA adapter and
    the reference model."""
    what = (f"`{base}` fine-tuned with [tdpo](https://github.com/tdpo/tdpo) using {_describe_loss(config)}"
            + (f", on `{source}`" if source else "")
            + (f", for {step} optimizer step(s)" if step is not None else "") + ".")
    if lora:
        r, alpha = config["lora"].get("r"), config["lora"].get("alpha")
        what += (f" Trained as a LoRA adapter (r={r}, alpha={alpha}); "
                 + ("this folder holds the merged model and the adapter in `adapter/`."
                    if merged else "the adapter is in `adapter/` (not merged).")
                 )
    ref = config.get("reference", {}).get("name_or_path")
    if config.get("loss", {}).get("name") != "sft":
        what += f" The reference model is {'`' + ref + '`' if ref else 'the initial policy'}."
    return what


def _training_section(config: Mapping[str, Any], commands: Sequence[str]) -> list[str]:
    """The card's lines under ``## Training``: the command lines and the resolved settings."""
    lines = ["## Training", ""]
    if commands:
        lines += ["Command:" if len(commands) == 1 else "Commands (the run, then each resume):", "",
                  "```bash", *commands, "```", ""]
    else:
        lines += ["The command line was not recorded (the run was started from Python).", ""]
    lines += ["Resolved settings (`config.yaml` of the run):", "", "```yaml", compact_yaml(config), "```", ""]
    return lines


def _results_section(train_metrics: Mapping[str, Any] | None, eval_metrics: Mapping[str, Any] | None,
                     step: int | None) -> list[str]:
    """The card's lines under ``## Results``: the last metrics of each split as a table."""
    lines = ["## Results", ""]
    train, evaluation = dict(train_metrics or {}), dict(eval_metrics or {})
    if train or evaluation:
        at = f" at step {step}" if step is not None else ""
        lines += [f"The last logged train metrics and the final evaluation{at} (see `metrics.jsonl` "
                  "in the run folder for the whole run):", "", *_metrics_table(train, evaluation), ""]
    else:
        lines += ["No metrics were logged.", ""]
    return lines


def _use_section(base: str, folder: str, lora: bool, merged: bool) -> list[str]:
    """The card's lines under ``## Use``: loading the model (or the adapter on its base) with transformers."""
    quoted = json.dumps(folder)
    lines = ["## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", ""]
    if not lora or merged:
        lines += [f"model = AutoModelForCausalLM.from_pretrained({quoted})",
                  f"tokenizer = AutoTokenizer.from_pretrained({quoted})"]
    if lora:
        if merged:
            lines += ["", "# or the LoRA adapter on the base model:"]
        lines += ["from peft import PeftModel", "",
                  f"base = AutoModelForCausalLM.from_pretrained({json.dumps(base)})",
                  f'model = PeftModel.from_pretrained(base, {quoted}, subfolder="adapter")',
                  f"tokenizer = AutoTokenizer.from_pretrained({quoted})"]
    lines += ["```", "", f"Once uploaded (`hf upload <user>/<repo> {folder}`), load it by its repository id "
              f"instead of `{folder}`.", ""]
    return lines


def write_model_card(folder: str | Path, text: str) -> Path:
    """Write ``text`` as ``folder/README.md`` (atomically); return the file."""
    return write_atomic(Path(folder) / CARD_FILE, text)
