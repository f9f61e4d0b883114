"""One level of a factor against its baseline: a column of the effect model (effects.py, interactions.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Term:
    factor: str
    level: str
    baseline: str
    factor_label: str

    @property
    def label(self) -> str:
        return f"{self.factor_label}: {self.level} instead of {self.baseline}"
