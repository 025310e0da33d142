"""Tests of tdpo.model.stats, .body and .passes: body hidden states, the TokenStatsModel wrapper
(chunked == full, its named uses), LoRA reference = adapters disabled, the one reference-then-policy pass,
and FSDP2."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch

from tdpo.config import load_config
from tdpo.model.body import body_hidden_states
from tdpo.model.passes import PolicyAndReference
from tdpo.model.stats import ReferenceOutputs, TokenStatsModel
from tdpo.models import load_policy
from tdpo.token_stats import OutputHead
from tests.train_fixtures import collate_pairs, make_model_dir, make_pairs


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("models") / "tiny", seed=1)


@pytest.fixture(scope="module")
def tied_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("models") / "tied", seed=2, tie=True)


def _cfg(model_dir, *extra):
    return load_config(None, [f"model.name_or_path={model_dir}", *extra])


def _batch():
    return collate_pairs(make_pairs(3, seed=5))


def _reference_logps(model, batch):
    """Independent: log-softmax of the full logits, shifted, summed over response tokens."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.double()
    labels = batch["labels"][:, 1:]
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    mask = labels != -100
    picked = logp.gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    return (picked * mask).sum(-1)


@pytest.mark.parametrize("which", ["untied", "tied"])
def test_body_hidden_states_times_head_give_the_model_logits(which, model_dir, tied_dir):
    policy, _ = load_policy(_cfg(model_dir if which == "untied" else tied_dir).model)
    batch = _batch()
    hidden = body_hidden_states(policy, batch["input_ids"], batch["attention_mask"])
    assert hidden.shape == (*batch["input_ids"].shape, 32)
    logits = policy(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(hidden @ policy.lm_head.weight.t(), logits, rtol=1e-5, atol=1e-5)


def test_body_hidden_states_through_peft(model_dir):
    cfg = _cfg(model_dir, "lora.enabled=true", "lora.r=4")
    policy, initial = load_policy(cfg.model, cfg.lora)
    assert initial is None  # LoRA: no second copy
    # make the adapters do something
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    batch = _batch()
    hidden = body_hidden_states(policy, batch["input_ids"], batch["attention_mask"])
    logits = policy(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    head = policy.get_base_model().lm_head.weight
    torch.testing.assert_close(hidden @ head.t(), logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tie", [False, True])
def test_chunked_and_full_wrappers_agree_in_values_and_gradients(tie, model_dir, tied_dir):
    folder = tied_dir if tie else model_dir
    policy, initial = load_policy(_cfg(folder).model)
    with torch.no_grad():  # move the policy away from the reference
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = _batch()
    results = {}
    for path in ("chunked", "full"):
        model = copy.deepcopy(policy)
        wrapper = TokenStatsModel(model, path, chunk_size=4)
        reference = TokenStatsModel(initial, path, chunk_size=4)
        with torch.no_grad():
            ref = reference.reference_outputs(batch["input_ids"], batch["attention_mask"])
        stats = wrapper.policy_stats(batch["input_ids"], batch["attention_mask"], batch["labels"], ref)
        (stats.policy_logps.sum() + stats.kl.sum()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        results[path] = (stats, grads)
    (sc, gc), (sf, gf) = results["chunked"], results["full"]
    for name in ("policy_logps", "reference_logps", "kl", "entropy"):
        torch.testing.assert_close(getattr(sc, name), getattr(sf, name), rtol=1e-5, atol=1e-5)
    for name in gc:
        torch.testing.assert_close(gc[name], gf[name], rtol=1e-4, atol=1e-6)
    # and the reference log-probs against an independent computation
    rows = torch.zeros(sc.num_sequences, dtype=torch.float64).index_add(0, sc.sequence_index,
                                                                        sc.reference_logps.double())
    torch.testing.assert_close(rows, _reference_logps(initial, batch), rtol=1e-5, atol=1e-5)


def test_lora_reference_is_the_base_model_with_adapters_disabled(model_dir):
    cfg = _cfg(model_dir, "lora.enabled=true", "lora.r=4")
    policy, _ = load_policy(cfg.model, cfg.lora)
    base_copy, _ = load_policy(_cfg(model_dir).model)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    wrapper = TokenStatsModel(policy, "chunked", chunk_size=3)
    batch = _batch()
    with torch.no_grad():
        as_ref = wrapper.reference_stats(batch["input_ids"], batch["attention_mask"], batch["labels"],
                                         disable_adapters=True)
        plain = wrapper.policy_stats(batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert policy.training  # restored after the reference pass
    rows = torch.zeros(3 * 2, dtype=torch.float64).index_add(0, as_ref.sequence_index, as_ref.policy_logps.double())
    torch.testing.assert_close(rows, _reference_logps(base_copy, batch), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(plain.policy_logps, as_ref.policy_logps)  # the adapters matter


def test_reference_pass_hands_over_hidden_states_and_head(model_dir):
    policy, initial = load_policy(_cfg(model_dir).model)
    batch = _batch()
    with torch.no_grad():
        out = TokenStatsModel(initial).reference_outputs(batch["input_ids"], batch["attention_mask"])
        full = TokenStatsModel(initial, "full").reference_outputs(batch["input_ids"], batch["attention_mask"])
    assert out.logits is None and out.hidden.shape[:2] == batch["input_ids"].shape
    assert torch.equal(out.head.weight, initial.lm_head.weight)
    assert full.hidden is None and full.logits.shape == (*batch["input_ids"].shape, 48)
    with pytest.raises(ValueError, match="token_stats"):
        TokenStatsModel(policy, "half")


def test_forward_refuses_an_unknown_mode_and_missing_labels(model_dir):
    policy, _ = load_policy(_cfg(model_dir).model)
    batch = _batch()
    with pytest.raises(ValueError, match="mode must be one of"):
        TokenStatsModel(policy)(batch["input_ids"], batch["attention_mask"], batch["labels"], mode="reference")
    with pytest.raises(ValueError, match="labels are needed"):
        TokenStatsModel(policy)(batch["input_ids"], batch["attention_mask"])
    # the plain call is the policy's statistics
    wrapper = TokenStatsModel(policy, chunk_size=4)
    with torch.no_grad():
        plain = wrapper(batch["input_ids"], batch["attention_mask"], batch["labels"])
        named = wrapper.policy_stats(batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert torch.equal(plain.policy_logps, named.policy_logps) and plain.reference_logps is None


@pytest.mark.parametrize("path", ["chunked", "full"])
def test_policy_and_reference_pass_against_an_independent_computation(path, model_dir):
    policy, initial = load_policy(_cfg(model_dir).model)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = _batch()
    models = PolicyAndReference(TokenStatsModel(policy, path, chunk_size=4), TokenStatsModel(initial, path))
    assert models.has_reference and not PolicyAndReference(models.policy).has_reference
    stats = models.statistics(batch["input_ids"], batch["attention_mask"], batch["labels"])

    def per_row(values):
        return torch.zeros(stats.num_sequences, dtype=torch.float64).index_add(0, stats.sequence_index, values.double())

    torch.testing.assert_close(per_row(stats.policy_logps), _reference_logps(policy, batch), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(per_row(stats.reference_logps), _reference_logps(initial, batch), rtol=1e-5, atol=1e-5)
    own = models.reference_stats(batch["input_ids"], batch["attention_mask"], batch["labels"])
    torch.testing.assert_close(per_row(own.policy_logps), _reference_logps(initial, batch), rtol=1e-5, atol=1e-5)
    alone = models.statistics(batch["input_ids"], batch["attention_mask"], batch["labels"], with_reference=False)
    assert alone.reference_logps is None and alone.kl is None
    torch.testing.assert_close(alone.policy_logps, stats.policy_logps)
    with pytest.raises(ValueError, match="needs a reference"):
        PolicyAndReference(models.policy).statistics(batch["input_ids"], batch["attention_mask"], batch["labels"])


def test_lora_reference_pass_disables_the_adapters(model_dir):
    cfg = _cfg(model_dir, "lora.enabled=true", "lora.r=4")
    policy, _ = load_policy(cfg.model, cfg.lora)
    base_copy, _ = load_policy(_cfg(model_dir).model)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    batch = _batch()
    models = PolicyAndReference(TokenStatsModel(policy, chunk_size=3), lora_reference=True,
                                reference_device=torch.device("cpu"))
    stats = models.statistics(batch["input_ids"], batch["attention_mask"], batch["labels"])
    rows = torch.zeros(6, dtype=torch.float64).index_add(0, stats.sequence_index, stats.reference_logps.double())
    torch.testing.assert_close(rows, _reference_logps(base_copy, batch), rtol=1e-5, atol=1e-5)
    assert policy.training and stats.policy_logps.requires_grad


def test_reference_outputs_move_to_a_device():
    weight = torch.randn(5, 3)
    out = ReferenceOutputs(hidden=torch.randn(2, 4, 3), head=OutputHead(weight, 2.0)).to(torch.device("cpu"))
    assert out.hidden.device.type == "cpu" and out.head.logit_scale == 2.0 and torch.equal(out.head.weight, weight)
    assert out.logits is None


def _fsdp2_worker(rank: int, world: int, model_dir: str, store: str, out: str) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    # a file store: no port to pick and race other processes for
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        # what this process sees of the group, for the test to check that both ranks ran in one world of 2
        seen = {"world_size": dist.get_world_size(), "rank": dist.get_rank(), "pid": os.getpid()}
        Path(f"{out}.world-{rank}.json").write_text(json.dumps(seen))
        mesh = init_device_mesh("cpu", (world,))
        wrapper, reference = _perturbed_pair(model_dir)
        for layer in wrapper.model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(wrapper, mesh=mesh)  # the root unit holds the embeddings, final norm and head
        _tdpo2_backward(wrapper, reference, make_pairs(4, seed=1)[2 * rank:2 * rank + 2])
        grads = {n: p.grad.full_tensor().contiguous() for n, p in wrapper.named_parameters()}  # collective
        dist.barrier()  # every rank is done with gloo before any tears it down
    finally:
        dist.destroy_process_group()
    if rank == 0:  # results are handed back only once the group is gone
        from safetensors.torch import save_file

        save_file(grads, out)


def _perturbed_pair(model_dir):
    policy, initial = load_policy(_cfg(model_dir).model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return TokenStatsModel(policy, "chunked", chunk_size=4), TokenStatsModel(initial, "chunked", chunk_size=4)


def _tdpo2_backward(wrapper, reference, pairs) -> None:
    from tdpo.loss import compute_loss
    from tdpo.token_stats import sequence_stats

    batch = collate_pairs(pairs)
    with torch.no_grad():
        ref = reference.reference_outputs(batch["input_ids"], batch["attention_mask"])
    stats = wrapper.policy_stats(batch["input_ids"], batch["attention_mask"], batch["labels"], ref)
    loss, _ = compute_loss("tdpo2", sequence_stats(stats))
    loss.backward()


@pytest.mark.slow
def test_chunked_statistics_under_fsdp2_on_two_cpu_processes_match_one_process(model_dir, tmp_path):
    """The head weight is used inside the sharded wrapper's forward, so FSDP gathers it there and
    reduces its gradient: sharded gradients (head included) equal a single process's."""
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    out = str(tmp_path / "grads.safetensors")
    mp.spawn(_fsdp2_worker, args=(2, str(model_dir), str(tmp_path / "store"), out), nprocs=2, join=True)
    seen = [json.loads(Path(f"{out}.world-{rank}.json").read_text()) for rank in (0, 1)]
    assert [(s["world_size"], s["rank"]) for s in seen] == [(2, 0), (2, 1)]
    assert seen[0]["pid"] != seen[1]["pid"]
    wrapper, reference = _perturbed_pair(model_dir)
    _tdpo2_backward(wrapper, reference, make_pairs(4, seed=1))
    sharded = load_file(out)
    single = {n: p.grad for n, p in wrapper.named_parameters()}
    assert sharded.keys() == single.keys()
    for name in single:
        torch.testing.assert_close(sharded[name], single[name], rtol=1e-4, atol=1e-7)
    assert single["model.lm_head.weight"].abs().max() > 0


def _loss_and_grads(models, policy, batch):
    """TDPO2's loss on the statistics, and the policy's gradients, with float64 per-row sums."""
    for p in policy.parameters():
        p.grad = None
    stats = models.statistics(batch["input_ids"], batch["attention_mask"], batch["labels"])
    rows = stats.num_sequences

    def per_row(values):
        return torch.zeros(rows, dtype=torch.float64).index_add(0, stats.sequence_index, values.double())

    delta = per_row(stats.policy_logps) - per_row(stats.reference_logps)
    kl = per_row(stats.kl)
    half = rows // 2
    u = (delta[:half] - delta[half:]) - 0.5 * (kl[half:] - kl[:half].detach())
    loss = -torch.nn.functional.logsigmoid(0.1 * u).mean()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}
    return loss.detach(), per_row(stats.policy_logps).detach(), grads


@pytest.mark.parametrize("path", ["chunked", "full"])
@pytest.mark.parametrize("reference", ["separate", "lora"])
def test_padding_free_pass_equals_the_padded_pass_in_loss_and_gradients(path, reference, model_dir):
    extra = ["lora.enabled=true", "lora.r=4"] if reference == "lora" else []
    cfg = _cfg(model_dir, *extra)
    policy, initial = load_policy(cfg.model, cfg.lora)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if reference == "separate" or "lora_B" in name:
                p.add_(0.05 * torch.randn_like(p))
    batch = collate_pairs(make_pairs(5, seed=9, prompt_len=(1, 6), response_len=(1, 9)))
    assert (batch["attention_mask"] == 0).float().mean() > 0.2  # enough padding to matter
    wrapper = TokenStatsModel(policy, path, chunk_size=5)
    ref = None if reference == "lora" else TokenStatsModel(initial, path)
    padded = PolicyAndReference(wrapper, ref, lora_reference=reference == "lora")
    packed = PolicyAndReference(wrapper, ref, lora_reference=reference == "lora", padding_free=True)
    loss_a, logps_a, grads_a = _loss_and_grads(padded, policy, batch)
    loss_b, logps_b, grads_b = _loss_and_grads(packed, policy, batch)
    torch.testing.assert_close(logps_b, _reference_logps(policy, batch), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logps_b, logps_a, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-6)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-6, msg=name)
    own_a = padded.reference_stats(batch["input_ids"], batch["attention_mask"], batch["labels"])
    own_b = packed.reference_stats(batch["input_ids"], batch["attention_mask"], batch["labels"])
    rows = batch["input_ids"].shape[0]
    sums = [torch.zeros(rows, dtype=torch.float64).index_add(0, s.sequence_index, s.policy_logps.double())
            for s in (own_a, own_b)]
    torch.testing.assert_close(sums[1], sums[0], rtol=1e-5, atol=1e-5)


def test_packing_probe_accepts_llama_and_refuses_a_model_that_ignores_positions(model_dir):
    from tdpo.model.body import supports_packing

    policy, _ = load_policy(_cfg(model_dir).model)
    policy.train()
    assert supports_packing(policy) and policy.training

    class IgnoresPositions(torch.nn.Module):
        """Forwards to the model but drops position_ids: packed sequences would see each other."""

        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, input_ids, attention_mask=None, position_ids=None, **kwargs):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    assert not supports_packing(IgnoresPositions(policy))
