"""view_pairs / view_samples on tiny saved models: every number of the page's data against float64
computations from the full logits (conftest.float64_tokens), the sums and margins by hand."""

from __future__ import annotations

import pytest
import torch

from tdpo.data import DataConfig, load_preference_data
from tdpo.evaluation.generation import SamplingConfig
from tdpo.token_view import ViewSettings, score_batch, view_pairs, view_samples

TOL = dict(abs=3e-5, rel=1e-4)


def check_tokens(tokens, expected, vocab, tokenizer):
    assert [t["id"] for t in tokens] == [e["id"] for e in expected]
    for t, e in zip(tokens, expected, strict=True):
        for key in ("lp", "lr", "kl"):
            assert t[key] == pytest.approx(e[key], **TOL), key
        for key in ("pt", "rt"):
            assert [i for i, _ in t[key]] == [i for i, _ in e[key]]
            assert [p for _, p in t[key]] == pytest.approx([p for _, p in e[key]], abs=1e-5)
            assert all(vocab[str(i)] == tokenizer.decode([i]) for i, _ in t[key])


def test_pairs_page_data_equals_float64_computations(tiny_setup, float64_tokens):
    s = tiny_setup
    loaded = load_preference_data(DataConfig(source=str(s.data), test_split="none", test_size=0, cache=False),
                                  s.tokenizer)
    settings = ViewSettings(beta=0.2, top_k=5, batch_size=2, chunk_size=3, progress=False)
    page = view_pairs({"DPO": str(s.paths["dpo"]), "TDPO2": str(s.paths["tdpo2"])}, str(s.paths["sft"]),
                      loaded.train, loaded.collate, s.tokenizer, settings, source="prefs")
    assert page["mode"] == "pairs" and page["models"] == ["DPO", "TDPO2"] and page["beta"] == 0.2
    assert [item["index"] for item in page["items"]] == list(range(5))
    for i, item in enumerate(page["items"]):
        prompt, chosen, rejected = s.pair_ids(i)
        assert item["prompt"] == s.tokenizer.decode(prompt)
        for m, key in enumerate(("dpo", "tdpo2")):
            cell = item["cells"][m]
            assert [r["role"] for r in cell["responses"]] == ["chosen", "rejected"]
            sums = []
            for response, ids in zip(cell["responses"], (chosen, rejected), strict=True):
                expected = float64_tokens(s.paths[key], s.paths["sft"], prompt, ids)
                check_tokens(response["tokens"], expected, page["vocab"], s.tokenizer)
                assert "".join(t["t"] for t in response["tokens"]) == s.tokenizer.decode(ids)
                sums.append((sum(e["lp"] - e["lr"] for e in expected), sum(e["kl"] for e in expected)))
            (dw, kw), (dl, kl) = sums
            want = {"delta_w": dw, "delta_l": dl, "kl_w": kw, "kl_l": kl, "kl_gap": kl - kw,
                    "dpo_margin": 0.2 * (dw - dl), "tdpo_margin": 0.2 * ((dw - dl) - (kl - kw))}
            for name, value in want.items():
                assert cell["stats"][name] == pytest.approx(value, abs=2e-4, rel=1e-4), name
    pieces = [t["t"] for t in page["items"][1]["cells"][0]["responses"][0]["tokens"]]
    assert "" in pieces and "é" in pieces  # the two bytes of é: the first waits, the second shows it


def test_samples_are_seeded_and_scored_like_pairs(tiny_setup, float64_tokens):
    s = tiny_setup
    prompts = [s.tokenizer("Review: the movie")["input_ids"], s.tokenizer("A cat")["input_ids"]]
    sampling = SamplingConfig(max_new_tokens=6, temperature=1.0, batch_size=2, seed=3)
    settings = ViewSettings(beta=0.1, top_k=3, batch_size=1, progress=False)
    policies = {"DPO": str(s.paths["dpo"]), "TDPO2": str(s.paths["tdpo2"])}
    page = view_samples(policies, str(s.paths["sft"]), prompts, s.tokenizer, settings, sampling, source="p")
    again = view_samples(policies, str(s.paths["sft"]), prompts, s.tokenizer, settings, sampling, source="p")
    assert page == again and page["mode"] == "samples" and page["sampling"]["seed"] == 3
    samples = []
    for item, prompt in zip(page["items"], prompts, strict=True):
        for m, key in enumerate(("dpo", "tdpo2")):
            (response,) = item["cells"][m]["responses"]
            ids = [t["id"] for t in response["tokens"]]
            assert response["role"] == "sample" and (len(ids) == 6 or ids[-1] == s.tokenizer.eos_token_id)
            expected = float64_tokens(s.paths[key], s.paths["sft"], prompt, ids, 3)
            check_tokens(response["tokens"], expected, page["vocab"], s.tokenizer)
            delta = sum(e["lp"] - e["lr"] for e in expected)
            stats = item["cells"][m]["stats"]
            assert stats["delta"] == pytest.approx(delta, abs=2e-4)
            assert stats["reward"] == pytest.approx(0.1 * delta, abs=2e-5)
            assert stats["kl"] == pytest.approx(sum(e["kl"] for e in expected), abs=2e-4)
            samples.append(ids)
    assert samples[0] != samples[1] or samples[2] != samples[3]  # each policy scored on its own samples


def test_score_batch_never_runs_the_output_head(tiny_setup):
    """The chunked path projects hidden states itself: the head module (which would make [S, T, V]
    logits) is never called."""
    from transformers import AutoModelForCausalLM

    policy = AutoModelForCausalLM.from_pretrained(tiny_setup.paths["dpo"])
    reference = AutoModelForCausalLM.from_pretrained(tiny_setup.paths["sft"])

    def refuse(*args, **kwargs):
        raise AssertionError("the output head ran on the whole sequence")

    for model in (policy, reference):
        model.lm_head.forward = refuse
    ids = torch.tensor([[1, 40, 41, 42, 2], [1, 50, 51, 2, 0]])
    labels = torch.tensor([[-100, -100, 41, 42, 2], [-100, 50, 51, 2, -100]])
    details = score_batch(policy, reference, {"input_ids": ids, "attention_mask": (labels != -100) | (ids != 0),
                                              "labels": labels}, top_k=4, chunk_size=2)
    assert details.kl.shape == (6,) and details.policy_top_ids.shape == (6, 4)
    assert details.sequence_index.tolist() == [0, 0, 0, 1, 1, 1] and details.positions.tolist() == [2, 3, 4, 1, 2, 3]


def test_settings_are_checked():
    with pytest.raises(ValueError, match="top_k"):
        ViewSettings(top_k=0)
    with pytest.raises(ValueError, match="beta"):
        ViewSettings(beta=0)
