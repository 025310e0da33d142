"""Tests of tdpo.models: loading the policy (full or LoRA, with its frozen initial copy) and the reference."""

from __future__ import annotations

import pytest
import torch

from tdpo.config import load_config
from tdpo.models import load_policy, load_reference
from tests.train_fixtures import make_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("models") / "tiny", seed=1)


def _cfg(model_dir, *extra):
    return load_config(None, [f"model.name_or_path={model_dir}", *extra])


def test_loaded_policy_and_reference(model_dir):
    cfg = _cfg(model_dir, "lora.enabled=true", "lora.target_modules=[q_proj, v_proj]")
    policy, _ = load_policy(cfg.model, cfg.lora)
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    full, initial = load_policy(_cfg(model_dir).model)
    assert all(p.requires_grad for p in full.parameters())
    assert not initial.training and not any(p.requires_grad for p in initial.parameters())
    for a, b in zip(full.parameters(), initial.parameters(), strict=True):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    ref = load_reference(load_config(None, [f"reference.name_or_path={model_dir}"]).reference, cfg.model)
    assert not ref.training and not any(p.requires_grad for p in ref.parameters())
