"""The TDPO paper's Figure 3 from the trainer's metrics: the forward sequential KL ``sum_t KL(pi_ref ||
pi_theta)`` of the chosen and of the rejected held-out responses over training, and their gap
(rejected minus chosen, the trainer's ``kl/margin``), each with its standard error clustered by prompt
(``kl/chosen_se``, ``kl/rejected_se``, ``kl/margin_se``: :mod:`tdpo.training.pair_spread`).

:func:`figure3_series` reads one run's ``metrics.jsonl`` rows; :func:`figure3_section` gives the
``figure3`` section of ``results.json``: per run of ``pair_eval_methods``, every evaluated step with
the three means, their standard errors and the gap's 95% interval ``gap ± 1.96 s.e.`` (a normal
interval over the held-out pairs; with one pair per prefix, ``eval_pairs_per_prefix = 1``, the
prefixes are the clusters and the pairs independent).
"""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist
from typing import Any

from tdpo.experiments.imdb.experiment import ImdbConfig
from tdpo.experiments.imdb.layout import paths
from tdpo.files import read_jsonl

#: The normal quantile of a two-sided 95% interval.
Z95 = NormalDist().inv_cdf(0.975)

_FIELDS = {"chosen": "kl/chosen", "rejected": "kl/rejected", "gap": "kl/margin", "chosen_se": "kl/chosen_se",
           "rejected_se": "kl/rejected_se", "gap_se": "kl/margin_se", "prompts": "kl/prompts"}


def figure3_series(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``split`` (``"eval"``: the held-out pairs, if at least two eval rows have both KLs, else
    ``"train"``: the training batches, else ``"none"``), ``steps``, and per step ``chosen``,
    ``rejected``, ``gap`` (rejected - chosen), ``chosen_se``, ``rejected_se``, ``gap_se`` and ``prompts``
    (None where a row lacks them: training rows and runs logged before the s.e. was)."""
    for split in ("eval", "train"):
        sel = [r for r in rows if r.get("split") == split and r.get("kl/chosen") is not None
               and r.get("kl/rejected") is not None]
        if len(sel) >= 2 or (split == "train" and sel):
            out: dict[str, Any] = {"split": split, "steps": [int(r["step"]) for r in sel]}
            for key, name in _FIELDS.items():
                out[key] = [r.get(name) for r in sel]
            out["gap"] = [r["kl/rejected"] - r["kl/chosen"] if g is None else g for r, g in zip(sel, out["gap"])]
            return out
    return {"split": "none", "steps": [], **{key: [] for key in _FIELDS}}


def figure3_section(cfg: ImdbConfig) -> list[dict[str, Any]]:
    """The ``figure3`` section of ``results.json``: one entry per run of ``pair_eval_methods`` with a
    ``metrics.jsonl`` (label, name, the split read, and per evaluated step the means, standard errors,
    prompts and the gap's 95% interval ``gap_lower``, ``gap_upper``: None without an s.e.)."""
    out = []
    for method in cfg.pair_eval_method_list():
        metrics = paths(cfg).runs / method.name / "metrics.jsonl"
        if not Path(metrics).is_file():
            continue
        series = figure3_series(read_jsonl(metrics))
        points = []
        for i, step in enumerate(series["steps"]):
            point = {"step": step, **{key: series[key][i] for key in _FIELDS}}
            se = point["gap_se"]
            point["gap_lower"] = None if se is None else point["gap"] - Z95 * se
            point["gap_upper"] = None if se is None else point["gap"] + Z95 * se
            points.append(point)
        out.append({"name": method.name, "label": method.label, "split": series["split"], "points": points})
    return out
