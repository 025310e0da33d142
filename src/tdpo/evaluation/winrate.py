"""Win/tie/loss tables with confidence intervals, and the per-question CSV.

For each category and overall, :func:`winrate_table` counts the outcomes of model ``a`` against model ``b``
(see :mod:`tdpo.evaluation.judges`). Rates are over the *valid* judgments, ``wins + ties + losses``;
``invalid`` (unparseable judge replies) and ``error`` (failed requests) are counted and reported but left
out of the rates, never guessed.

* ``win_rate = wins / valid``, ``tie_rate = ties / valid``, ``loss_rate = losses / valid``;
* ``score = (wins + ties / 2) / valid``, the win rate with ties counted as half a win.

Each rate comes with a two-sided **Wilson score interval** (default 95%,
:func:`~tdpo.evaluation.intervals.wilson_interval`), which stays inside [0, 1] and behaves at 0 and ``n``
successes and for small ``n``. For ``score``, whose ties count half,
the interval is Wilson's on the half-counted successes ``wins + ties / 2``, an approximation (ties make
the outcome three-valued). With ``valid = 0`` every rate and bound is NaN.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tdpo.evaluation.intervals import wilson_interval  # re-exported: preference_eval imports it from here
from tdpo.evaluation.judgment import OUTCOMES, PairJudgment
from tdpo.files import write_atomic

OVERALL = "overall"


@dataclass
class WinRateRow:
    """The outcomes of one category (or ``overall``), seen from model ``a``."""

    category: str
    """Category name, or ``overall``."""
    questions: int
    """Questions judged, whatever their outcome."""
    wins: int
    """Questions where ``a`` won."""
    ties: int
    """Ties."""
    losses: int
    """Questions where ``b`` won."""
    invalid: int
    """Questions with an unparseable judge reply (left out of the rates)."""
    errors: int
    """Questions whose judge request failed (left out of the rates)."""
    win_rate: float
    """``wins / (wins + ties + losses)``."""
    win_low: float
    """Lower Wilson bound of the win rate."""
    win_high: float
    """Upper Wilson bound of the win rate."""
    tie_rate: float
    """``ties / valid``."""
    tie_low: float
    """Lower Wilson bound of the tie rate."""
    tie_high: float
    """Upper Wilson bound of the tie rate."""
    loss_rate: float
    """``losses / valid``."""
    loss_low: float
    """Lower Wilson bound of the loss rate."""
    loss_high: float
    """Upper Wilson bound of the loss rate."""
    score: float
    """``(wins + ties / 2) / valid``."""
    score_low: float
    """Lower Wilson bound of the score (approximate)."""
    score_high: float
    """Upper Wilson bound of the score (approximate)."""

    @property
    def valid(self) -> int:
        """``wins + ties + losses``."""
        return self.wins + self.ties + self.losses


def _row(category: str, judgments: Sequence[PairJudgment], confidence: float) -> WinRateRow:
    counts = {name: 0 for name in OUTCOMES}
    for judgment in judgments:
        if judgment.outcome not in counts:
            raise ValueError(f"question {judgment.question_id!r}: unknown outcome {judgment.outcome!r}")
        counts[judgment.outcome] += 1
    wins, ties, losses = counts["win"], counts["tie"], counts["loss"]
    valid = wins + ties + losses

    def rate(k: float) -> tuple[float, float, float]:
        low, high = wilson_interval(k, valid, confidence)
        return (k / valid if valid else math.nan), low, high

    return WinRateRow(category, len(judgments), wins, ties, losses, counts["invalid"], counts["error"],
                      *rate(wins), *rate(ties), *rate(losses), *rate(wins + ties / 2))


def winrate_table(judgments: Sequence[PairJudgment], confidence: float = 0.95) -> list[WinRateRow]:
    """One row per category (sorted by name) and a last ``overall`` row."""
    categories = sorted({j.category for j in judgments})
    rows = [_row(c, [j for j in judgments if j.category == c], confidence) for c in categories]
    rows.append(_row(OVERALL, list(judgments), confidence))
    return rows


def format_table(rows: Sequence[WinRateRow], name_a: str = "a", name_b: str = "b", confidence: float = 0.95) -> str:
    """A plain-text table of the rows (percentages with their intervals)."""

    def pct(value: float, low: float, high: float) -> str:
        if math.isnan(value):
            return "n/a"
        return f"{100 * value:5.1f} [{100 * low:4.1f}, {100 * high:5.1f}]"

    level = f"{100 * confidence:g}%"
    header = ["category", "n", "win", "tie", "loss", "invalid", "error",
              f"win% ({level} CI)", f"tie% ({level} CI)", f"loss% ({level} CI)", f"score% ({level} CI)"]
    lines = [[r.category, str(r.questions), str(r.wins), str(r.ties), str(r.losses), str(r.invalid),
              str(r.errors), pct(r.win_rate, r.win_low, r.win_high), pct(r.tie_rate, r.tie_low, r.tie_high),
              pct(r.loss_rate, r.loss_low, r.loss_high), pct(r.score, r.score_low, r.score_high)] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = [f"{name_a} (a) vs {name_b} (b): outcomes for a; rates over win+tie+loss; score = (win + tie/2) / "
           "(win+tie+loss)"]
    out.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    return "\n".join(out)


PER_QUESTION_FIELDS = ["question_id", "category", "outcome", "a_first_prefers", "b_first_prefers",
                       "verdict_a_first", "verdict_b_first", "score_a", "score_b", "error"]
"""Columns of the per-question CSV. ``verdict_*`` are the judge's raw verdicts (``A`` = the assistant shown
first); ``*_prefers`` translate them into the model preferred (``a``, ``b`` or ``tie``) in that order."""


def write_per_question_csv(path: str | Path, judgments: Sequence[PairJudgment]) -> None:
    """One CSV row per question (:data:`PER_QUESTION_FIELDS`): id, category, outcome, the model each order
    prefers, both orders' raw verdicts, reward scores, error. Empty cells for values that do not apply."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=PER_QUESTION_FIELDS)
    writer.writeheader()
    for judgment in judgments:
        record = judgment.as_dict()
        record["a_first_prefers"] = {"A": "a", "B": "b", "tie": "tie"}.get(judgment.verdict_a_first)
        record["b_first_prefers"] = {"A": "b", "B": "a", "tie": "tie"}.get(judgment.verdict_b_first)
        writer.writerow({k: ("" if record[k] is None else record[k]) for k in PER_QUESTION_FIELDS})
    write_atomic(path, text.getvalue())


def write_summary_json(path: str | Path, rows: Sequence[WinRateRow], meta: dict) -> None:
    """The table as JSON, ``{"meta": ..., "rows": [...]}`` (NaN written as null)."""

    def clean(value: object) -> object:
        return None if isinstance(value, float) and math.isnan(value) else value

    data = {"meta": meta, "rows": [{k: clean(v) for k, v in asdict(r).items()} for r in rows]}
    write_atomic(path, json.dumps(data, indent=2) + "\n")
