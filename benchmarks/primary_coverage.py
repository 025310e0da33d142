"""How often the primary contrast's 95% interval covers a true difference of 0, by between-seed spread.

Simulates null experiments shaped like the frontier's (two arms of R seeds on P shared prefixes, curves of
reward = 0.5 + 0.1 KL + prefix effect + seed effect + noise) and counts how often
:func:`tdpo.experiments.imdb.stats.primary_contrast.primary_contrast`'s interval contains 0. Pure numpy; prints one
row per setting.

    python benchmarks/primary_coverage.py --experiments 200
"""

from __future__ import annotations

import argparse

import numpy as np

from tdpo.experiments.imdb.stats.matched_kl import KLCurve
from tdpo.experiments.imdb.stats.primary_contrast import primary_contrast

SCHEDULE = np.array([0.0, 0.5, 1.0, 2.0, 3.0])


def arm(rng: np.random.Generator, prefix_effect: np.ndarray, runs: int, seed_sd: float) -> list[KLCurve]:
    """``runs`` curves on the shared prefixes, each with its own seed effect of s.d. ``seed_sd``."""
    out = []
    for _ in range(runs):
        kls = SCHEDULE[:, None] * np.exp(0.3 * rng.standard_normal((SCHEDULE.size, prefix_effect.size)))
        rewards = (0.5 + 0.1 * kls + prefix_effect[None] + seed_sd * rng.standard_normal()
                   + 0.05 * rng.standard_normal(kls.shape))
        out.append(KLCurve(rewards, kls))
    return out


def coverage(seed_sd: float, runs: int, experiments: int, prefixes: int, n_boot: int) -> float:
    """Share of null experiments whose interval contains 0."""
    rng = np.random.default_rng(0)
    hits = 0
    for e in range(experiments):
        effect = 0.1 * rng.standard_normal(prefixes)
        result = primary_contrast(arm(rng, effect, runs, seed_sd), arm(rng, effect, runs, seed_sd), (0.5, 2.0),
                                  n_boot=n_boot, seed=e, grid_points=31)
        hits += bool(result.lower <= 0 <= result.upper)
    return hits / experiments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", type=int, default=200)
    parser.add_argument("--prefixes", type=int, default=64)
    parser.add_argument("--n-boot", type=int, default=500)
    args = parser.parse_args()
    print(f"null experiments: {args.experiments}, prefixes {args.prefixes}, bootstrap {args.n_boot}, nominal 0.95")
    print("| between-seed s.d. | seeds per arm | coverage |\n|---|---|---|")
    for seed_sd, runs in ((0.0, 3), (0.005, 3), (0.01, 3), (0.02, 3), (0.02, 5)):
        print(f"| {seed_sd:g} | {runs} | {coverage(seed_sd, runs, args.experiments, args.prefixes, args.n_boot):.3f} |",
              flush=True)


if __name__ == "__main__":
    main()
