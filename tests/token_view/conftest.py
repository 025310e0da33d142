"""Shared by the token-view tests: three tiny saved models, a small preference file, and the float64
per-token numbers of a response computed here from each model's full logits."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.tiny_models import byte_tokenizer, tiny_causal_lm

WORDS = "the a cat dog sat ran fast slow happy sad movie film good bad great awful café".split()


@dataclass
class TinySetup:
    root: Path
    paths: dict[str, Path]  # sft (the reference), dpo, tdpo2
    data: Path
    records: list[dict]
    tokenizer: object

    def pair_ids(self, i: int) -> tuple[list[int], list[int], list[int]]:
        """Record ``i`` tokenized as the data loader does: prompt (BOS first), chosen and rejected + EOS."""
        r, tok = self.records[i], self.tokenizer
        eos = [tok.eos_token_id]
        return (tok(r["prompt"])["input_ids"], tok(r["chosen"], add_special_tokens=False)["input_ids"] + eos,
                tok(r["rejected"], add_special_tokens=False)["input_ids"] + eos)


@pytest.fixture(scope="session")
def tiny_setup(tmp_path_factory) -> TinySetup:
    root = tmp_path_factory.mktemp("token_view")
    tokenizer = byte_tokenizer()
    paths = {}
    for name, seed in (("sft", 1), ("dpo", 0), ("tdpo2", 3)):
        model = tiny_causal_lm(seed, len(tokenizer), scale=20.0)
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        paths[name] = root / name
    rng = random.Random(0)
    records = [{"prompt": "Review: " + " ".join(rng.choices(WORDS, k=3)),
                "chosen": " " + " ".join(rng.choices(WORDS, k=rng.randint(1, 3))),
                "rejected": " " + " ".join(rng.choices(WORDS, k=rng.randint(1, 3)))} for _ in range(5)]
    records[1]["chosen"] = " </script><b>café</b>"  # markup and a two-byte character in a response
    data = root / "prefs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return TinySetup(root, paths, data, records, tokenizer)


@pytest.fixture(scope="session")
def float64_tokens():
    """``f(policy_dir, reference_dir, prompt_ids, response_ids, k)`` -> one dict per response token: ``lp``,
    ``lr`` (log-probs), ``kl`` (KL(pi_ref || pi_theta) at its position), ``pt``/``rt`` (each model's top-k
    as ``[(id, prob), ...]``), all from float64 log-softmaxes of the models' full logits."""
    from transformers import AutoModelForCausalLM

    models: dict[str, object] = {}

    def load(path):
        if str(path) not in models:
            models[str(path)] = AutoModelForCausalLM.from_pretrained(path).eval()
        return models[str(path)]

    def compute(policy_dir, reference_dir, prompt_ids, response_ids, k=5):
        ids = torch.tensor([list(prompt_ids) + list(response_ids)])
        with torch.no_grad():
            lp = torch.log_softmax(load(policy_dir)(input_ids=ids).logits[0].double(), -1)
            lr = torch.log_softmax(load(reference_dir)(input_ids=ids).logits[0].double(), -1)
        out = []
        for n, y in enumerate(response_ids):
            c = len(prompt_ids) + n - 1  # the position whose logits score token n of the response
            p, q = lp[c], lr[c]
            top_p, top_q = p.exp().topk(k), q.exp().topk(k)
            out.append({"id": y, "lp": float(p[y]), "lr": float(q[y]), "kl": float((q.exp() * (q - p)).sum()),
                        "pt": list(zip(top_p.indices.tolist(), top_p.values.tolist())),
                        "rt": list(zip(top_q.indices.tolist(), top_q.values.tolist()))})
        return out

    return compute
