"""Tests of tdpo.experiments.imdb.plots."""

from __future__ import annotations

import json

import pytest

from tdpo.experiments.imdb.experiment import parse_method
from tdpo.experiments.imdb.plots import (
    FIGURE3_YLABEL,
    FRONTIER_XLABEL,
    figure3_runs,
    kl_curves,
    plot_frontier,
    plot_kl_over_training,
)


def _curve(loss, alpha, seed, points):
    return {"label": f"{loss} {alpha} {seed}", "loss": loss, "alpha": alpha, "seed": seed,
            "points": [{"step": s, "reward": r, "reverse_kl": k} for s, r, k in points]}


RESULTS = {
    "models": [{"loss": "sft", "reward": 0.5, "reverse_kl": 0.0}],
    "curves": [
        _curve("dpo", None, 0, [(0, 0.5, 0.0), (5, 0.6, 1.0), (10, 0.62, 2.0)]),
        _curve("dpo", None, 1, [(0, 0.5, 0.0), (5, 0.58, 1.2), (10, 0.63, 2.2)]),
        _curve("tdpo2", 0.1, 0, [(0, 0.5, 0.0), (5, 0.61, 0.8), (10, 0.66, 1.5)]),
        _curve("tdpo2", 0.5, 0, [(0, 0.5, 0.0), (5, 0.6, 0.5), (10, 0.64, 1.1)]),
    ],
}


def _png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_frontier_png_and_its_axis(tmp_path, monkeypatch):
    import matplotlib.axes

    labels = []
    original = matplotlib.axes.Axes.set_xlabel
    monkeypatch.setattr(matplotlib.axes.Axes, "set_xlabel",
                        lambda self, text, *a, **k: labels.append(text) or original(self, text, *a, **k))
    path = plot_frontier(RESULTS, tmp_path / "sub" / "frontier.png")
    assert _png(path)
    assert labels == [FRONTIER_XLABEL] and "D_KL(π_θ‖π_ref)" in FRONTIER_XLABEL
    assert "policy's own samples" in FRONTIER_XLABEL
    with pytest.raises(ValueError, match="no evaluated curves"):
        plot_frontier({"curves": []}, tmp_path / "x.png")


def test_figure3_takes_the_given_runs_that_have_metrics(tmp_path):
    methods = [parse_method(s) for s in ("dpo", "tdpo2:alpha=0.5", "tdpo2:alpha=0.7")]
    for m in methods[:2]:
        (tmp_path / m.name).mkdir()
        (tmp_path / m.name / "metrics.jsonl").write_text("")
    runs = figure3_runs(methods, tmp_path)
    assert runs == {"DPO (beta=0.1)": tmp_path / "dpo_beta0.1" / "metrics.jsonl",
                    "TDPO2 (beta=0.1, alpha=0.5)": tmp_path / "tdpo2_beta0.1_alpha0.5" / "metrics.jsonl"}
    assert "Σ_t KL(π_ref‖π_θ)" in FIGURE3_YLABEL and "forward" in FIGURE3_YLABEL


def _rows():
    rows = []
    for step in range(1, 5):
        rows.append({"split": "train", "step": step, "kl/chosen": 0.1 * step, "kl/rejected": 0.2 * step})
    for step in (0, 2, 4):
        rows.append({"split": "eval", "step": step, "kl/chosen": 0.01 * step, "kl/rejected": 0.03 * step})
    return rows


def test_kl_curves_prefer_eval_rows():
    split, steps, chosen, rejected = kl_curves(_rows())
    assert split == "eval" and steps == [0, 2, 4]
    assert chosen == pytest.approx([0.0, 0.02, 0.04]) and rejected == pytest.approx([0.0, 0.06, 0.12])
    train_only = [r for r in _rows() if r["split"] == "train"]
    split, steps, chosen, _ = kl_curves(train_only)
    assert split == "train" and steps == [1, 2, 3, 4] and chosen == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert kl_curves([{"split": "train", "step": 1, "loss": 0.6}])[0] == "none"


def test_kl_over_training_png(tmp_path):
    runs = {}
    for name in ("DPO", "TDPO1", "TDPO2", "IPO"):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
        runs[name] = path
    assert _png(plot_kl_over_training(runs, tmp_path / "kl.png"))



def test_frontier_draws_best_of_n_as_its_own_series_at_the_analytical_kl(tmp_path, monkeypatch):
    import math

    import matplotlib.axes

    from tdpo.experiments.imdb.plots import BEST_OF_N_LEGEND

    drawn = {}
    original = matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot", lambda self, x, y, *a, **k: drawn.setdefault(
        k.get("label"), (list(x), list(y))) and original(self, x, y, *a, **k))
    kls = [math.log(n) - (n - 1) / n for n in (1, 2, 4)]
    best = {"points": [{"n": n, "reward": 0.5 + 0.02 * i, "reward_sem": 0.01, "kl": kl}
                       for i, (n, kl) in enumerate(zip((1, 2, 4), kls, strict=True))]}
    assert _png(plot_frontier({**RESULTS, "best_of_n": best}, tmp_path / "frontier.png"))
    assert drawn[BEST_OF_N_LEGEND] == (kls, [0.5, 0.52, 0.54])
    assert "log N − (N−1)/N" in BEST_OF_N_LEGEND and "not measured" in BEST_OF_N_LEGEND


def test_frontier_zooms_on_dpo_and_tdpo_when_a_baseline_drifts_far(tmp_path, monkeypatch):
    """Preferred-FT at 5 nats would squeeze DPO and TDPO (<= 2.2 nats) into a corner: a second panel
    shows their range, with y-limits from the points inside it. Without such a baseline, one panel."""
    import matplotlib.figure

    saved = []
    original = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, *a, **k: saved.append(
        [(ax.get_xlim(), ax.get_ylim()) for ax in self.axes]) or original(self, *a, **k))
    far = {**RESULTS, "curves": [*RESULTS["curves"],
                                  _curve("preferred_ft", None, 0, [(0, 0.5, 0.0), (5, 0.52, 3.0), (10, 0.9, 5.0)])]}
    assert _png(plot_frontier(far, tmp_path / "far.png"))
    (full_x, _), (zoom_x, zoom_y) = saved[0]
    assert full_x[1] >= 5.0
    assert zoom_x == pytest.approx((-0.03 * 1.08 * 2.2, 1.08 * 2.2))
    # the points within 2.376 nats have rewards 0.5 .. 0.66 (the 0.9 at 5 nats is outside)
    assert zoom_y == pytest.approx((0.5 - 0.08 * 0.16, 0.66 + 0.08 * 0.16))
    assert _png(plot_frontier(RESULTS, tmp_path / "near.png"))
    assert len(saved[1]) == 1


def _rows_with_se():
    """Eval rows with the trainer's clustered standard errors (step 0: policy = reference, s.e. 0)."""
    return [{"split": "eval", "step": step, "kl/chosen": 0.01 * step, "kl/rejected": 0.03 * step,
             "kl/margin": 0.02 * step, "kl/chosen_se": 0.001 * step, "kl/rejected_se": 0.002 * step,
             "kl/margin_se": 0.0015 * step, "kl/prompts": 128.0} for step in (0, 2, 4)]


def _errorbars(monkeypatch):
    import matplotlib.axes

    drawn = []
    original = matplotlib.axes.Axes.errorbar
    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", lambda self, x, y, *a, **k: drawn.append(
        (k.get("label"), list(x), list(y), k.get("yerr"))) or original(self, x, y, *a, **k))
    return drawn


def test_figure3_draws_95_percent_intervals_from_the_logged_standard_errors(tmp_path, monkeypatch):
    drawn = _errorbars(monkeypatch)
    metrics = tmp_path / "dpo.jsonl"
    metrics.write_text("".join(json.dumps(r) + "\n" for r in _rows_with_se()))
    old = tmp_path / "old.jsonl"  # logged before the standard errors were: no bars
    old.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    assert _png(plot_kl_over_training({"DPO": metrics, "TDPO2": old}, tmp_path / "kl.png"))
    (label, steps, chosen, yerr), (_, _, rejected, yerr_rejected) = drawn[:2]
    assert (label, steps) == ("chosen", [0, 2, 4]) and chosen == pytest.approx([0.0, 0.02, 0.04])
    assert yerr == pytest.approx([0.0, 1.959964 * 0.002, 1.959964 * 0.004], rel=1e-6)
    assert yerr_rejected == pytest.approx([0.0, 1.959964 * 0.004, 1.959964 * 0.008], rel=1e-6)
    assert drawn[2][3] is None and drawn[3][3] is None

    from tdpo.experiments.imdb.plots import plot_kl_gap

    drawn.clear()
    assert _png(plot_kl_gap({"DPO": metrics, "TDPO2": old}, tmp_path / "gap.png"))
    (label, steps, gap, yerr), (_, old_steps, old_gap, old_yerr) = drawn
    assert label == "DPO (eval)" and gap == pytest.approx([0.0, 0.04, 0.08])
    assert yerr == pytest.approx([0.0, 1.959964 * 0.003, 1.959964 * 0.006], rel=1e-6)
    assert steps[1] != old_steps[1]  # the runs side by side at each step
    assert old_gap == pytest.approx([0.0, 0.04, 0.08]) and old_yerr is None  # rejected - chosen without kl/margin
