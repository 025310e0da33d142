"""What a loss is: its registry entry (:class:`LossSpec`), what it reads (:class:`PairBatch`) and the
decorator that declares one (:func:`loss`).

A loss is one pure per-pair function whose positional arguments are named after attributes of
:class:`PairBatch` and whose keyword arguments are :class:`~tdpo.loss.params.Param` records::

    @loss("dpo", "DPO: -log sigmoid(beta * (Delta_w - Delta_l))", params=(BETA,))
    def dpo_loss(chosen_logratios, rejected_logratios, beta=BETA.default): ...

The decorator records the function (unchecked, for the objective, which validates the values once) in
:data:`REGISTRY` and returns a checked version for direct callers, which validates the parameters and
the shapes on every call.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

from torch import Tensor

from tdpo.loss.params import Param

PairLoss = Callable[..., Tensor]
"""``fn(*inputs, **params) -> [B]``: a per-pair loss from ``[B]`` tensors of :class:`PairBatch`."""


@dataclass(frozen=True)
class PairBatch:
    """Everything a per-pair loss may read of B pairs (all ``[B]``).

    Attributes:
        chosen_logratios: Delta_w = log pi_theta(y_w|x) - log pi_ref(y_w|x), summed over the response
            (its per-token mean with ``average_log_prob``); the policy's log-prob for a reference-free loss.
        rejected_logratios: Delta_l, the same for the rejected response.
        chosen_logps: log pi_theta(y_w|x) (summed, or averaged with ``average_log_prob``).
        rejected_logps: log pi_theta(y_l|x).
        chosen_tokens: the chosen responses' token counts.
        rejected_tokens: the rejected responses' token counts.
        averaged: whether the log-probs are already per-token means.
        chosen_kl: D_w = sum_t KL(pi_ref || pi_theta) along y_w, or None without the reference's distribution.
        rejected_kl: D_l, or None.
        rejected_log_complements: U_l = sum_t log(1 - pi_theta(y_l,t|x, y_l,<t)), or None when not computed.
    """

    chosen_logratios: Tensor
    rejected_logratios: Tensor
    chosen_logps: Tensor
    rejected_logps: Tensor
    chosen_tokens: Tensor
    rejected_tokens: Tensor
    averaged: bool = False
    chosen_kl: Tensor | None = None
    rejected_kl: Tensor | None = None
    rejected_log_complements: Tensor | None = None

    @property
    def chosen_mean_logps(self) -> Tensor:
        """``[B]`` log pi_theta(y_w|x) / |y_w|: the length-normalised log-prob (SimPO's implicit reward)."""
        return self.chosen_logps if self.averaged else self.chosen_logps / self.chosen_tokens.clamp(min=1)

    @property
    def rejected_mean_logps(self) -> Tensor:
        """``[B]`` log pi_theta(y_l|x) / |y_l|."""
        return self.rejected_logps if self.averaged else self.rejected_logps / self.rejected_tokens.clamp(min=1)


#: What a loss may name as an input: the fields and properties of :class:`PairBatch`.
INPUTS = frozenset(f.name for f in fields(PairBatch)) | {"chosen_mean_logps", "rejected_mean_logps"}
_KL_INPUTS = frozenset({"chosen_kl", "rejected_kl"})


@dataclass(frozen=True)
class LossSpec:
    """One loss: its registry entry.

    Attributes:
        name: the value of ``loss.name``.
        description: one line for ``--options`` and errors.
        fn: the per-pair loss without checks (see :data:`PairLoss`); None for ``sft``, which is not pairwise.
        inputs: the :class:`PairBatch` attributes ``fn`` takes, in order.
        params: the hyper-parameters ``fn`` takes by keyword.
        needs_reference: whether it needs the reference model at all.
    """

    name: str
    description: str
    fn: PairLoss | None
    inputs: tuple[str, ...] = ()
    params: tuple[Param, ...] = ()
    needs_reference: bool = True

    @property
    def pairwise(self) -> bool:
        """Whether the loss reads chosen/rejected pairs (every loss but ``sft``)."""
        return self.fn is not None

    @property
    def needs_reference_distribution(self) -> bool:
        """Whether it reads the sequential KL, so the reference's full distribution at every response token."""
        return bool(_KL_INPUTS & set(self.inputs))

    @property
    def needs_log_complements(self) -> bool:
        """Whether it reads the rejected tokens' ``log(1 - p)`` (unlikelihood training)."""
        return "rejected_log_complements" in self.inputs

    @property
    def cacheable(self) -> bool:
        """Whether cached per-sequence reference log-probs can replace the reference model."""
        return self.needs_reference and not self.needs_reference_distribution

    @property
    def param_names(self) -> tuple[str, ...]:
        """The names of :attr:`params`, in order."""
        return tuple(p.name for p in self.params)

    def per_pair(self, batch: PairBatch, values: Mapping[str, float]) -> Tensor:
        """``[B]`` the loss of each pair of ``batch`` with already validated parameter ``values``."""
        if self.fn is None:
            raise ValueError(f"loss {self.name!r} is not pairwise")
        args = [getattr(batch, name) for name in self.inputs]
        return self.fn(*args, **{p.name: values[p.name] for p in self.params})


#: Every loss by name, in the order they were declared (``--options`` lists them so).
REGISTRY: dict[str, LossSpec] = {}


def register(spec: LossSpec) -> LossSpec:
    """Add ``spec`` to :data:`REGISTRY` (a ValueError if its name is taken); return it."""
    if spec.name in REGISTRY:
        raise ValueError(f"loss {spec.name!r} is declared twice")
    REGISTRY[spec.name] = spec
    return spec


def _inputs_of(fn: PairLoss, params: tuple[Param, ...]) -> tuple[str, ...]:
    """The positional inputs of ``fn``: its arguments that are not ``params``, each checked to be a
    :class:`PairBatch` attribute; and every ``params`` default checked against the signature's."""
    signature = inspect.signature(fn)
    names = {p.name for p in params}
    for p in params:
        arg = signature.parameters.get(p.name)
        if arg is None or arg.default != p.default:
            raise TypeError(f"{fn.__name__}: parameter {p.name!r} must be an argument defaulting to {p.default!r}")
    inputs = tuple(n for n in signature.parameters if n not in names)
    unknown = [n for n in inputs if n not in INPUTS]
    if unknown:
        raise TypeError(f"{fn.__name__}: inputs {unknown} are not attributes of PairBatch")
    return inputs


def check_same_shape(**tensors: Tensor) -> None:
    """Raise a ValueError naming every shape unless the tensors are 1-d of one shape ``[B]``."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    first = next(iter(shapes.values()))
    if any(shape != first for shape in shapes.values()) or len(first) != 1:
        raise ValueError(f"expected 1-d tensors of one shape [B]; got {shapes}")


def loss(name: str, description: str, *, params: tuple[Param, ...] = (), reference: bool = True
         ) -> Callable[[PairLoss], PairLoss]:
    """Declare the decorated per-pair function as loss ``name`` (see the module docs).

    Args:
        name: the value of ``loss.name``.
        description: one line for ``--options``.
        params: the hyper-parameters it takes by keyword, each an argument whose default is the
            parameter's.
        reference: whether it needs the reference model (False for reference-free losses).

    Returns:
        A decorator returning the checked function: it validates every parameter against its range
        and every input's shape (``[B]``, all alike) before computing.
    """

    def declare(fn: PairLoss) -> PairLoss:
        inputs = _inputs_of(fn, params)
        register(LossSpec(name, description, fn, inputs, params, reference))
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def checked(*args: object, **kwargs: object) -> Tensor:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            for p in params:
                p.check(bound.arguments[p.name])
            check_same_shape(**{n: bound.arguments[n] for n in inputs})  # type: ignore[misc]
            return fn(*bound.args, **bound.kwargs)

        return checked

    return declare
