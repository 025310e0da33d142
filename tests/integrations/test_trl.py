"""tdpo.integrations.trl: TDPO inside TRL's DPOTrainer, checked against an independent float64 loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("trl", reason="the tdpo[trl] extra is not installed")

from datasets import Dataset  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402

import tdpo  # noqa: E402
from tdpo.integrations.trl import TDPO_LOSS_TYPES, TRL_LOSS_TYPES, TDPOConfig, TDPOTrainer  # noqa: E402
from tests.tiny_models import byte_tokenizer, tiny_causal_lm  # noqa: E402

BETA, ALPHA = 0.1, 0.5


def _policy(seed: int = 0):
    """The reference (``tiny_causal_lm(seed)``) with every weight nudged: a policy near it."""
    model = tiny_causal_lm(seed, scale=3.0)
    generator = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    return model


def _dataset(n: int = 8) -> Dataset:
    words = ["great film", "dull plot", "fine acting", "a mess", "loved it", "too long", "brilliant", "meh"]
    return Dataset.from_dict({
        "prompt": [f"Review {i}: the movie was" for i in range(n)],
        "chosen": [f" {words[i % 8]} and {'very ' * (i % 3)}good" for i in range(n)],
        "rejected": [f" {words[(i + 3) % 8]}, bad{'!' * (i % 4)}" for i in range(n)],
    })


def _conversational(n: int = 4) -> Dataset:
    return Dataset.from_dict({
        "prompt": [[{"role": "user", "content": f"Rate movie {i}."}] for i in range(n)],
        "chosen": [[{"role": "assistant", "content": "A fine film" + "!" * i}] for i in range(n)],
        "rejected": [[{"role": "assistant", "content": "No."}] for _ in range(n)],
    })


def _tokenizer(chat: bool = False):
    tok = byte_tokenizer()
    if chat:
        tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                             "{% if add_generation_prompt %}<assistant>{% endif %}")
    return tok


def _config(tmp_path, config_class=TDPOConfig, **overrides):
    settings = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2, learning_rate=1e-3,
                    logging_steps=1, save_strategy="no", report_to="none", bf16=False,
                    gradient_checkpointing=False, seed=0, max_length=64, beta=BETA)
    if config_class is TDPOConfig:
        settings["alpha"] = ALPHA
    settings.update(overrides)
    return config_class(**settings)


def _trainer(tmp_path, loss_type="tdpo2", *, trainer_class=TDPOTrainer, config_class=TDPOConfig, peft_config=None,
             dataset=None, tokenizer=None, **overrides):
    policy = _policy()
    reference = None if peft_config is not None else tiny_causal_lm(0, scale=3.0)
    args = _config(tmp_path, config_class, loss_type=loss_type, **overrides)
    return trainer_class(model=policy, ref_model=reference, args=args, train_dataset=dataset or _dataset(),
                         processing_class=tokenizer or _tokenizer(), peft_config=peft_config)


def _batch(trainer, n: int = 4) -> dict[str, torch.Tensor]:
    return trainer.data_collator([trainer.train_dataset[i] for i in range(n)])


def _independent_loss(policy_logits, reference_logits, labels, kind: str):
    """The mean DPO/TDPO1/TDPO2 loss of a [chosen; rejected] batch in float64, written out from the
    papers' formulas (``labels`` at t are scored by the logits at t - 1)."""
    logp = F.log_softmax(policy_logits[:, :-1].double(), dim=-1)
    logq = F.log_softmax(reference_logits[:, :-1].double(), dim=-1)
    target = labels[:, 1:]
    mask = (target != -100).double()
    index = target.clamp(min=0).unsqueeze(-1)
    delta = ((logp.gather(-1, index) - logq.gather(-1, index)).squeeze(-1) * mask).sum(1)
    seq_kl = ((logq.exp() * (logq - logp)).sum(-1) * mask).sum(1)  # sum_t KL(pi_ref || pi_theta)
    b = delta.shape[0] // 2
    margin = delta[:b] - delta[b:]
    if kind == "dpo":
        z = margin
    elif kind == "tdpo1":
        z = margin - (seq_kl[b:] - seq_kl[:b])
    else:
        z = margin - ALPHA * (seq_kl[b:] - seq_kl[:b].detach())
    return -F.logsigmoid(BETA * z).mean()


def _labels(batch):
    return batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)


@pytest.mark.parametrize("loss_type", ["tdpo1", "tdpo2"])
def test_loss_and_gradients_match_an_independent_float64_computation(tmp_path, loss_type):
    trainer = _trainer(tmp_path, loss_type, tdpo_chunk_size=7)  # several chunks per batch
    batch = _batch(trainer)
    model = trainer.model.train()
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    got = {name: p.grad.clone() for name, p in model.named_parameters()}

    policy64, reference64 = _policy().double(), tiny_causal_lm(0, scale=3.0).double()
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        reference_logits = reference64(input_ids=ids, attention_mask=mask).logits
    want = _independent_loss(policy64(input_ids=ids, attention_mask=mask).logits, reference_logits, _labels(batch),
                             loss_type)
    want.backward()
    assert 0.05 < float(want.detach()) < 5  # not saturated: the comparison means something
    torch.testing.assert_close(loss.double(), want.detach(), rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # and tdpo's own full-logits path on the same tokens
        functional, _ = tdpo.loss_from_logits(policy64(input_ids=ids, attention_mask=mask).logits, reference_logits,
                                              _labels(batch), loss=loss_type, beta=BETA, alpha=ALPHA)
    torch.testing.assert_close(loss.double(), functional.double(), rtol=1e-4, atol=1e-5)
    for name, p in policy64.named_parameters():
        torch.testing.assert_close(got[name].double(), p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_batch_layout_is_trls_own_dpo(tmp_path):
    """TRL's DPO loss on its batch equals the independent DPO formula on the labels tdpo builds from it,
    and TDPOTrainer with loss_type='sigmoid' is TRL's DPO unchanged."""
    trl_trainer = _trainer(tmp_path / "trl", "sigmoid", trainer_class=DPOTrainer, config_class=DPOConfig)
    ours = _trainer(tmp_path / "ours", "sigmoid")
    batch = _batch(trl_trainer)
    trl_loss = trl_trainer.compute_loss(trl_trainer.model.eval(), batch)
    our_loss = ours.compute_loss(ours.model.eval(), batch)
    policy64, reference64 = _policy().double(), tiny_causal_lm(0, scale=3.0).double()
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        want = _independent_loss(policy64(input_ids=ids, attention_mask=mask).logits,
                                 reference64(input_ids=ids, attention_mask=mask).logits, _labels(batch), "dpo")
    torch.testing.assert_close(trl_loss.double(), want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(our_loss, trl_loss, rtol=0, atol=0)


def test_two_training_steps_log_the_sequential_kl(tmp_path):
    trainer = _trainer(tmp_path, "tdpo2")
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2
    for entry in logs:
        for key in ("kl/chosen", "kl/rejected", "kl/margin", "rewards/accuracies", "logps/chosen"):
            assert key in entry and torch.isfinite(torch.tensor(entry[key])), key
        assert entry["kl/chosen"] > 0 and entry["kl/rejected"] > 0
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])]
    assert changed


def test_peft_adapters_with_the_reference_as_adapters_off(tmp_path):
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                             init_lora_weights=False, task_type="CAUSAL_LM")
    trainer = _trainer(tmp_path, "tdpo2", peft_config=config)
    model = trainer.model.train()
    batch = _batch(trainer)
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    lora = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert lora and all("lora_" in n for n in lora)
    got = {n: p.grad.clone() for n, p in lora.items()}
    for p in lora.values():
        p.grad = None

    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad(), model.disable_adapter():
        reference_logits = model(input_ids=ids, attention_mask=mask).logits
    want = _independent_loss(model(input_ids=ids, attention_mask=mask).logits, reference_logits, _labels(batch),
                             "tdpo2")
    want.backward()
    assert float(want) != pytest.approx(0.6931, abs=1e-3)  # adapters on: the policy is not the reference
    torch.testing.assert_close(loss.double(), want.detach(), rtol=1e-4, atol=1e-5)
    for n, p in lora.items():
        torch.testing.assert_close(got[n], p.grad, rtol=1e-4, atol=1e-6, msg=n)


def test_conversational_dataset_trains(tmp_path):
    trainer = _trainer(tmp_path, "tdpo1", dataset=_conversational(), tokenizer=_tokenizer(chat=True), max_steps=1)
    example = trainer.train_dataset[0]
    assert example["chosen_ids"] and example["prompt_ids"]
    trainer.train()
    assert "kl/margin" in trainer.state.log_history[0]


@pytest.mark.parametrize("overrides, field", [
    ({"precompute_ref_log_probs": True}, "precompute_ref_log_probs"),
    ({"use_weighting": True}, "use_weighting"),
    ({"ld_alpha": 0.5}, "ld_alpha"),
    ({"f_divergence_type": "js_divergence"}, "f_divergence_type"),
    ({"loss_type": ["tdpo2", "sigmoid"]}, "loss_type"),
    ({"alpha": -1.0}, "alpha"),
    ({"tdpo_chunk_size": 0}, "tdpo_chunk_size"),
])
def test_config_refuses_what_tdpo_cannot_do_exactly(tmp_path, overrides, field):
    settings = {"loss_type": "tdpo2", **overrides}
    with pytest.raises(ValueError, match=field):
        _config(tmp_path, **settings)


@pytest.mark.parametrize("setting", ["label_smoothing", "label_smoothing_factor", "f_alpha_divergence_coef",
                                     "discopop_tau", "router_aux_loss_coef"])
def test_settings_tdpo_would_ignore_are_refused_in_one_line_naming_them(tmp_path, setting):
    value = {"label_smoothing": 0.2, "label_smoothing_factor": 0.1, "f_alpha_divergence_coef": 0.3,
             "discopop_tau": 0.1, "router_aux_loss_coef": 0.01}[setting]
    for loss_type in TDPO_LOSS_TYPES:
        with pytest.raises(ValueError, match=rf"^{setting}={value} cannot be used with loss_type='{loss_type}': ") as err:
            _config(tmp_path, loss_type=loss_type, **{setting: value})
        assert "\n" not in str(err.value)
    _config(tmp_path, loss_type="robust" if setting == "label_smoothing" else "sigmoid", **{setting: value})


@pytest.mark.parametrize("typo, suggestion", [("TDPO2", "tdpo2"), ("tdpo_2", "tdpo2"), ("Tdpo1", "tdpo1"),
                                              ("sigmod", "sigmoid")])
def test_a_misspelt_loss_type_fails_when_the_config_is_made(tmp_path, typo, suggestion):
    for loss_type in (typo, [typo]):
        with pytest.raises(ValueError, match=rf"unknown loss type '{typo}' \(did you mean '{suggestion}'\?\); valid") as err:
            _config(tmp_path, loss_type=loss_type)
        message = str(err.value)
        assert "\n" not in message
        assert all(name in message for name in TDPO_LOSS_TYPES + TRL_LOSS_TYPES)


def test_the_valid_loss_types_are_trls_and_tdpos():
    """TRL_LOSS_TYPES are the names DPOConfig documents, and each one builds a config."""
    import dataclasses
    import re

    help_text = next(f for f in dataclasses.fields(DPOConfig) if f.name == "loss_type").metadata["help"]
    assert set(TRL_LOSS_TYPES) == set(re.findall(r"`'([a-z_0-9]+)'`", help_text))
    assert not set(TRL_LOSS_TYPES) & set(TDPO_LOSS_TYPES)


def test_a_mixture_of_experts_aux_loss_is_refused_at_construction(tmp_path):
    """TRL's DPO adds the MoE load-balancing loss a model's config asks for; TDPO does not, so it asks for
    router_aux_loss_coef=0.0, and then trains."""
    from transformers import MixtralConfig, MixtralForCausalLM

    torch.manual_seed(0)
    config = MixtralConfig(vocab_size=259, hidden_size=32, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=4, num_key_value_heads=4, num_local_experts=2,
                           num_experts_per_tok=1, pad_token_id=0, bos_token_id=1, eos_token_id=2)

    def trainer(**overrides):
        args = _config(tmp_path, loss_type="tdpo2", max_steps=1, **overrides)
        return TDPOTrainer(model=MixtralForCausalLM(config), ref_model=MixtralForCausalLM(config), args=args,
                           train_dataset=_dataset(), processing_class=_tokenizer())

    with pytest.raises(ValueError, match=r"Mixture-of-Experts load-balancing loss .*router_aux_loss_coef=0.0"):
        trainer()
    trainer(router_aux_loss_coef=0.0).train()


def test_tdpo_loss_needs_the_tdpo_config(tmp_path):
    args = _config(tmp_path, DPOConfig, loss_type="tdpo2")
    with pytest.raises(ValueError, match="TDPOConfig"):
        TDPOTrainer(model=_policy(), ref_model=tiny_causal_lm(0), args=args, train_dataset=_dataset(),
                    processing_class=_tokenizer())


def test_the_readme_switch_is_two_changed_lines_that_run(tmp_path):
    """The README's diff from a TRL DPO script to TDPO2 changes two lines, and the new lines run."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    diff = re.search(r"```diff\n(.*?)```", readme, re.S).group(1).splitlines()
    removed = [line[1:] for line in diff if line.startswith("-")]
    added = [line[1:] for line in diff if line.startswith("+")]
    assert len(removed) == len(added) == 2
    namespace: dict = {}
    exec(added[0], namespace)  # the import
    assert namespace["DPOConfig"] is TDPOConfig and namespace["DPOTrainer"] is TDPOTrainer
    config = added[1].replace("args = DPOConfig(", "DPOConfig(bf16=False, report_to='none', ")
    config = config.replace('output_dir="smollm2-tdpo2"', f"output_dir={str(tmp_path)!r}")
    args = eval(config, namespace)  # TRL's bf16 default needs a GPU; the rest as written
    assert (args.loss_type, args.alpha, args.beta) == (["tdpo2"], 0.5, 0.1)


def _prompt_learning_configs():
    peft = pytest.importorskip("peft")
    return {
        "prompt_tuning": peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3),
        "p_tuning": peft.PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=3, encoder_hidden_size=16),
        "prefix_tuning": peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3),
        "cartridge": peft.CartridgeConfig(task_type="CAUSAL_LM", num_virtual_tokens=3),
    }


@pytest.mark.parametrize("kind", ["prompt_tuning", "p_tuning", "prefix_tuning", "cartridge"])
@pytest.mark.parametrize("loss_type", ["tdpo1", "tdpo2"])
def test_prompt_learning_adapters_match_an_independent_float64_computation(tmp_path, kind, loss_type):
    """Prompt-learning PEFT (virtual tokens in front of the input, or a key/value prefix): the loss and the
    adapter's gradients equal float64 ones from the PEFT model's own logits of the batch's tokens."""
    peft = pytest.importorskip("peft")
    config = _prompt_learning_configs()[kind]
    trainer = _trainer(tmp_path, loss_type, peft_config=config, tdpo_chunk_size=7)
    model = trainer.model.train()
    batch = _batch(trainer)
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trained and not any("lora_" in n for n in trained)

    model64 = peft.get_peft_model(_policy(), config)
    model64.load_state_dict(model.state_dict())  # the same adapter (trainable and frozen parts)
    model64 = model64.double().eval()
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad(), model64.disable_adapter():
        reference_logits = model64(input_ids=ids, attention_mask=mask).logits
    assert reference_logits.shape[1] == ids.shape[1]
    policy_logits = model64(input_ids=ids, attention_mask=mask).logits
    policy_logits = policy_logits[:, policy_logits.shape[1] - ids.shape[1]:]  # the batch's own positions
    want = _independent_loss(policy_logits, reference_logits, _labels(batch), loss_type)
    want.backward()
    assert float(want.detach()) != pytest.approx(0.6931, abs=1e-3)  # the adapter changes the model
    torch.testing.assert_close(loss.double(), want.detach(), rtol=1e-4, atol=1e-5)
    for n, p in model64.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(trained[n].grad.double(), p.grad, rtol=1e-4, atol=1e-6)


def test_prompt_tuning_trains_a_step(tmp_path):
    trainer = _trainer(tmp_path, "tdpo2", peft_config=_prompt_learning_configs()["prompt_tuning"], max_steps=1)
    trainer.train()
    assert "kl/margin" in trainer.state.log_history[0]


@pytest.mark.parametrize("kind", ["CPT", "MULTITASK_PROMPT_TUNING"])
def test_prompt_learning_adapters_it_cannot_run_are_refused_at_construction(tmp_path, kind):
    peft = pytest.importorskip("peft")
    config = (peft.CPTConfig(task_type="CAUSAL_LM", cpt_token_ids=[5, 6, 7], cpt_mask=[1, 1, 1],
                             cpt_tokens_type_mask=[1, 2, 3]) if kind == "CPT"
              else peft.MultitaskPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3, num_tasks=1))
    with pytest.raises(ValueError, match=f"PEFT adapter type {kind}: .*Use prompt tuning") as err:
        _trainer(tmp_path, "tdpo2", peft_config=config)
    assert "\n" not in str(err.value)


TRL_TOKEN_METRICS = ("entropy", "logits/chosen", "logits/rejected", "mean_token_accuracy")


def _half_greedy(batch):
    """``batch`` with every other chosen response token replaced by the policy's most likely token there
    (the policy is causal: a later replacement leaves earlier predictions as they were), so that about half
    of the chosen tokens are predicted: a token accuracy far from 0 and 1."""
    ids, completion = batch["input_ids"].clone(), batch["completion_mask"]
    pairs = len(ids) // 2
    model = _policy().eval()
    for t in range(0, ids.shape[1] - 1, 2):
        rows = completion[:pairs, t + 1].nonzero().flatten()
        if len(rows):
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits
            ids[rows, t + 1] = logits[rows, t].argmax(-1)
    return {**batch, "input_ids": ids}


@pytest.mark.parametrize("loss_type", ["tdpo1", "tdpo2"])
def test_trls_own_token_metrics_are_logged_with_trls_values(tmp_path, loss_type):
    """entropy, logits/chosen, logits/rejected and mean_token_accuracy: logged beside kl/*, equal to what
    TRL's own DPOTrainer logs for the same model and batch, and to a float64 computation from full logits."""
    trl_trainer = _trainer(tmp_path / "trl", "sigmoid", trainer_class=DPOTrainer, config_class=DPOConfig)
    ours = _trainer(tmp_path / "ours", loss_type, tdpo_chunk_size=7)
    batch = _half_greedy(_batch(trl_trainer, 8))
    trl_trainer.compute_loss(trl_trainer.model.train(), batch)
    ours.compute_loss(ours.model.train(), batch)
    theirs, got = trl_trainer._metrics["train"], ours._metrics["train"]
    assert "kl/margin" in got
    for key in TRL_TOKEN_METRICS:
        assert len(got[key]) == 1, key
        assert got[key][0] == pytest.approx(theirs[key][0], rel=1e-5, abs=1e-7), key

    with torch.no_grad():  # float64, from the full logits
        logits = _policy().double()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = _labels(batch)[:, 1:]
    mask = labels != -100
    logits = logits[:, :-1]
    logp = torch.log_softmax(logits, -1)
    entropy = -(logp.exp() * logp).sum(-1)
    chosen = torch.zeros_like(mask)
    chosen[: len(mask) // 2] = True
    want = {
        "entropy": entropy[mask].mean(),
        "logits/chosen": logits.mean(-1)[mask & chosen].mean(),
        "logits/rejected": logits.mean(-1)[mask & ~chosen].mean(),
        "mean_token_accuracy": (logits.argmax(-1) == labels)[mask & chosen].double().mean(),
    }
    for key, value in want.items():
        assert got[key][0] == pytest.approx(float(value), rel=1e-5, abs=1e-7), key
    assert 0.3 < float(want["mean_token_accuracy"]) < 0.8  # some tokens predicted, some not


def test_trls_token_metrics_reach_the_training_logs(tmp_path):
    trainer = _trainer(tmp_path, "tdpo2", max_steps=1)
    trainer.train()
    for key in TRL_TOKEN_METRICS + ("kl/chosen",):
        assert key in trainer.state.log_history[0], key


@pytest.mark.parametrize("loss_type, method", [("tdpo2", "TDPO (tdpo2, alpha=0.5, beta=0.1)"),
                                               ("tdpo1", "TDPO (tdpo1, beta=0.1)")])
def test_the_model_card_says_tdpo_cites_its_paper_and_is_tagged_tdpo(tmp_path, loss_type, method):
    """The card a checkpoint save writes (TRL's create_model_card) for a TDPO run."""
    from huggingface_hub import ModelCard

    trainer = _trainer(tmp_path, loss_type, max_steps=1, save_strategy="steps", save_steps=1)
    trainer.train()
    card = ModelCard.load(tmp_path / "README.md")
    assert f"This model was trained with {method}, a method introduced in [Token-level Direct Preference " \
           "Optimization](https://huggingface.co/papers/2404.11999)" in card.text
    assert "@inproceedings{zeng2024tokenlevel," in card.text and "Yongcheng Zeng" in card.text
    assert "rafailov2023direct" not in card.text and "Secretly a Reward Model" not in card.text
    assert "tdpo" in card.data.tags and "dpo" not in card.data.tags
    assert "tdpo" in trainer.model.model_tags and "dpo" not in trainer.model.model_tags


def test_the_model_card_of_trls_own_loss_types_is_trls(tmp_path):
    trainer = _trainer(tmp_path, "sigmoid")
    trainer.create_model_card(model_name="tiny")
    text = (tmp_path / "README.md").read_text()
    assert "This model was trained with DPO" in text and "rafailov2023direct" in text and "TDPO" not in text


def test_the_config_adds_exactly_the_tdpo_losses_parameters_trl_lacks():
    from dataclasses import fields

    from tdpo.loss import LOSSES, PARAMS

    added = {f.name for f in fields(TDPOConfig)} - {f.name for f in fields(DPOConfig)}
    declared = {p.name for name in TDPO_LOSS_TYPES for p in LOSSES[name].params}
    assert added == (declared - {f.name for f in fields(DPOConfig)}) | {"tdpo_chunk_size"}
    assert added == {"alpha", "tdpo_chunk_size"}
    alpha = next(f for f in fields(TDPOConfig) if f.name == "alpha")
    assert alpha.default == PARAMS["alpha"].default and PARAMS["alpha"].doc in alpha.metadata["help"]
