"""The named starting points of the IMDb experiment: ``demo`` (``tdpo demo``), ``frontier`` (the
pre-registered primary contrast in the paper's regime), ``paper`` (the frontier plus the TDPO paper's
whole grid and the DPO paper's baselines) and ``default`` (:class:`~tdpo.experiments.imdb.experiment.ImdbConfig`'s own
defaults). Each is a function of the output folder and overrides, returning a checked config."""

from __future__ import annotations

from typing import Any

from tdpo.experiments.imdb.experiment import ImdbConfig, make_config
from tdpo.experiments.imdb.primary import require_primary_seeds

#: What the ``demo`` and ``frontier`` presets share: short completions, 8 pairs per step in one
#: micro-batch. The sizes below are placeholders for the lead to set from a recorded pilot.
_SMALL_PRESET = {"max_new_tokens": 24, "sft_batch_size": 16, "sft_lr": 2e-5, "batch_size": 8,
                 "micro_batch_size": 8, "report_samples": 5}


def demo_config(out_dir: str = "runs/demo", **overrides: Any) -> ImdbConfig:
    """The ``tdpo demo`` sizes: the whole pipeline, DPO and TDPO2 as reward-KL curves of step 0 (the SFT
    model) and 2 points over training, sized to finish within 7 minutes on 2 CPU cores and to show DPO's
    reward rising above the SFT model's with an interval.

    8 SFT steps of 16 review continuations, short completions (16 tokens), 256 training prefixes with
    their clearest pair each (best against worst of 4 samples: ``train_pairs_per_prefix=1``, unlike the
    papers and the frontier, which keep all 6), 32 steps of 8 pairs for DPO and TDPO2 at lr 2e-5 (the
    frontier's rate), 96 held-out prefixes x 4 samples at every curve point; 4 further held-out prefixes
    give preference pairs (``data/pairs_eval.jsonl``) that no run trains on, for the sequential KL of
    chosen and rejected over training. Sizes from the demo pilots in ``results/imdb_pilot``.
    """
    preset = dict(_SMALL_PRESET, max_new_tokens=16, sft_examples=128, sft_steps=8, sft_max_length=32,
                  train_prefixes=256, train_pairs_per_prefix=1, eval_pair_prefixes=4, methods=list(DEMO_METHODS),
                  train_steps=32, lr=2e-5, warmup_steps=8, eval_points=2, eval_prefixes=96, eval_samples=4,
                  sample_batch_size=64, eval_batch_size=64, checkpoint_every_steps=0)
    return make_config(ImdbConfig(out_dir=out_dir), **{**preset, **overrides})


#: The runs of ``tdpo demo``.
DEMO_METHODS = ["dpo:beta=0.1", "tdpo2:beta=0.1,alpha=0.5"]

#: The arms of the frontier's pre-registered primary contrast (``results/imdb_frontier/README.md``, section
#: "Pre-registered"): TDPO2 at the paper's best alpha (0.7) minus DPO, both at beta 0.1 and the same
#: optimiser, three training seeds (data orders) each.
PRIMARY_CONTRAST = ["tdpo2:beta=0.1,alpha=0.7", "dpo:beta=0.1"]

#: The reverse-KL window (nats) of the primary contrast, fixed from the pilots before the run: TDPO2
#: alpha=0.7's reverse KL levels off near 0.65-0.70 nats by step 80-160 at lr 2e-5 (``results/imdb_pilot``),
#: so every run of both arms covers 0.2-0.6.
PRIMARY_KL_WINDOW = [0.2, 0.6]

#: Training seeds per arm of the primary contrast.
PRIMARY_SEEDS = 3

#: The frontier's runs: every seed of both arms of :data:`PRIMARY_CONTRAST`.
FRONTIER_METHODS = [spec + (f",seed={seed}" if seed else "") for spec in reversed(PRIMARY_CONTRAST)
                    for seed in range(PRIMARY_SEEDS)]

#: The frontier's runs whose held-out pairs are evaluated over training (the TDPO paper's Figure 3): the
#: first seed of each arm.
FIGURE3_METHODS = list(reversed(PRIMARY_CONTRAST))

#: The curve points' steps: dense early, where the primary window lies (DPO passes 0.6 nats before step
#: 40 in the pilot, TDPO2 alpha=0.7 by step 80), then doubling to the end (seven points per run: the
#: 150-minute budget's trim).
FRONTIER_EVAL_STEPS = [10, 20, 30, 40, 80, 160, 320]


def frontier_config(out_dir: str = "runs/imdb_frontier", **overrides: Any) -> ImdbConfig:
    """The frontier in the paper's regime with one pre-registered primary contrast (issue 25).

    DPO and TDPO2 (alpha 0.7), beta 0.1, three seeds each (:data:`FRONTIER_METHODS`), traced as reward-KL
    curves at step 0 and :data:`FRONTIER_EVAL_STEPS` on 128 held-out prefixes x 4 samples; the primary
    contrast :data:`PRIMARY_CONTRAST` over :data:`PRIMARY_KL_WINDOW`; best-of-N from the SFT model (16
    samples per prefix); Figure 3 on 128 held-out pairs, one per held-out prefix (the largest reward
    margin), at the start and every 80 steps.

    Sizes from the pilots in ``results/imdb_pilot`` (2026-12-06): 2,048 training prefixes x 4 samples of
    16 tokens (about 12,000 pairs); RMSprop at lr 2e-5, a 16-step warm-up, 320 steps of 8 pairs (2,560
    pairs per run, under one epoch). In the pilot DPO reached 4.2 nats of reverse KL and a reward of 0.72
    (from 0.55); TDPO2 alpha=0.7 at 2.5x and 5x that rate reached 2-5 nats but below DPO's reward at the
    same KL (drift), so both arms share one rate. The reference-state table is off: with 12,000 pairs and
    six runs of 2,560 it would cost more than it saves. ``tdpo imdb estimate --preset frontier`` prints
    the time (under 150 minutes on 2 CPU cores).
    """
    preset = dict(_SMALL_PRESET, max_new_tokens=16, sft_examples=512, sft_steps=16, sft_max_length=36,
                  train_prefixes=2048, eval_pair_prefixes=128, eval_pairs_per_prefix=1,
                  methods=list(FRONTIER_METHODS), pair_eval_methods=list(FIGURE3_METHODS), train_steps=320, lr=2e-5,
                  warmup_steps=16, eval_points=len(FRONTIER_EVAL_STEPS), eval_at_steps=list(FRONTIER_EVAL_STEPS),
                  eval_every_steps=80, eval_prefixes=128, eval_samples=4, sample_batch_size=256, eval_batch_size=256,
                  best_of_n_samples=16, cache_reference_states=False, checkpoint_every_steps=160,
                  primary_contrast=list(PRIMARY_CONTRAST), primary_kl_window=list(PRIMARY_KL_WINDOW))
    return require_primary_seeds(make_config(ImdbConfig(out_dir=out_dir), **{**preset, **overrides}))


#: What the ``paper`` preset adds to the frontier: the rest of the TDPO paper's IMDb grid (TDPO1, TDPO2
#: alpha in {0.1, 0.3, 0.5}) and the DPO paper's baselines (Preferred-FT, Unlikelihood alpha 0.1 and 1);
#: with RLOO (``with_online_rl``) as the online RL baseline.
PAPER_EXTRA_METHODS = ["tdpo1:beta=0.1", "tdpo2:beta=0.1,alpha=0.1", "tdpo2:beta=0.1,alpha=0.3",
                       "tdpo2:beta=0.1,alpha=0.5", "preferred_ft", "unlikelihood:alpha=0.1", "unlikelihood:alpha=1"]


def paper_config(out_dir: str = "runs/imdb_paper", **overrides: Any) -> ImdbConfig:
    """The frontier plus the papers' whole grid (:data:`PAPER_EXTRA_METHODS` and RLOO), one seed each for
    the additions, every comparison beyond the primary one exploratory. It does not fit the frontier's
    time budget: ``tdpo imdb estimate --preset paper`` prints its time."""
    return frontier_config(out_dir, **{"methods": [*FRONTIER_METHODS, *PAPER_EXTRA_METHODS],
                                       "with_online_rl": True, **overrides})


def default_config(out_dir: str = "runs/imdb", **overrides: Any) -> ImdbConfig:
    """The ``default`` preset: :class:`ImdbConfig`'s own defaults."""
    return make_config(ImdbConfig(out_dir=out_dir), **overrides)


PRESETS = {"default": default_config, "demo": demo_config, "frontier": frontier_config, "paper": paper_config}
"""Named starting points of the ``tdpo imdb`` and ``tdpo demo`` commands."""
