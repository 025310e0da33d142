"""The results of an IMDb experiment, gathered from its saved curve points into ``results.json``.

- ``curves``: every run's curve, step 0 (the SFT model) first: per point the step, the reward (± s.e.,
  clustered by prefix, as every s.e. of a point), the reverse KL ``D_KL(pi_theta || pi_ref)`` on the
  policy's own samples (± s.e.; the x-axis), its Monte-Carlo log-ratio estimate, the forward sequential
  KL ``sum_t KL(pi_ref || pi_theta)``, entropy and length;
- ``models``: the SFT model and the last point of every run (the end of training), each run's with
  ``vs_sft``: its reward minus the SFT model's on the same held-out prefixes (paired by prefix, with a
  95% bootstrap interval over prefixes, :func:`tdpo.experiments.imdb.stats.paired.paired_difference`);
- ``best_of_n`` (when ``best_of_n_samples`` is set): best-of-N from the SFT model per N, its mean reward
  (± s.e.) and its analytical KL ``log N - (N - 1) / N`` (:mod:`tdpo.experiments.imdb.best_of_n`), not a measured KL;
- ``primary`` (when ``primary_contrast`` is set): the pre-registered primary contrast, arm a's reward
  minus arm b's averaged over ``primary_kl_window`` with its interval (bootstrap over training seeds
  within each arm and held-out prefixes shared by both), standard error, minimum detectable effect and
  verdict, and every run's covered KL range (:mod:`tdpo.experiments.imdb.primary`);
- ``exploratory``: every other comparison, labelled exploratory: every non-DPO setting against DPO (the
  DPO run of the same beta, else the first), their rewards compared at matched reverse KL over the KL
  range both curves cover (:func:`tdpo.experiments.imdb.stats.matched_kl.matched_kl_difference`, bootstrap over
  prefixes and, for settings trained more than once, seeds), summarised per KL range with the 95%
  interval and, over the family of every comparison and range, Holm's adjusted p-value, interval and
  verdict (:mod:`tdpo.experiments.imdb.stats.holm`);
- ``figure3`` (when runs evaluate the held-out pairs): the TDPO paper's Figure 3 per run and evaluated
  step, the forward sequential KL of chosen and rejected and their gap with standard errors clustered
  by prompt and the gap's 95% interval (:mod:`tdpo.experiments.imdb.figure3`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from tdpo.evaluation.clustered import clustered_mean_sem
from tdpo.experiments.imdb.best_of_n import best_of_n_results
from tdpo.experiments.imdb.curves import load_curve, prefix_arrays, run_info
from tdpo.experiments.imdb.experiment import ImdbConfig, Method
from tdpo.experiments.imdb.figure3 import figure3_section
from tdpo.experiments.imdb.primary import primary_section
from tdpo.experiments.imdb.stats.holm import holm_comparisons
from tdpo.experiments.imdb.stats.matched_kl import (
    NOT_COVERED,
    KLCurve,
    common_kl_grid,
    matched_kl_difference,
    summarize_kl_ranges,
)
from tdpo.experiments.imdb.stats.paired import paired_difference

logger = logging.getLogger(__name__)

#: The summary numbers of a point kept in ``results.json``.
POINT_FIELDS = ("reward", "reward_sem", "reverse_kl", "reverse_kl_sem", "log_ratio", "log_ratio_sem", "forward_kl",
                "entropy", "length", "samples")
#: The x-axis of every curve and of the matched-KL comparison.
KL_AXIS = "reverse KL D_KL(π_θ‖π_ref), Σ_t KL(π_θ‖π_ref) along the policy's own samples (nats)"
#: KL ranges per matched-KL comparison, grid KLs and bootstrap replicates.
KL_RANGES, GRID_POINTS, BOOTSTRAP = 3, 50, 2000
#: The family-wise error rate of the exploratory comparisons (Holm).
ALPHA = 0.05


#: The standard errors of a point, recomputed from its samples clustered by prefix, and their sample field.
SEM_FIELDS = {"reward_sem": "reward", "reverse_kl_sem": "reverse_kl", "log_ratio_sem": "log_ratio"}


def _point_row(point: dict[str, Any]) -> dict[str, Any]:
    """A point's step and summary numbers; its standard errors recomputed from its samples, clustered by
    prefix (:func:`~tdpo.evaluation.clustered.clustered_mean_sem`: a point saved before the s.e. was
    clustered gets the clustered one too)."""
    row = {"step": point["step"], **{k: point["summary"][k] for k in POINT_FIELDS}}
    samples = point.get("samples") or []
    if samples:
        prefixes = [s["prefix"] for s in samples]
        for key, name in SEM_FIELDS.items():
            row[key] = clustered_mean_sem([s[name] for s in samples], prefixes)[1]
    return row


def comparisons(settings: list[Method]) -> list[tuple[Method, Method]]:
    """``(setting, DPO setting)`` for every non-DPO setting: against the DPO setting of the same beta,
    else the first DPO setting; none without DPO."""
    dpo = [s for s in settings if s.loss == "dpo"]
    if not dpo:
        return []
    out = []
    for s in settings:
        if s.loss != "dpo":
            out.append((s, next((d for d in dpo if d.beta == s.beta), dpo[0])))
    return out


def run_curves(cfg: ImdbConfig, methods: list[Method], num_prefixes: int) -> dict[Method, KLCurve]:
    """``{run: KLCurve}`` of the runs of ``methods`` whose curves have at least two points (step 0 and a
    later one), on the ``num_prefixes`` held-out prefixes."""
    out = {}
    for method in methods:
        points = load_curve(cfg, method)
        if len(points) >= 2:
            rewards, kls = prefix_arrays(points, num_prefixes)
            out[method] = KLCurve(rewards, kls, tuple(p["step"] for p in points))
    return out


def matched_kl_rows(cfg: ImdbConfig, curves: dict[Method, KLCurve], *, n_boot: int = BOOTSTRAP,
                    alpha: float = ALPHA) -> list[dict[str, Any]]:
    """The matched-KL comparisons of :func:`comparisons` over the runs of ``curves``, one entry per
    comparison with its rows per KL range; each row with its 95% interval and, over the family of every
    row of every comparison, Holm's adjusted p-value (``p_holm``), rank, interval level, interval
    (``holm_lower``, ``holm_upper``) and verdict (``holm_verdict``)."""
    groups: dict[Method, list[KLCurve]] = {}
    for method, curve in curves.items():
        groups.setdefault(method.setting, []).append(curve)
    out, rows = [], []
    for a, b in comparisons(list(groups)):
        grid = common_kl_grid([groups[a], groups[b]], num=GRID_POINTS)
        entry = {"a": a.label, "b": b.label, "a_name": a.name, "b_name": b.name, "runs_a": len(groups[a]),
                 "runs_b": len(groups[b]), "kl_axis": "reverse_kl", "ranges": []}
        if grid.size and grid[-1] > grid[0]:
            result = matched_kl_difference(groups[a], groups[b], grid, n_boot=n_boot, seed=cfg.seed)
            entry["level"] = result.level
            for row in summarize_kl_ranges(result, KL_RANGES):
                entry["ranges"].append(row.to_dict())
                rows.append((entry["ranges"][-1], row))
        out.append(entry)
    holm = holm_comparisons([row.difference for _, row in rows],
                            [row.replicates if row.verdict != NOT_COVERED else np.zeros(0) for _, row in rows],
                            alpha=alpha)
    for (saved, _), adjusted in zip(rows, holm, strict=True):
        h = adjusted.to_dict()
        saved.update({"p_value": h["p_value"], "p_holm": h["p_adjusted"], "holm_rank": h["rank"],
                      "holm_level": h["level"], "holm_lower": h["lower"], "holm_upper": h["upper"],
                      "holm_verdict": h["verdict"]})
    return out


def exploratory_section(cfg: ImdbConfig, curves: dict[Method, KLCurve], *, n_boot: int = BOOTSTRAP
                        ) -> dict[str, Any]:
    """The ``exploratory`` section: :func:`matched_kl_rows` with the family's size and the adjustment."""
    comps = matched_kl_rows(cfg, curves, n_boot=n_boot)
    size = sum(r.get("p_value") is not None for c in comps for r in c["ranges"])
    return {"adjustment": "Holm", "alpha": ALPHA, "family_size": size, "n_boot": n_boot, "comparisons": comps}


def collect_results(cfg: ImdbConfig, reward_name: str) -> dict[str, Any]:
    """``results.json`` from the saved points (see the module docs); runs with no point after step 0
    are left out (a run still training shows the points it has)."""
    sft = load_curve(cfg, None)
    if not sft:
        raise FileNotFoundError(f"no evaluation of the SFT model in {cfg.out_dir}/eval/sft: run "
                                f"'tdpo imdb train --out {cfg.out_dir}' first")
    info = {k: v for k, v in sft[0].items() if k in run_info(None)}
    results: dict[str, Any] = {
        "reward_model": reward_name, "prefixes": cfg.eval_prefixes, "samples_per_prefix": cfg.eval_samples,
        "kl_axis": KL_AXIS, "kl_fields": sft[0].get("kl_fields", {}),
        "models": [{**info, **_point_row(sft[0])}], "curves": [],
    }
    curve_methods = []
    for method in cfg.method_list():
        points = load_curve(cfg, method)
        if len(points) < 2:
            continue
        curve_methods.append(method)
        meta = run_info(method, points[-1].get("model_path"))
        complete = points[-1]["step"] == cfg.train_steps
        results["curves"].append({**meta, "complete": complete, "points": [_point_row(p) for p in points]})
        results["models"].append({**meta, **_point_row(points[-1])})
    bon = best_of_n_results(cfg)
    if bon is not None:
        results["best_of_n"] = bon
    curves = run_curves(cfg, curve_methods, cfg.eval_prefixes)
    for row, method in zip(results["models"][1:], curve_methods, strict=True):
        curve = curves[method]  # row 0 is step 0, the SFT model, on the same prefixes and random numbers
        row["vs_sft"] = paired_difference(curve.rewards[-1], curve.rewards[0], n_boot=BOOTSTRAP,
                                          seed=cfg.seed).to_dict()
    primary = primary_section(cfg, {m.name: c for m, c in curves.items()}, n_boot=BOOTSTRAP)
    if primary is not None:
        results["primary"] = primary
    results["exploratory"] = exploratory_section(cfg, curves)
    figure3 = figure3_section(cfg)
    if figure3:
        results["figure3"] = figure3
    return results
