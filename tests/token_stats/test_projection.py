"""Tests of tdpo.token_stats.projection: the one head projection and chunk-size rule, the one chunk-size
default every signature refers to, and the pure statistics importing no model-facing module."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import torch

from tdpo.token_stats import DEFAULT_CHUNK_SIZE, OutputHead
from tdpo.token_stats.projection import as_head, check_chunk_size, project


def test_project_is_the_scaled_float32_product():
    hidden, weight = torch.randn(3, 4, dtype=torch.bfloat16), torch.randn(5, 4, dtype=torch.bfloat16)
    expected = hidden.float() @ weight.float().t()
    assert project(hidden, weight).dtype == torch.float32
    assert torch.equal(project(hidden, weight), expected)
    assert torch.equal(project(hidden, weight, 0.5), expected * 0.5)


def test_as_head_and_the_chunk_size_rule():
    weight = torch.randn(5, 4)
    assert as_head(weight, "policy") == OutputHead(weight)
    head = OutputHead(weight, 2.0)
    assert as_head(head, "policy") is head
    with pytest.raises(ValueError, match="the reference head weight must be"):
        as_head(weight[0], "reference")
    check_chunk_size(1)
    for bad in (0, -3, True, 2.0, "8"):
        with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
            check_chunk_size(bad)


def test_every_chunk_size_default_is_the_one_constant():
    from tdpo.evaluation.diversity import policy_diversity, response_entropy
    from tdpo.evaluation.policy_comparison import ComparisonSettings
    from tdpo.evaluation.preference_eval import pair_statistics
    from tdpo.experiments.imdb.evaluate import batch_divergences, completion_divergences
    from tdpo.loss.objective import loss_from_hidden
    from tdpo.model.stats import TokenStatsModel
    from tdpo.token_stats import (
        sample_divergences_from_hidden,
        sample_divergences_from_logits,
        token_details_from_hidden,
        token_stats_from_hidden,
    )
    from tdpo.token_view.compute import ViewSettings, score_batch

    assert DEFAULT_CHUNK_SIZE == 1024
    functions = [policy_diversity, response_entropy, pair_statistics, batch_divergences, completion_divergences,
                 loss_from_hidden, sample_divergences_from_hidden, sample_divergences_from_logits,
                 token_details_from_hidden, token_stats_from_hidden, TokenStatsModel.__init__, score_batch]
    for function in functions:
        assert inspect.signature(function).parameters["chunk_size"].default == DEFAULT_CHUNK_SIZE, function
    assert ComparisonSettings.chunk_size == ViewSettings.chunk_size == DEFAULT_CHUNK_SIZE
    from tdpo.config import load_config

    assert load_config(None, []).loss.chunk_size == DEFAULT_CHUNK_SIZE  # loss.chunk_size's default


def test_the_pure_statistics_import_no_model_facing_module():
    code = ("import sys, tdpo.token_stats; print(sorted(m for m in sys.modules "
            "if m.startswith('tdpo.') and not m.startswith('tdpo.token_stats')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    code = ("import sys, tdpo.token_stats; print(sorted(m for m in sys.modules if m.startswith('tdpo.token_stats.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for model_facing in ("body", "heads", "model", "passes"):
        assert f"'tdpo.token_stats.{model_facing}'" not in loaded
