"""token_details_from_hidden against float64 computations from the full logits of tiny Llama models,
written here with plain loops over the rows (no code of tdpo.token_stats)."""

from __future__ import annotations

import pytest
import torch

from tdpo.model.body import body_hidden_states
from tdpo.model.heads import output_head
from tdpo.token_stats import OutputHead, token_details_from_hidden
from tests.tiny_models import tiny_causal_lm

V = 259


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three right-padded rows of different prompt and response lengths: ``input_ids``, mask, labels ``[3, 12]``."""
    g = torch.Generator().manual_seed(0)
    rows = [(3, 6), (1, 9), (5, 2)]  # (prompt, response) lengths
    ids = torch.zeros(3, 12, dtype=torch.long)
    mask = torch.zeros(3, 12, dtype=torch.long)
    labels = torch.full((3, 12), -100, dtype=torch.long)
    for r, (p, n) in enumerate(rows):
        ids[r, :p + n] = torch.randint(3, V, (p + n,), generator=g)
        mask[r, :p + n] = 1
        labels[r, p:p + n] = ids[r, p:p + n]
    return ids, mask, labels


def float64_expectations(policy, reference, ids, mask, labels, k):
    """Per response token, from each model's full logits in float64: (row, column, label, log pi_theta,
    log pi_ref, KL(pi_ref || pi_theta), policy top-k (ids, log-probs), reference top-k)."""
    with torch.no_grad():
        lp = torch.log_softmax(policy(input_ids=ids, attention_mask=mask).logits.double(), -1)
        lr = torch.log_softmax(reference(input_ids=ids, attention_mask=mask).logits.double(), -1)
    out = []
    for r in range(ids.shape[0]):
        for c in range(1, ids.shape[1]):
            if labels[r, c] == -100:
                continue
            y = int(labels[r, c])
            p, q = lp[r, c - 1], lr[r, c - 1]
            kl = float((q.exp() * (q - p)).sum())
            out.append((r, c, y, float(p[y]), float(q[y]), kl, p.topk(k), q.topk(k)))
    return out


@pytest.mark.parametrize("chunk_size", [1, 4, 1024])
def test_details_equal_a_float64_computation_from_full_logits(chunk_size):
    policy, reference = tiny_causal_lm(0, V, scale=8.0), tiny_causal_lm(1, V, scale=8.0)
    ids, mask, labels = batch()
    with torch.no_grad():
        hp = body_hidden_states(policy, ids, mask)
        hr = body_hidden_states(reference, ids, mask)
    d = token_details_from_hidden(hp, output_head(policy), hr, output_head(reference), labels, top_k=5,
                                  chunk_size=chunk_size)
    expected = float64_expectations(policy, reference, ids, mask, labels, 5)
    assert d.policy_logps.shape == (len(expected),) == (6 + 9 + 2,)
    assert d.policy_top_ids.shape == d.reference_top_logps.shape == (len(expected), 5)
    for i, (r, c, y, p, q, kl, ptop, qtop) in enumerate(expected):
        assert (int(d.sequence_index[i]), int(d.positions[i]), int(d.targets[i])) == (r, c, y)
        assert float(d.policy_logps[i]) == pytest.approx(p, abs=2e-5)
        assert float(d.reference_logps[i]) == pytest.approx(q, abs=2e-5)
        assert float(d.log_ratios[i]) == pytest.approx(p - q, abs=4e-5)
        assert float(d.kl[i]) == pytest.approx(kl, abs=2e-5, rel=1e-4)
        assert d.policy_top_ids[i].tolist() == ptop.indices.tolist()
        assert d.reference_top_ids[i].tolist() == qtop.indices.tolist()
        assert d.policy_top_logps[i].double() == pytest.approx(ptop.values, abs=2e-5)
        assert d.reference_top_logps[i].double() == pytest.approx(qtop.values, abs=2e-5)
    assert float(d.kl.min()) >= 0 and float(d.kl.max()) > 0.1  # different models, sharp heads


def test_logit_scale_and_a_shared_head():
    """The head's logit scale is applied; policy and reference may share one head (LoRA-like)."""
    g = torch.Generator().manual_seed(1)
    hidden_p, hidden_r = torch.randn(2, 5, 4, generator=g), torch.randn(2, 5, 4, generator=g)
    weight = torch.randn(7, 4, generator=g)
    labels = torch.tensor([[-100, 3, 4, 5, -100], [-100, -100, 6, 0, 1]])
    d = token_details_from_hidden(hidden_p, OutputHead(weight, 0.5), hidden_r, OutputHead(weight, 0.5), labels,
                                  top_k=7, chunk_size=2)
    i = 0
    for r in range(2):
        for c in range(1, 5):
            if labels[r, c] == -100:
                continue
            p = torch.log_softmax(0.5 * hidden_p[r, c - 1].double() @ weight.double().t(), -1)
            q = torch.log_softmax(0.5 * hidden_r[r, c - 1].double() @ weight.double().t(), -1)
            assert float(d.policy_logps[i]) == pytest.approx(float(p[labels[r, c]]), abs=1e-5)
            assert float(d.kl[i]) == pytest.approx(float((q.exp() * (q - p)).sum()), abs=1e-5)
            assert sorted(d.policy_top_ids[i].tolist()) == list(range(7))  # k = V: every token
            i += 1
    assert i == 6 == d.kl.shape[0]


def test_bad_arguments_are_named():
    h, w = torch.zeros(1, 3, 4), torch.zeros(7, 4)
    labels = torch.tensor([[-100, 1, 2]])
    with pytest.raises(ValueError, match="top_k"):
        token_details_from_hidden(h, w, h, w, labels, top_k=8)
    with pytest.raises(ValueError, match="chunk_size"):
        token_details_from_hidden(h, w, h, w, labels, chunk_size=0)
    with pytest.raises(ValueError, match="reference head has vocabulary 6"):
        token_details_from_hidden(h, w, h, torch.zeros(6, 4), labels)
    with pytest.raises(ValueError, match="reference_hidden"):
        token_details_from_hidden(h, w, torch.zeros(1, 2, 4), w, labels)
    with pytest.raises(ValueError, match=r"labels\[0, 2\] = 9"):
        token_details_from_hidden(h, w, h, w, torch.tensor([[-100, 1, 9]]))
