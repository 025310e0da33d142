"""The hyper-parameters of the losses and their allowed ranges: the one place these ranges are written.

:mod:`tdpo.losses` checks its arguments against them, :mod:`tdpo.loss_registry` lists which loss
reads which, and configuration validation reports them under ``loss.``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Parameter:
    """A loss hyper-parameter and its allowed range.

    Attributes:
        name: the key under ``loss.`` in a config (``beta``, ``alpha``, ``label_smoothing``).
        description: one line for ``--options`` and errors.
        low: the smallest allowed value, or None for no lower bound.
        high: the largest allowed value, or None for no upper bound.
        low_open: whether ``low`` itself is excluded.
        high_open: whether ``high`` itself is excluded.
    """

    name: str
    description: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    @property
    def range_text(self) -> str:
        """The range in interval notation, e.g. ``> 0`` or ``in [0, 0.5)``."""
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"

    def problem(self, value: object) -> str | None:
        """Why ``value`` is not allowed (a sentence without the key), or None when it is."""
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if ok and self.low is not None:
            ok = value > self.low if self.low_open else value >= self.low
        if ok and self.high is not None:
            ok = value < self.high if self.high_open else value <= self.high
        return None if ok else f"must be a finite number {self.range_text}, got {value!r}"


#: The hyper-parameters losses read, with their ranges.
PARAMETERS: dict[str, Parameter] = {
    p.name: p
    for p in (
        Parameter("beta", "inverse temperature of the DPO family and TDPO (IPO's tau)", low=0, low_open=True),
        Parameter("alpha", "TDPO2's weight of the sequential-KL margin; unlikelihood's weight of the rejected tokens'"
                  " term", low=0),
        Parameter("label_smoothing", "conservative DPO's label-noise epsilon", low=0, high=0.5, high_open=True),
    )
}

def parameter_problems(**values: object) -> list[tuple[str, str]]:
    """``(name, reason)`` for every hyper-parameter in ``values`` outside its range, in order."""
    out = []
    for name, value in values.items():
        reason = PARAMETERS[name].problem(value)
        if reason is not None:
            out.append((name, reason))
    return out


def check_parameters(**values: object) -> None:
    """Raise a ValueError naming the first out-of-range hyper-parameter, e.g. ``beta=...``."""
    problems = parameter_problems(**values)
    if problems:
        name, reason = problems[0]
        raise ValueError(f"{name} {reason}")


