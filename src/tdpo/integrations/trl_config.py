"""TRL's ``DPOConfig`` with the TDPO loss types: :class:`TDPOConfig`, the loss types it accepts, and how a
TDPO model card names and cites the method. See :mod:`tdpo.integrations.trl` for the whole integration.

The fields :class:`TDPOConfig` adds besides ``tdpo_chunk_size`` are the TDPO losses' own parameters that
``DPOConfig`` lacks (``alpha``), read from the loss registry (:data:`tdpo.loss.LOSSES`): their defaults,
ranges and help come from the losses' declarations.
"""

from __future__ import annotations

import difflib
import textwrap
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any

from packaging.version import Version

try:
    import trl
    from trl import DPOConfig, DPOTrainer  # noqa: F401  (DPOTrainer: for tdpo.integrations.trl, behind this check)
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "tdpo.integrations.trl needs TRL: pip install 'tdpo[trl]' (TRL >=1.16,<1.17)"
    ) from err

from tdpo.loss.registry import get_loss
from tdpo.token_stats import DEFAULT_CHUNK_SIZE

TRL_REQUIREMENT = ">=1.16,<1.17"
"""The TRL versions this module is tested with (the ``tdpo[trl]`` extra)."""

TDPO_LOSS_TYPES = ("tdpo1", "tdpo2")
"""The loss types :class:`TDPOConfig` adds to TRL's."""

TDPO_TAGS = ["trl", "tdpo"]
"""The tags of a model trained with a TDPO loss type (on the model and its card; TRL's DPO uses "dpo")."""

TDPO_PAPER = {
    "title": "Token-level Direct Preference Optimization",
    "id": "2404.11999",
    "citation": textwrap.dedent("""\
        @inproceedings{zeng2024tokenlevel,
            title         = {{Token-level Direct Preference Optimization}},
            author        = {Yongcheng Zeng and Guoqing Liu and Weiyu Ma and Ning Yang and Haifeng Zhang and Jun Wang},
            booktitle     = {Proceedings of the 41st International Conference on Machine Learning (ICML 2024)},
            series        = {Proceedings of Machine Learning Research},
            volume        = {235},
            year          = {2024},
            eprint        = {2404.11999},
            archivePrefix = {arXiv},
            url           = {https://arxiv.org/abs/2404.11999},
        }"""),
}
"""The TDPO paper as TRL's model card cites a method (title, arXiv id, BibTeX)."""


def tdpo_method_name(loss_type: str, *, alpha: float | None, beta: float) -> str:
    """How the model card names the method: ``"TDPO (tdpo2, alpha=0.5, beta=0.1)"``; TDPO1 has no alpha."""
    if loss_type == "tdpo2":
        return f"TDPO ({loss_type}, alpha={alpha:g}, beta={beta:g})"
    return f"TDPO ({loss_type}, beta={beta:g})"


TRL_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
"""TRL 1.16's own loss types (``DPOConfig.loss_type``)."""

_TRL_VERSION = Version(trl.__version__)
if not Version("1.16") <= _TRL_VERSION < Version("1.17"):
    raise ImportError(
        f"tdpo.integrations.trl is tested with TRL {TRL_REQUIREMENT}; found trl {trl.__version__}. "
        "Install the tested range: pip install 'tdpo[trl]'"
    )

@dataclass
class _TDPOConfigBase(DPOConfig):
    """What :class:`TDPOConfig` adds to ``DPOConfig`` besides the TDPO losses' own parameters."""

    tdpo_chunk_size: int = field(
        default=DEFAULT_CHUNK_SIZE,
        metadata={"help": "Response positions projected onto the vocabulary at a time by the TDPO statistics."},
    )

    def __post_init__(self) -> None:
        if isinstance(self.loss_type, str):
            self.loss_type = [self.loss_type]
        check_loss_types(self.loss_type)
        tdpo = [name for name in self.loss_type if name in TDPO_LOSS_TYPES]
        if tdpo:
            if len(self.loss_type) != 1:
                raise ValueError(f"loss_type: {tdpo[0]!r} must be the only loss type; got {self.loss_type}")
            self._refuse_what_tdpo_ignores(tdpo[0])
        super().__post_init__()
        if not tdpo:
            return
        for param in get_loss(tdpo[0]).params:
            param.check(getattr(self, param.name))
        if not isinstance(self.tdpo_chunk_size, int) or self.tdpo_chunk_size < 1:
            raise ValueError(f"tdpo_chunk_size must be a positive integer; got {self.tdpo_chunk_size!r}")

    def _refuse_what_tdpo_ignores(self, loss_type: str) -> None:
        """A one-line ValueError naming the first setting that a TDPO loss cannot honour."""
        defaults = {f.name: f.default for f in fields(self)}
        changed = {name: getattr(self, name) != defaults[name] for name in ("f_alpha_divergence_coef", "discopop_tau")}
        problems = {
            "precompute_ref_log_probs": (self.precompute_ref_log_probs,
                                         "TDPO needs the reference's full next-token distribution at every "
                                         "position, not cached per-sequence log-probs; set it to False"),
            "use_weighting": (self.use_weighting, "WPO weighting is defined for DPO only; set it to False"),
            "ld_alpha": (self.ld_alpha is not None, "length desensitisation is defined for DPO only; leave it None"),
            "f_divergence_type": (self.f_divergence_type != "reverse_kl",
                                  "TDPO is defined for the reverse-KL (standard DPO) rewards; use 'reverse_kl'"),
            "loss_weights": (self.loss_weights not in (None, [1.0]), "TDPO is a single loss; leave it None"),
            "label_smoothing": (self.label_smoothing != 0,
                                "TDPO has no label smoothing (in TRL it belongs to the robust, exo_pair and aot "
                                "losses) and would ignore it; leave it 0"),
            "label_smoothing_factor": (self.label_smoothing_factor != 0,
                                       "token label smoothing is not part of TDPO's loss and would be ignored; "
                                       "leave it 0"),
            "f_alpha_divergence_coef": (changed["f_alpha_divergence_coef"],
                                        "it sets the alpha-divergence of f-DPO, not TDPO2's alpha (set alpha=); "
                                        "leave it at its default"),
            "discopop_tau": (changed["discopop_tau"],
                             "it is the DiscoPOP loss's temperature, which TDPO ignores; leave it at its default"),
            "router_aux_loss_coef": (self.router_aux_loss_coef not in (None, 0, 0.0),
                                     "TDPO does not add the Mixture-of-Experts load-balancing loss; set it to 0.0"),
        }
        for name, (bad, why) in problems.items():
            if bad:
                raise ValueError(f"{name}={getattr(self, name)!r} cannot be used with loss_type={loss_type!r}: {why}")



def _tdpo_parameter_fields() -> list[tuple[str, type, Any]]:
    """One dataclass field per hyper-parameter a TDPO loss declares that ``DPOConfig`` lacks (``alpha``;
    ``beta`` is TRL's own), with the loss registry's default and documentation."""
    own = {f.name for f in fields(DPOConfig)}
    out: dict[str, tuple[str, type, Any]] = {}
    for loss_type in TDPO_LOSS_TYPES:
        for p in get_loss(loss_type).params:
            if p.name not in own and p.name not in out:
                out[p.name] = (p.name, float, field(default=p.default, metadata={"help": f"{p.doc} ({p.range_text})."}))
    return list(out.values())


TDPOConfig = make_dataclass("TDPOConfig", _tdpo_parameter_fields(), bases=(_TDPOConfigBase,),
                            namespace={"__module__": __name__})
TDPOConfig.__doc__ = """TRL's ``DPOConfig`` with the TDPO loss types. Every ``DPOConfig`` field keeps its meaning.

    Parameters:
        loss_type (`str` or `list[str]`, defaults to `["sigmoid"]`):
            TRL's loss types plus ``"tdpo1"`` and ``"tdpo2"`` (Zeng et al., ICML 2024). With
            ``delta = log pi_theta(y|x) - log pi_ref(y|x)`` and the sequential KL
            ``D = sum_t KL(pi_ref(.|x, y_<t) || pi_theta(.|x, y_<t))`` of each response:
            ``tdpo1`` is ``-log sigmoid(beta * ((delta_w - delta_l) - (D_l - D_w)))``,
            ``tdpo2`` is ``-log sigmoid(beta * ((delta_w - delta_l) - alpha * (D_l - sg(D_w)))))``
            with ``sg`` the stop-gradient. A TDPO loss type must be the only one.
        beta (`float`, defaults to `0.1`):
            As in DPO: the inverse temperature of the sigmoid (the TDPO paper uses 0.1).
        alpha (`float`, defaults to `0.5`):
            TDPO2's weight of the sequential-KL margin (>= 0; the paper's default 0.5). Ignored by
            other loss types.
        tdpo_chunk_size (`int`, defaults to `1024`):
            Response positions projected onto the vocabulary at a time by the TDPO statistics: the
            extra memory is ``O(tdpo_chunk_size * vocab)`` whatever the batch and sequence length.
    """


def _closest(word: str, names: tuple[str, ...]) -> list[str]:
    """The names nearest ``word`` by ``difflib``'s similarity (all those tied for nearest; none below 0.6)."""
    scores = {name: difflib.SequenceMatcher(None, word, name).ratio() for name in names}
    best = max(scores.values())
    return [name for name in names if scores[name] == best] if best >= 0.6 else []


def check_loss_types(loss_types: list[str]) -> None:
    """Raise a one-line ValueError for a name that is neither TRL's nor tdpo's loss type.

    The message lists the valid names and, where one is close (``difflib``, case-insensitive), asks
    "did you mean" it: ``"TDPO2"`` and ``"tdpo_2"`` suggest ``'tdpo2'``.
    """
    valid = TDPO_LOSS_TYPES + TRL_LOSS_TYPES
    for name in loss_types:
        if name in valid:
            continue
        close = _closest(name.lower(), valid) if isinstance(name, str) else []
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        raise ValueError(f"loss_type: unknown loss type {name!r}{hint}; valid names: {', '.join(valid)}")
