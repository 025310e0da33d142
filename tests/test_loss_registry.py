"""tdpo.loss_registry: one record per loss; its per-pair functions against a float64 computation."""

import math

import pytest
import torch

from tdpo.loss_registry import LOSSES, PARAMETERS, cache_problem, check_parameters, get_loss


def _logsigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_the_registry_knows_what_each_loss_needs():
    assert list(LOSSES) == ["sft", "dpo", "cdpo", "ipo", "dpo_reference_free", "tdpo1", "tdpo2", "fdpo_fkl",
                            "unlikelihood"]
    assert {n for n, s in LOSSES.items() if s.needs_reference_distribution} == {"tdpo1", "tdpo2"}
    assert {n for n, s in LOSSES.items() if not s.needs_reference} == {"sft", "dpo_reference_free", "unlikelihood"}
    assert {n for n, s in LOSSES.items() if s.rejected_input != "logratio"} == {"unlikelihood"}
    assert get_loss("unlikelihood").params == ("alpha",) and get_loss("unlikelihood").pairwise
    assert {n for n, s in LOSSES.items() if s.cacheable} == {"dpo", "cdpo", "ipo", "fdpo_fkl"}
    assert not get_loss("sft").pairwise and get_loss("tdpo2").params == ("beta", "alpha")
    for spec in LOSSES.values():
        assert set(spec.params) <= set(PARAMETERS) and spec.description


def test_unknown_loss_names_every_known_one():
    with pytest.raises(ValueError, match="unknown loss 'tdpo3'; choose one of: sft, dpo, cdpo"):
        get_loss("tdpo3")


@pytest.mark.parametrize("values, message", [
    ({"beta": 0.0}, "beta must be a finite number > 0"),
    ({"beta": float("inf")}, "beta must be a finite number > 0"),
    ({"alpha": -0.1}, "alpha must be a finite number >= 0"),
    ({"label_smoothing": 0.5}, r"label_smoothing must be a finite number in \[0, 0.5\)"),
    ({"beta": True}, "beta must be"),
])
def test_out_of_range_parameters_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        check_parameters(**values)


def test_in_range_parameters_pass():
    check_parameters(beta=1e-3, alpha=0, label_smoothing=0.0)
    check_parameters(beta=5, alpha=2.0, label_smoothing=0.49)


def test_cache_problem_explains_tdpo_and_reference_free_losses():
    assert cache_problem("dpo") is None
    assert "full distribution" in cache_problem("tdpo2")
    assert "no reference model" in cache_problem("sft")
    assert "no reference model" in cache_problem("unlikelihood")


def test_options_list_unlikelihood_and_its_alpha():
    from tdpo.config.options import format_options

    text = format_options()
    assert f"      unlikelihood: {get_loss('unlikelihood').description}" in text
    assert "unlikelihood" in PARAMETERS["alpha"].description
    check_parameters(alpha=0.05)
    for value in (0.05, 0.1, 0.5, 1.0):  # the DPO paper's grid
        assert PARAMETERS["alpha"].problem(value) is None


def test_per_pair_functions_match_float64_formulas():
    w = torch.tensor([0.3, -1.2], dtype=torch.float64)
    l = torch.tensor([-0.4, 0.5], dtype=torch.float64)
    kw = torch.tensor([0.2, 0.05], dtype=torch.float64)
    kl = torch.tensor([0.7, 0.1], dtype=torch.float64)
    beta, alpha, eps = 0.5, 0.3, 0.1
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
            # w: the chosen log-prob; l: the rejected tokens' sum of log(1 - p) (rejected_input)
            "unlikelihood": -float(w[i]) - alpha * float(l[i]),
        }
        for name, value in expected.items():
            got = LOSSES[name].per_pair(w, l, kw, kl, beta, alpha, eps)[i].item()
            assert got == pytest.approx(value, rel=1e-12), name
