"""tdpo.loss.registry and tdpo.loss.spec: one record per loss declaring its own parameters; every
per-pair function against a float64 computation."""

import math

import pytest
import torch

from tdpo.loss import (
    LOSSES,
    PARAMS,
    LossSpec,
    PairBatch,
    Param,
    cache_problem,
    get_loss,
    loss,
    resolve_params,
)
from tdpo.loss.params import ALPHA, BETA, LABEL_SMOOTHING
from tdpo.loss.spec import REGISTRY


def _logsigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_the_registry_knows_what_each_loss_needs():
    assert list(LOSSES) == ["sft", "dpo", "cdpo", "ipo", "dpo_reference_free", "tdpo1", "tdpo2", "fdpo_fkl",
                            "unlikelihood", "robust_dpo", "simpo"]
    assert {n for n, s in LOSSES.items() if s.needs_reference_distribution} == {"tdpo1", "tdpo2"}
    assert {n for n, s in LOSSES.items() if not s.needs_reference} == {"sft", "dpo_reference_free", "unlikelihood",
                                                                       "simpo"}
    assert {n for n, s in LOSSES.items() if s.needs_log_complements} == {"unlikelihood"}
    assert get_loss("unlikelihood").param_names == ("alpha",) and get_loss("unlikelihood").pairwise
    assert {n for n, s in LOSSES.items() if s.cacheable} == {"dpo", "cdpo", "ipo", "fdpo_fkl", "robust_dpo"}
    assert not get_loss("sft").pairwise and get_loss("tdpo2").param_names == ("beta", "alpha")
    assert get_loss("simpo").param_names == ("beta", "gamma")
    assert get_loss("simpo").inputs == ("chosen_mean_logps", "rejected_mean_logps")
    for spec in LOSSES.values():
        assert all(PARAMS[p.name] is p for p in spec.params) and spec.description


def test_each_parameter_has_one_record_with_its_default():
    assert list(PARAMS) == ["beta", "alpha", "label_smoothing", "gamma"]
    assert (PARAMS["beta"].default, PARAMS["alpha"].default, PARAMS["label_smoothing"].default) == (0.1, 0.5, 0.0)
    assert PARAMS["beta"] is BETA and PARAMS["alpha"] is ALPHA and PARAMS["label_smoothing"] is LABEL_SMOOTHING
    assert resolve_params({}) == {"beta": 0.1, "alpha": 0.5, "label_smoothing": 0.0, "gamma": 0.5}
    assert resolve_params({"gamma": 1})["gamma"] == 1.0


def test_unknown_loss_names_every_known_one():
    with pytest.raises(ValueError, match="unknown loss 'tdpo3'; choose one of: sft, dpo, cdpo"):
        get_loss("tdpo3")


def test_unknown_parameter_names_the_known_ones():
    with pytest.raises(TypeError, match="unknown loss parameter 'betta'; the losses read: beta, alpha"):
        resolve_params({"betta": 0.1})


@pytest.mark.parametrize("values, message", [
    ({"beta": 0.0}, "beta must be a finite number > 0"),
    ({"beta": float("inf")}, "beta must be a finite number > 0"),
    ({"alpha": -0.1}, "alpha must be a finite number >= 0"),
    ({"label_smoothing": 0.5}, r"label_smoothing must be a finite number in \[0, 0.5\)"),
    ({"beta": True}, "beta must be"),
    ({"gamma": -1}, "gamma must be a finite number >= 0"),
])
def test_out_of_range_parameters_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        resolve_params(values)


def test_in_range_parameters_pass():
    resolve_params({"beta": 1e-3, "alpha": 0, "label_smoothing": 0.0})
    resolve_params({"beta": 5, "alpha": 2.0, "label_smoothing": 0.49, "gamma": 0})


def test_cache_problem_explains_tdpo_and_reference_free_losses():
    assert cache_problem("dpo") is None and cache_problem("robust_dpo") is None
    assert "full distribution" in cache_problem("tdpo2")
    for name in ("sft", "unlikelihood", "simpo"):
        assert "no reference model" in cache_problem(name)


def test_options_list_every_loss_and_alpha_names_its_readers():
    from tdpo.config.options import format_options

    text = format_options()
    for spec in LOSSES.values():
        assert f"      {spec.name}: {spec.description}" in text
    assert "unlikelihood" in PARAMS["alpha"].doc
    for value in (0.05, 0.1, 0.5, 1.0):  # the DPO paper's grid for unlikelihood
        assert PARAMS["alpha"].problem(value) is None


def _batch(w, l, kw, kl, tokens_w, tokens_l):
    return PairBatch(chosen_logratios=w, rejected_logratios=l, chosen_logps=w, rejected_logps=l,
                     chosen_tokens=tokens_w, rejected_tokens=tokens_l, chosen_kl=kw, rejected_kl=kl,
                     rejected_log_complements=l)


def test_per_pair_functions_match_float64_formulas():
    w = torch.tensor([0.3, -1.2], dtype=torch.float64)
    l = torch.tensor([-0.4, 0.5], dtype=torch.float64)
    kw = torch.tensor([0.2, 0.05], dtype=torch.float64)
    kl = torch.tensor([0.7, 0.1], dtype=torch.float64)
    nw = torch.tensor([3.0, 1.0], dtype=torch.float64)
    nl = torch.tensor([2.0, 5.0], dtype=torch.float64)
    values = {"beta": 0.5, "alpha": 0.3, "label_smoothing": 0.1, "gamma": 0.25}
    beta, alpha, eps, gamma = values["beta"], values["alpha"], values["label_smoothing"], values["gamma"]
    batch = _batch(w, l, kw, kl, nw, nl)
    for i in range(2):
        m = float(w[i] - l[i])
        d = float(kl[i] - kw[i])
        expected = {
            "dpo": -_logsigmoid(beta * m),
            "dpo_reference_free": -_logsigmoid(beta * m),
            "cdpo": -(1 - eps) * _logsigmoid(beta * m) - eps * _logsigmoid(-beta * m),
            "ipo": (m - 1 / (2 * beta)) ** 2,
            "tdpo1": -_logsigmoid(beta * (m - d)),
            "tdpo2": -_logsigmoid(beta * (m - alpha * d)),
            "fdpo_fkl": -_logsigmoid(beta * (math.exp(-float(l[i])) - math.exp(-float(w[i])))),
            # here l also stands for the rejected tokens' sum of log(1 - p)
            "unlikelihood": -float(w[i]) - alpha * float(l[i]),
            "robust_dpo": (-(1 - eps) * _logsigmoid(beta * m) + eps * _logsigmoid(-beta * m)) / (1 - 2 * eps),
            "simpo": -_logsigmoid(beta * (float(w[i]) / float(nw[i]) - float(l[i]) / float(nl[i])) - gamma),
        }
        assert set(expected) == {n for n, s in LOSSES.items() if s.pairwise}
        for name, value in expected.items():
            got = LOSSES[name].per_pair(batch, values)[i].item()
            assert got == pytest.approx(value, rel=1e-12), name


def test_a_new_loss_is_one_decorated_function():
    scale = Param("test_scale", 2.0, "a parameter of a test loss", low=0, low_open=True)
    try:
        @loss("test_hinge", "a test loss", params=(BETA, scale))
        def hinge(chosen_logratios, rejected_logratios, beta=BETA.default, test_scale=2.0):
            return torch.relu(test_scale - beta * (chosen_logratios - rejected_logratios))

        spec = REGISTRY["test_hinge"]
        assert isinstance(spec, LossSpec) and spec.inputs == ("chosen_logratios", "rejected_logratios")
        assert spec.cacheable and not spec.needs_reference_distribution
        assert hinge(torch.zeros(2), torch.zeros(2)).tolist() == [2.0, 2.0]
        with pytest.raises(ValueError, match="test_scale must be a finite number > 0"):
            hinge(torch.zeros(2), torch.zeros(2), test_scale=0.0)
        with pytest.raises(ValueError, match="expected 1-d tensors of one shape"):
            hinge(torch.zeros(2), torch.zeros(3))
    finally:
        REGISTRY.pop("test_hinge", None)


def test_a_declaration_must_match_its_parameters_and_inputs():
    with pytest.raises(TypeError, match="parameter 'beta' must be an argument defaulting to 0.1"):
        loss("bad", "x", params=(BETA,))(lambda chosen_logratios, rejected_logratios, beta=0.2: chosen_logratios)
    with pytest.raises(TypeError, match=r"inputs \['chosen_scores'\] are not attributes of PairBatch"):
        loss("bad", "x")(lambda chosen_scores: chosen_scores)
    assert "bad" not in REGISTRY
    with pytest.raises(ValueError, match="loss 'dpo' is declared twice"):
        loss("dpo", "x", params=(BETA,))(lambda chosen_logratios, rejected_logratios, beta=0.1: chosen_logratios)
