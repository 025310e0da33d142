"""``tdpo imdb``: the paper's IMDb controlled-sentiment experiment, step by step or chained.

    tdpo imdb sft       --out DIR   # fine-tune the base model on review text
    tdpo imdb pairs     --out DIR   # sample, score and pair completions of review prefixes
    tdpo imdb train     --out DIR   # evaluate the SFT model (step 0), then train every run (DPO, TDPO1,
                                    # TDPO2 ...) from it, evaluating its reward-KL curve as it trains
    tdpo imdb evaluate  --out DIR   # gather the curves and the matched-KL comparison; plots and report
    tdpo imdb report    --out DIR   # plots and report only
    tdpo imdb run       --out DIR   # all of the above
    tdpo imdb frontier  --out DIR   # all of the above with the frontier preset (the paper's settings)
    tdpo imdb estimate  --out DIR   # print the estimated time of 'run' with these settings, run nothing

Every size is an option (``--train-steps 40``, ``--methods dpo:beta=0.1 tdpo2:alpha=0.5,seed=1``); a
``--preset`` (default, demo, frontier) gives the starting values. Rerunning an interrupted ``run`` or
``frontier`` with the same options resumes it: finished runs and saved curve points are not redone, and a
run interrupted in the middle continues from its last checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import typing

if typing.TYPE_CHECKING:
    from tdpo.experiments.imdb.experiment import ImdbConfig

STEPS = ("sft", "pairs", "train", "evaluate", "report", "run", "frontier", "estimate")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--option`` per :class:`~tdpo.experiments.imdb.experiment.ImdbConfig` field, documented by the field."""
    from tdpo.config import field_docs
    from tdpo.experiments.imdb.experiment import ImdbConfig

    docs = field_docs(ImdbConfig)
    hints = typing.get_type_hints(ImdbConfig)
    group = parser.add_argument_group("experiment settings (defaults from --preset)")
    for f in dataclasses.fields(ImdbConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "out_dir":
            flag = "--out"
        tp = hints[f.name]
        kwargs: dict = {"dest": f.name, "default": None, "help": docs.get(f.name, "").replace("%", "%%")}
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif tp == list[int]:
            kwargs.update(nargs="+", type=int, metavar="N")
        elif tp == (list[float] | None):
            kwargs.update(nargs="+", type=float, metavar="KL")
        elif typing.get_origin(tp) is list or any(typing.get_origin(a) is list for a in typing.get_args(tp)):
            kwargs.update(nargs="+", metavar="METHOD")
        elif tp in (int, float, str):
            kwargs["type"] = tp
        elif tp == (str | None):
            kwargs["type"] = str
        else:  # int | None
            kwargs["type"] = lambda s: None if s.lower() in ("none", "null") else int(s)
        group.add_argument(flag, **kwargs)


def config_from_args(ns: argparse.Namespace, preset: str):
    """The preset's config with every option given on the command line replacing its value."""
    from tdpo.experiments.imdb.experiment import ImdbConfig
    from tdpo.experiments.imdb.presets import PRESETS

    given = {f.name: getattr(ns, f.name) for f in dataclasses.fields(ImdbConfig) if getattr(ns, f.name) is not None}
    return PRESETS[preset](**given)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tdpo imdb",
        description="The IMDb controlled-sentiment experiment of the TDPO paper, offline by default.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("step", choices=STEPS, help="which step to run (run = all, frontier = all with the "
                        "frontier preset, estimate = print the time 'run' would take)")
    parser.add_argument("--preset", choices=("default", "demo", "frontier", "paper"), default=None,
                        help="starting values of the settings (default: 'frontier' for the frontier step, "
                        "else 'default')")
    add_config_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``tdpo imdb STEP [options]``; returns the exit status."""
    ns = build_parser().parse_args(argv)
    from tdpo.experiments.imdb import pipeline

    preset = ns.preset or ("frontier" if ns.step == "frontier" else "default")
    try:
        cfg = config_from_args(ns, preset)
    except ValueError as err:
        print(f"tdpo imdb: {err}", file=sys.stderr)
        return 2
    if ns.step == "estimate":
        print("\n".join(pipeline.estimate_lines(cfg)), flush=True)
        return 0
    command = "tdpo imdb " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    try:
        return _run_step(ns.step, cfg, command)
    except KeyboardInterrupt:
        print(f"\ntdpo imdb: interrupted; run the same command again to continue (finished work is kept, "
              f"an interrupted run continues from its last checkpoint in {cfg.out_dir}/runs)", file=sys.stderr)
        return 130


def _run_step(step: str, cfg: ImdbConfig, command: str) -> int:
    """Run ``step`` (any of :data:`STEPS` but ``estimate``) with settings ``cfg``; returns the exit status."""
    from tdpo.experiments.imdb import pipeline

    if step in ("run", "frontier"):
        report = pipeline.run_pipeline(cfg, command=command)
        print(pipeline.results_summary(cfg, report), flush=True)
        return 0
    pipeline.prepare_out_dir(cfg)
    if step == "sft":
        print(pipeline.step_sft(cfg))
    elif step == "pairs":
        pipeline.step_pairs(cfg)
    elif step == "train":
        reward = pipeline.step_reward(cfg)
        for name, run_dir in pipeline.step_train(cfg, reward).items():
            print(f"{name}: {run_dir}")
    elif step == "evaluate":
        pipeline.step_evaluate(cfg)
        print(pipeline.step_report(cfg))
    elif step == "report":
        print(pipeline.step_report(cfg))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
