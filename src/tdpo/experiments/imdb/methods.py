"""The runs of the IMDb experiment: a method written as ``LOSS`` or ``LOSS:key=value,...`` and parsed.

A run is written as ``LOSS`` or ``LOSS:key=value,...`` with keys ``beta``, ``alpha``, ``lr``, ``seed`` and
the loss's other parameters in the registry (``simpo:beta=2,gamma=1``, ``cdpo:label_smoothing=0.1``), e.g.
``dpo:beta=0.1``, ``tdpo2:beta=0.1,alpha=0.5`` or ``dpo:beta=0.1,seed=1`` (the same setting trained
again in another data order, from the same SFT model on the same pairs). ``LOSS`` is any pairwise loss
of the registry (``unlikelihood:alpha=0.1`` included) or ``preferred_ft``: the DPO paper's Preferred-FT
baseline, the ``sft`` loss on the chosen response of every training pair, or ``rloo``: the online RL
baseline, TRL's RLOO trainer with the reward classifier as its reward and ``beta`` its KL penalty
(:mod:`tdpo.experiments.imdb.online_rl`, the ``tdpo[trl]`` extra). ``beta`` or ``alpha`` given to a method
that does not read it is ignored; another loss parameter the method does not read is an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tdpo.loss import LOSSES, PARAMS, get_loss, parameter_problems

#: The losses a method may use: every pairwise loss of the registry.
PREFERENCE_LOSSES = tuple(name for name, spec in LOSSES.items() if spec.pairwise)

#: Methods that train a non-pairwise loss on the pairs' data: ``preferred_ft`` (the DPO paper's
#: Preferred-FT) is ``sft`` on the prompt and chosen response of every training pair (a completion is
#: learned as often as it is chosen: the best of a prefix's 4 samples 3 times).
FINE_TUNING_METHODS = {"preferred_ft": "sft"}

#: Methods trained online by another engine, not by tdpo's trainer on the pairs: ``rloo`` is TRL's RLOO
#: (REINFORCE with a leave-one-out baseline; the TDPO paper's RLHF baseline was PPO, which TRL no longer
#: ships) with the reward classifier as its reward and ``beta`` the weight of its KL penalty.
ONLINE_RL_METHODS = ("rloo",)

#: The online RL run ``--with-online-rl`` adds to the methods (TRL's default KL penalty).
ONLINE_RL_METHOD = "rloo:beta=0.05"

#: Every method kind: the pairwise losses, then the fine-tuning methods, then online RL.
METHOD_KINDS = (*PREFERENCE_LOSSES, *FINE_TUNING_METHODS, *ONLINE_RL_METHODS)

#: Display names of the kinds that are not written in capitals (``dpo`` -> ``DPO``).
_DISPLAY = {"preferred_ft": "Preferred-FT", "unlikelihood": "Unlikelihood", "simpo": "SimPO", "robust_dpo": "Robust DPO"}


@dataclass(frozen=True)
class Method:
    """One preference-training run of the experiment.

    Attributes:
        loss: the method (``dpo``, ``tdpo1``, ``tdpo2``, ``unlikelihood``, ``preferred_ft``, ...): a
            pairwise loss or a key of :data:`FINE_TUNING_METHODS`.
        beta: DPO/TDPO inverse temperature (ignored by methods that do not read it).
        alpha: TDPO2's weight of the sequential-KL margin, unlikelihood's weight of the rejected tokens'
            term (ignored by other losses).
        seed: the training seed's offset from the experiment's ``seed``: another data order (0: the
            first run of the setting; the SFT model, the pairs and the evaluation are the same).
        lr: the run's learning rate, or None for the experiment's ``lr`` (the TDPO paper trains TDPO at
            five times DPO's rate).
        extra: the loss's other parameters (``(("gamma", 1.0),)`` for SimPO), every one it reads
            besides beta and alpha, in the registry's order, defaults filled in.
    """

    loss: str
    beta: float = PARAMS["beta"].default
    alpha: float = PARAMS["alpha"].default
    seed: int = 0
    lr: float | None = None
    extra: tuple[tuple[str, float], ...] = ()

    @property
    def name(self) -> str:
        """Folder name of the run, e.g. ``tdpo2_beta0.1_alpha0.5`` (``..._seed1`` for seed 1),
        ``unlikelihood_alpha0.1``, ``preferred_ft``: the parameters the method reads."""
        out = self.loss + (f"_beta{self.beta:g}" if self.uses_beta else "")
        out = out + f"_alpha{self.alpha:g}" if self.uses_alpha else out
        out += "".join(f"_{key}{value:g}" for key, value in self.extra)
        out = out + f"_lr{self.lr:g}" if self.lr is not None else out
        return out + f"_seed{self.seed}" if self.seed else out

    @property
    def label(self) -> str:
        """Human label, e.g. ``TDPO2 (beta=0.1, alpha=0.5)`` (``..., seed 1)`` for seed 1),
        ``Preferred-FT``."""
        parts = [f"beta={self.beta:g}"] if self.uses_beta else []
        parts += [f"alpha={self.alpha:g}"] if self.uses_alpha else []
        parts += [f"{key}={value:g}" for key, value in self.extra]
        parts += [f"lr={self.lr:g}"] if self.lr is not None else []
        parts += [f"seed {self.seed}"] if self.seed else []
        display = _DISPLAY.get(self.loss, self.loss.upper())
        return f"{display} ({', '.join(parts)})" if parts else display

    @property
    def setting(self) -> Method:
        """The run's setting: the same method with seed 0 (the runs of one setting form one curve group)
        and the parameters it does not read at their defaults."""
        default = Method(self.loss)
        return Method(self.loss, self.beta if self.uses_beta else default.beta,
                      self.alpha if self.uses_alpha else default.alpha, lr=self.lr, extra=self.extra)

    @property
    def train_loss(self) -> str:
        """The trainer's ``loss.name``: the method itself, or ``sft`` for ``preferred_ft`` (for an online
        RL method, the method itself: it has no tdpo loss)."""
        return FINE_TUNING_METHODS.get(self.loss, self.loss)

    @property
    def online(self) -> bool:
        """Whether the method is online RL (:data:`ONLINE_RL_METHODS`), trained outside tdpo's trainer."""
        return self.loss in ONLINE_RL_METHODS

    @property
    def uses_alpha(self) -> bool:
        """Whether the loss reads alpha (TDPO2, unlikelihood)."""
        return not self.online and "alpha" in get_loss(self.train_loss).param_names

    @property
    def uses_beta(self) -> bool:
        """Whether the loss reads beta (every DPO/TDPO loss and RLOO's KL penalty; not unlikelihood or
        Preferred-FT)."""
        return self.online or "beta" in get_loss(self.train_loss).param_names


#: The keys a method may give besides the loss parameters of the registry.
_RUN_KEYS = ("lr", "seed")


def parse_method(spec: str) -> Method:
    """Parse ``LOSS[:beta=B][,alpha=A][,lr=L][,seed=N][,PARAM=V]`` (``LOSS`` one of :data:`METHOD_KINDS`,
    ``PARAM`` a parameter the loss reads in the registry; beta and alpha are ignored by a loss that does
    not read them); errors name the bad part."""
    loss, _, rest = spec.partition(":")
    loss = loss.strip().lower()
    if loss not in METHOD_KINDS:
        raise ValueError(f"method {spec!r}: unknown loss {loss!r}; choose from {', '.join(METHOD_KINDS)}")
    values: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in (*PARAMS, *_RUN_KEYS):
            raise ValueError(f"method {spec!r}: expected KEY=VALUE with KEY one of {', '.join((*PARAMS, *_RUN_KEYS))}, "
                             f"got {part!r}")
        try:
            values[key] = int(value) if key == "seed" else float(value)
        except ValueError:
            kind = "a whole number" if key == "seed" else "a number"
            raise ValueError(f"method {spec!r}: {key} must be {kind}, got {value!r}") from None
    if values.get("seed", 0) < 0:
        raise ValueError(f"method {spec!r}: seed must be >= 0, got {values['seed']}")
    if "lr" in values and not (values["lr"] > 0 and math.isfinite(values["lr"])):
        raise ValueError(f"method {spec!r}: lr must be a positive number, got {values['lr']}")
    reads = () if loss in ONLINE_RL_METHODS else get_loss(FINE_TUNING_METHODS.get(loss, loss)).param_names
    unread = [key for key in values if key not in (*reads, "beta", "alpha", *_RUN_KEYS)]
    if unread:
        raise ValueError(f"method {spec!r}: {loss} does not read {', '.join(unread)} (its parameters: "
                         f"{', '.join(reads) or 'none'})")
    extra = tuple((key, values.pop(key, PARAMS[key].default)) for key in reads if key not in ("beta", "alpha"))
    method = Method(loss, **{k: v for k, v in values.items() if k in ("beta", "alpha", *_RUN_KEYS)}, extra=extra)
    for key, reason in parameter_problems(beta=method.beta, alpha=method.alpha, **dict(extra)):
        raise ValueError(f"method {spec!r}: {key} {reason}")
    return method
