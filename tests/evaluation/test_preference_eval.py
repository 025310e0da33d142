"""Preference-set evaluation against an independent float64 computation on tiny models."""

from __future__ import annotations

import copy
import random

import pytest
import torch

from tdpo.data.collate import PreferenceCollator
from tdpo.evaluation.preference_eval import (
    pair_statistics,
    per_pair_rows,
    summarize_pairs,
)


def random_pairs(n, seed=0):
    rng = random.Random(seed)

    def ids(lo, hi):
        return [rng.randrange(3, 259) for _ in range(rng.randint(lo, hi))]

    return [{"prompt_input_ids": [1] + ids(2, 8), "chosen_input_ids": ids(1, 9) + [2],
             "rejected_input_ids": ids(1, 9) + [2], "index": 100 + i} for i in range(n)]


def sequence_float64(policy64, reference64, prompt, response):
    """Summed log-probs, sequential KL(ref || policy) and mean entropy of one response, no padding."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        lp = torch.log_softmax(policy64(ids).logits[0].double(), -1)
        lr = torch.log_softmax(reference64(ids).logits[0].double(), -1)
    logp = logr = kl = ent = 0.0
    for j, token in enumerate(response):
        t = len(prompt) - 1 + j
        logp += float(lp[t, token])
        logr += float(lr[t, token])
        kl += float((lr[t].exp() * (lr[t] - lp[t])).sum())
        ent += float(-(lp[t].exp() * lp[t]).sum())
    return logp, logr, kl, ent / len(response)


@pytest.mark.parametrize("token_stats", ["chunked", "full"])
def test_metrics_match_float64(policy, reference, token_stats):
    features = random_pairs(10)
    collate = PreferenceCollator(pad_token_id=0)
    batches = [collate(features[i:i + 4]) for i in range(0, 10, 4)]  # uneven last batch
    beta = 0.3
    pairs = pair_statistics(policy, reference, batches, token_stats=token_stats, chunk_size=5)
    metrics = summarize_pairs(pairs, beta)

    p64, r64 = copy.deepcopy(policy).double(), copy.deepcopy(reference).double()
    rows = []
    for f in features:
        c = sequence_float64(p64, r64, f["prompt_input_ids"], f["chosen_input_ids"])
        r = sequence_float64(p64, r64, f["prompt_input_ids"], f["rejected_input_ids"])
        rows.append((c, r))
    delta_w = torch.tensor([c[0] - c[1] for c, _ in rows], dtype=torch.float64)
    delta_l = torch.tensor([r[0] - r[1] for _, r in rows], dtype=torch.float64)
    kl_w = torch.tensor([c[2] for c, _ in rows], dtype=torch.float64)
    kl_l = torch.tensor([r[2] for _, r in rows], dtype=torch.float64)
    dpo_acc = float((beta * delta_w > beta * delta_l).double().mean())
    tdpo_acc = float((beta * (delta_w + kl_w) > beta * (delta_l + kl_l)).double().mean())

    assert pairs.index.tolist() == [f["index"] for f in features]
    assert pairs.chosen_kl.tolist() == pytest.approx(kl_w.tolist(), rel=1e-4, abs=1e-5)
    assert pairs.rejected_logps.tolist() == pytest.approx([r[0] for _, r in rows], rel=1e-5)
    assert metrics["num_pairs"] == 10
    assert metrics["rewards/accuracies"] == pytest.approx(dpo_acc)
    assert metrics["tdpo_rewards/accuracies"] == pytest.approx(tdpo_acc)
    assert 0 < dpo_acc < 1 and dpo_acc != tdpo_acc  # the data really tells the two apart
    assert metrics["rewards/margins"] == pytest.approx(float((beta * (delta_w - delta_l)).mean()), rel=1e-4)
    assert metrics["rewards/chosen"] == pytest.approx(float(beta * delta_w.mean()), rel=1e-4)
    assert metrics["kl/chosen"] == pytest.approx(float(kl_w.mean()), rel=1e-4)
    assert metrics["kl/rejected"] == pytest.approx(float(kl_l.mean()), rel=1e-4)
    assert metrics["logps/chosen"] == pytest.approx(sum(c[0] for c, _ in rows) / 10, rel=1e-5)
    assert metrics["entropy/rejected"] == pytest.approx(sum(r[3] for _, r in rows) / 10, rel=1e-5)
    rows_out = per_pair_rows(pairs, beta)
    assert [r["dpo_margin"] for r in rows_out] == pytest.approx((beta * (delta_w - delta_l)).tolist(), rel=1e-4,
                                                                 abs=1e-6)
    tdpo_margin = beta * ((delta_w + kl_w) - (delta_l + kl_l))
    assert [r["tdpo_margin"] for r in rows_out] == pytest.approx(tdpo_margin.tolist(), rel=1e-4, abs=1e-6)
    assert [r["tdpo_correct"] for r in rows_out] == (tdpo_margin > 0).tolist()
    low, high = metrics["rewards/accuracies_low"], metrics["rewards/accuracies_high"]
    assert low < dpo_acc < high
    lengths = [len(f["chosen_input_ids"]) for f in features]
    assert metrics["tokens/chosen"] == pytest.approx(sum(lengths) / 10)


def test_policy_against_itself(policy):
    batches = [PreferenceCollator(0)(random_pairs(4, seed=1))]
    metrics = summarize_pairs(pair_statistics(policy, policy, batches), beta=0.1)
    assert metrics["rewards/margins"] == 0 and metrics["rewards/accuracies"] == 0
    assert abs(metrics["kl/chosen"]) < 1e-5


def test_without_reference(policy):
    batches = [PreferenceCollator(0)(random_pairs(3))]
    pairs = pair_statistics(policy, None, batches)
    assert pairs.chosen_kl is None and pairs.chosen_reference_logps is None
    metrics = summarize_pairs(pairs, beta=0.1)
    assert "kl/chosen" not in metrics and "tdpo_rewards/accuracies" not in metrics


def test_bad_batches(policy):
    with pytest.raises(ValueError, match="empty"):
        pair_statistics(policy, None, [])
    odd = PreferenceCollator(0)(random_pairs(2))
    odd = {k: v[:3] for k, v in odd.items() if k != "index"}
    with pytest.raises(ValueError, match="batch 0"):
        pair_statistics(policy, None, [odd])


def test_accuracy_is_counted_in_float64():
    """Log-probs of a few hundred nats: a chosen response ahead by 1e-5 nats is ranked first (float32, whose
    spacing there is 3e-5, would call it a tie, and ties count as wrong); the summary agrees with the per-pair
    rows and its Wilson interval is that of the exact count."""
    from tdpo.evaluation.intervals import wilson_interval
    from tdpo.evaluation.preference_eval import PairStatistics

    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    pairs = PairStatistics(
        chosen_logps=t(-299.99999, -250.0, -10.0), rejected_logps=t(-300.0, -250.0, -12.0),
        chosen_reference_logps=t(-300.0, -250.0, -11.0), rejected_reference_logps=t(-300.0, -250.0, -11.0),
        chosen_kl=t(0.0, 0.0, 0.5), rejected_kl=t(0.0, 2e-5, 0.5),
        chosen_entropy=t(1.0, 1.0, 1.0), rejected_entropy=t(1.0, 1.0, 1.0),
        chosen_tokens=t(3, 3, 3), rejected_tokens=t(3, 3, 3), index=torch.arange(3),
    )
    # by hand: Delta_w - Delta_l = 1e-5, 0, 2 -> DPO correct, tie (wrong), correct;
    # adding D_w - D_l = 0, -2e-5, 0 -> TDPO correct, wrong, correct
    metrics = summarize_pairs(pairs, beta=0.1)
    assert metrics["rewards/accuracies"] == pytest.approx(2 / 3)
    assert metrics["tdpo_rewards/accuracies"] == pytest.approx(2 / 3)
    rows = per_pair_rows(pairs, beta=0.1)
    assert [r["dpo_correct"] for r in rows] == [True, False, True]
    assert [r["tdpo_correct"] for r in rows] == [True, False, True]
    assert (metrics["rewards/accuracies_low"], metrics["rewards/accuracies_high"]) == pytest.approx(
        wilson_interval(2, 3))
