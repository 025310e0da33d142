"""The held-out evaluation's clustered standard errors of the sequential-KL means (tdpo.training.pair_spread):
against hand computations, over two simulated processes, and logged by a real run against an independent
float64 computation of every pair's sequential KL."""

from __future__ import annotations

import math

import pytest
import torch

from tdpo.token_stats import SequenceStats
from tdpo.training.pair_spread import PairSpread
from tests.train_fixtures import collate_pairs, make_model_dir, make_pairs, single_thread, tiny_config  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")


class OneProcess:
    num_processes = 1
    device = torch.device("cpu")


def _batch_and_stats(examples: list[dict], chosen_kl: list[float], rejected_kl: list[float]):
    batch = collate_pairs(examples)
    kl = torch.tensor(chosen_kl + rejected_kl, dtype=torch.float32)
    zeros = torch.zeros_like(kl)
    return batch, SequenceStats(policy_logps=zeros, reference_logps=zeros, kl=kl, entropy=zeros, num_tokens=zeros)


def _examples(prompts: list[list[int]]) -> list[dict]:
    return [{"index": i, "prompt": p, "chosen": [7, 8], "rejected": [9]} for i, p in enumerate(prompts)]


def test_pairs_of_one_prompt_form_one_cluster():
    """Prompts A, A, B, C (A twice): margins (rejected - chosen) 1, 3 | 4 | 0; cluster sums of the
    residuals around the mean 2: (1 - 2) + (3 - 2) = 0, 2, -2; se = sqrt(3/2 * 8) / 4."""
    examples = _examples([[5, 6], [5, 6], [6, 5], [5, 6, 4]])
    batch, stats = _batch_and_stats(examples, [0.0, 1.0, 0.0, 2.0], [1.0, 4.0, 4.0, 2.0])
    spread = PairSpread()
    spread.add(batch, stats, count=4)
    out = spread.standard_errors(OneProcess())
    assert out["kl/prompts"] == 3.0
    assert out["kl/margin_se"] == pytest.approx(math.sqrt(1.5 * 8) / 4, abs=1e-12)
    # chosen KLs 0, 1 | 0 | 2: mean 0.75, cluster sums of the residuals -0.5, -0.75, 1.25
    assert out["kl/chosen_se"] == pytest.approx(math.sqrt(1.5 * (0.25 + 0.5625 + 1.5625)) / 4, abs=1e-12)
    assert out["kl/rejected_se"] > 0 and set(out) == {"kl/prompts", "kl/chosen_se", "kl/rejected_se", "kl/margin_se"}


def test_filler_rows_and_batches_without_a_kl_are_left_out():
    examples = _examples([[5, 6], [6, 5]])
    batch, stats = _batch_and_stats(examples, [0.0, 1.0], [2.0, 2.0])
    spread = PairSpread()
    spread.add(batch, stats, count=1)  # the second pair is filler
    spread.add(batch, SequenceStats(stats.policy_logps, None, None, stats.entropy, stats.num_tokens), count=2)
    assert spread.keys and len(spread.kls) == 1
    assert math.isnan(spread.standard_errors(OneProcess())["kl/margin_se"])  # one cluster: no s.e.
    assert PairSpread().standard_errors(OneProcess()) == {}


class TwoProcesses:
    """Rank 0 of two processes whose other rank kept ``other``: ``gather`` concatenates rank 0's tensor
    with the other rank's tensor of the same call (its pair count, its padded keys, its padded KLs, in the
    order :class:`PairSpread` gathers them), as accelerate does."""

    num_processes = 2
    device = torch.device("cpu")

    def __init__(self, other: PairSpread) -> None:
        self.other, self.calls = other, 0

    def pad_across_processes(self, tensor: torch.Tensor, dim: int = 0) -> torch.Tensor:
        longest = max(tensor.shape[0], len(self.other.keys))
        return torch.cat([tensor, torch.zeros((longest - tensor.shape[0], *tensor.shape[1:]), dtype=tensor.dtype)])

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        other = [torch.tensor([len(self.other.keys)]), torch.tensor(self.other.keys, dtype=torch.int64),
                 torch.tensor(self.other.kls, dtype=torch.float64).reshape(-1, 2)][self.calls]
        self.calls += 1
        return torch.cat([tensor, other if self.calls == 1 else self.pad_across_processes(other)])

    def reduce(self, tensor: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        return tensor + float(bool(self.other.keys))


def test_two_processes_give_the_standard_errors_of_all_their_pairs():
    examples = _examples([[5, 6], [6, 5], [5, 6], [4, 4], [6, 5]])
    chosen, rejected = [0.1, 0.5, 0.3, 0.2, 0.9], [1.0, 0.2, 0.8, 0.6, 1.5]
    batch, stats = _batch_and_stats(examples, chosen, rejected)
    whole = PairSpread()
    whole.add(batch, stats, count=5)
    expected = whole.standard_errors(OneProcess())
    # rank 0 kept pairs 0, 2, 4 and rank 1 pairs 1, 3 (every second example, as padded_batches shares them)
    rank0, rank1 = PairSpread(), PairSpread()
    for spread, rows in ((rank0, [0, 2, 4]), (rank1, [1, 3])):
        part, part_stats = _batch_and_stats([examples[i] for i in rows], [chosen[i] for i in rows],
                                            [rejected[i] for i in rows])
        spread.add(part, part_stats, count=len(rows))
    assert rank0.standard_errors(TwoProcesses(rank1)) == pytest.approx(expected, abs=1e-12)


def _sequential_kls(policy, reference, pair: dict) -> tuple[float, float]:
    """sum over the response tokens (and EOS) of KL(pi_ref || pi_theta), chosen and rejected, in float64."""
    out = []
    for response in (pair["chosen"], pair["rejected"]):
        ids = torch.tensor([[1, *pair["prompt"], *response, 2]])
        start = 1 + len(pair["prompt"])
        with torch.no_grad():
            lp = torch.log_softmax(policy(ids).logits[0].double(), -1)
            lr = torch.log_softmax(reference(ids).logits[0].double(), -1)
        out.append(sum(float((lr[t].exp() * (lr[t] - lp[t])).sum()) for t in range(start - 1, ids.shape[1] - 1)))
    return out[0], out[1]


def test_a_runs_eval_rows_log_the_clustered_standard_errors(tmp_path):
    from transformers import AutoModelForCausalLM

    from tdpo.evaluation.clustered import clustered_mean_sem
    from tdpo.training import TrainingData, train
    from tdpo.training.tracking import read_metrics

    model_dir = make_model_dir(tmp_path / "tiny", seed=0)
    train_pairs = make_pairs(8)
    # held-out pairs: 3 prompts, 3, 2 and 1 pairs each
    held = make_pairs(6, seed=5)
    for i, source in ((1, 0), (2, 0), (4, 3)):
        held[i]["prompt"] = list(held[source]["prompt"])
    cfg = tiny_config(model_dir, tmp_path / "run", "loss.name=tdpo2", "schedule.max_steps=6", "eval.at_start=true",
                      "optim.micro_batch_size=2", "eval.micro_batch_size=4")
    run = train(cfg, data=TrainingData(train=train_pairs, eval=held, collate=collate_pairs))
    start, end = read_metrics(run, "eval")
    assert start["kl/margin_se"] == pytest.approx(0.0, abs=1e-6) and start["kl/prompts"] == 3.0
    policy = AutoModelForCausalLM.from_pretrained(run / "final", dtype=torch.float32).eval()
    reference = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    kls = [_sequential_kls(policy, reference, p) for p in held]
    prompts = [tuple(p["prompt"]) for p in held]
    for name, values in (("chosen", [c for c, _ in kls]), ("rejected", [r for _, r in kls]),
                         ("margin", [r - c for c, r in kls])):
        mean, se = clustered_mean_sem(values, prompts)
        assert end[f"kl/{name}"] == pytest.approx(mean, rel=1e-4, abs=1e-6)
        assert end[f"kl/{name}_se"] == pytest.approx(se, rel=1e-3, abs=1e-6) and se > 0
    assert end["kl/prompts"] == 3.0
