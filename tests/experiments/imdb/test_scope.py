"""Tests of tdpo.experiments.imdb.scope: what a run's report says it can and cannot show."""

from tdpo.experiments.imdb.experiment import make_config
from tdpo.experiments.imdb.presets import demo_config, frontier_config
from tdpo.experiments.imdb.scope import scope_lines


def _results(kl=0.99, reward=0.59, lower=0.04):
    sft = {"label": "SFT", "reward": 0.52, "reverse_kl": 0.0}
    dpo = {"label": "DPO (beta=0.1)", "reward": reward, "reverse_kl": kl,
           "vs_sft": {"difference": reward - 0.52, "lower": lower, "upper": 0.10, "verdict": "above"}}
    tdpo2 = {"label": "TDPO2 (beta=0.1, alpha=0.5)", "reward": 0.56, "reverse_kl": 0.67,
             "vs_sft": {"difference": 0.045, "lower": 0.017, "upper": 0.074, "verdict": "above"}}
    return {"models": [sft, dpo, tdpo2]}


def test_the_demo_says_dpo_rose_above_sft_and_what_it_cannot_show():
    text = "\n".join(scope_lines(demo_config(), _results()))
    assert "DPO (beta=0.1)'s final reward against the SFT model's" in text and "+0.070 [+0.040, +0.100], above" in text
    assert "Whether one method beats another" in text and "1 training seed," in text
    assert "end at most at 0.99 nats and a reward of 0.590" in text  # below the paper's regime
    assert "clearest pair(s)" in text and "GPT-2 Large" in text and "siebert" in text


def test_a_run_in_the_papers_regime_with_a_primary_contrast_says_so():
    results = {**_results(kl=4.2, reward=0.85), "primary": {"verdict": "no difference at this scale"}}
    text = "\n".join(scope_lines(make_config(frontier_config(), model="gpt2-large", reward="siebert/x"), results))
    assert "primary contrast (no difference at this scale)" in text
    assert "Whether one method" not in text and "paper's regime" not in text and "clearest" not in text
    assert "siebert" not in text and "GPT-2" not in text
