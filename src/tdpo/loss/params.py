"""The hyper-parameters of the losses: name, default, allowed range and documentation, each written once.

A loss lists the :class:`Param` objects it reads in its registry entry (:mod:`tdpo.loss.losses`); a
parameter several losses read (``beta`` above all) is one object shared by their entries, so it has
one default and one range. The training configuration's ``loss.*`` fields, the functional API's keyword
checks and the TRL integration's fields are derived from these records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Param:
    """A loss hyper-parameter.

    Attributes:
        name: the key under ``loss.`` in a config and the keyword of the functional API.
        default: the value when none is given.
        doc: one line for ``--options`` and errors.
        low: the smallest allowed value, or None for no lower bound.
        high: the largest allowed value, or None for no upper bound.
        low_open: whether ``low`` itself is excluded.
        high_open: whether ``high`` itself is excluded.
    """

    name: str
    default: float
    doc: str
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
            ok = value > self.low if self.low_open else value >= self.low  # type: ignore[operator]
        if ok and self.high is not None:
            ok = value < self.high if self.high_open else value <= self.high  # type: ignore[operator]
        return None if ok else f"must be a finite number {self.range_text}, got {value!r}"

    def check(self, value: object) -> None:
        """Raise a ValueError ``"<name> must be ..."`` unless ``value`` is allowed."""
        reason = self.problem(value)
        if reason is not None:
            raise ValueError(f"{self.name} {reason}")


BETA = Param("beta", 0.1, "inverse temperature of the DPO family and TDPO (IPO's tau)", low=0, low_open=True)
"""Read by most pairwise losses; the DPO and TDPO papers' 0.1."""

ALPHA = Param("alpha", 0.5, "TDPO2's weight of the sequential-KL margin; unlikelihood's weight of the "
              "rejected tokens' term (the DPO paper's grid for unlikelihood: 0.05, 0.1, 0.5, 1)", low=0)
"""TDPO2's alpha (the TDPO paper's IMDb default 0.5) and unlikelihood's."""

LABEL_SMOOTHING = Param("label_smoothing", 0.0, "label-noise epsilon of conservative and robust DPO",
                        low=0, high=0.5, high_open=True)
"""The probability that a pair's preference label is flipped."""
