"""MT-bench's tables and plot: mean score per category per model, win/tie/loss per category, and a PNG.

Mean scores are over the valid grades (both turns of every question of the category); invalid and failed
grades are counted and left out. The pairwise table is :func:`~tdpo.evaluation.winrate.winrate_table`'s (rates
over win + tie + loss, inconsistent orders counted as ties) with a column of the inconsistent ones.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tdpo.evaluation.judgment import PairJudgment
from tdpo.evaluation.mtbench_judge import SingleScore
from tdpo.evaluation.winrate import OVERALL, WinRateRow
from tdpo.files import write_atomic


@dataclass
class ScoreRow:
    """One model's grades in one category (or ``overall``)."""

    model: str
    category: str
    graded: int
    """Grades asked for (questions x turns)."""
    valid: int
    """Grades read."""
    mean: float
    """Mean of the valid grades (NaN with none)."""
    turn1: float
    """Mean of the valid first-turn grades."""
    turn2: float
    """Mean of the valid second-turn grades."""


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def score_table(scores: Sequence[SingleScore]) -> list[ScoreRow]:
    """Per model (in order of appearance), one row per category (sorted) and an ``overall`` row."""
    rows = []
    models = list(dict.fromkeys(s.model for s in scores))
    for model in models:
        mine = [s for s in scores if s.model == model]
        for category in [*sorted({s.category for s in mine}), OVERALL]:
            group = [s for s in mine if category in (OVERALL, s.category)]
            valid = [s for s in group if s.score is not None]
            rows.append(ScoreRow(model, category, len(group), len(valid), _mean([s.score for s in valid]),
                                 _mean([s.score for s in valid if s.turn == 1]),
                                 _mean([s.score for s in valid if s.turn == 2])))
    return rows


def format_scores(rows: Sequence[ScoreRow]) -> str:
    """A plain-text table: categories down, models across (mean score, 1-10)."""
    models = list(dict.fromkeys(r.model for r in rows))
    categories = list(dict.fromkeys(r.category for r in rows))
    cell = {(r.model, r.category): r for r in rows}
    header = ["category", *models]
    lines = []
    for category in categories:
        line = [category]
        for model in models:
            row = cell.get((model, category))
            line.append("n/a" if row is None or math.isnan(row.mean) else f"{row.mean:.2f} ({row.valid}/{row.graded})")
        lines.append(line)
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["MT-bench single-answer grading: mean score 1-10 (valid grades / grades)",
           "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    return "\n".join(out)


def inconsistent_counts(judgments: Sequence[PairJudgment]) -> dict[str, int]:
    """``{category: pairs whose two orders disagreed}``, with ``overall``."""
    counts = {c: 0 for c in sorted({j.category for j in judgments})}
    counts[OVERALL] = 0
    for judgment in judgments:
        if judgment.error == "inconsistent":
            counts[judgment.category] += 1
            counts[OVERALL] += 1
    return counts


def write_scores_csv(path: str | Path, scores: Sequence[SingleScore]) -> None:
    """One row per grade: model, question_id, category, turn, score, parsed, error."""
    text = io.StringIO(newline="")
    fields = ["model", "question_id", "category", "turn", "score", "parsed", "error"]
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    for score in scores:
        writer.writerow({k: ("" if v is None else v) for k, v in score.as_dict().items()})
    write_atomic(path, text.getvalue())


def plot(path: str | Path, score_rows: Sequence[ScoreRow], pair_rows: Sequence[WinRateRow] | None,
         name_a: str, name_b: str) -> None:
    """A PNG: mean score per category per model (bars), and with ``pair_rows`` the win/tie/loss shares of
    ``a`` against ``b`` per category (stacked bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = max(1, bool(score_rows) + (pair_rows is not None))
    fig, axes = plt.subplots(panels, 1, figsize=(9, 3.6 * panels), squeeze=False)
    ax_iter = iter(axes[:, 0])
    if score_rows:
        ax = next(ax_iter)
        models = list(dict.fromkeys(r.model for r in score_rows))
        categories = list(dict.fromkeys(r.category for r in score_rows))
        width = 0.8 / len(models)
        for k, model in enumerate(models):
            means = {r.category: r.mean for r in score_rows if r.model == model}
            ax.bar([i + k * width for i in range(len(categories))], [means.get(c, math.nan) for c in categories],
                   width, label=model)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(categories))], categories, rotation=20)
        ax.set_ylim(0, 10)
        ax.set_ylabel("mean score (1-10)")
        ax.set_title("MT-bench single-answer grading")
        ax.legend()
    if pair_rows is not None:
        ax = next(ax_iter)
        names = [r.category for r in pair_rows]
        bottom = [0.0] * len(pair_rows)
        for label, attr, colour in ((f"{name_a} wins", "win_rate", "tab:green"), ("tie", "tie_rate", "tab:gray"),
                                    (f"{name_b} wins", "loss_rate", "tab:red")):
            values = [0.0 if math.isnan(getattr(r, attr)) else getattr(r, attr) for r in pair_rows]
            ax.bar(names, values, bottom=bottom, label=label, color=colour)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_ylim(0, 1)
        ax.set_ylabel("share of valid verdicts")
        ax.set_title(f"MT-bench pairwise: {name_a} vs {name_b} (both orders)")
        ax.tick_params(axis="x", rotation=20)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
