"""An estimate: a figure with its interval and the number of units it rests on, the one schema
every reported figure and verdict carries. The estimators that fill it live in `measure`."""

from __future__ import annotations

from pydantic import BaseModel

CONFIDENCE = 0.95


class Estimate(BaseModel):
    """A figure with its interval and the number of units it rests on; `low`/`high` are None
    where no interval exists (no data, or an undefined statistic)."""

    value: float | None
    low: float | None = None
    high: float | None = None
    n: int
    confidence: float = CONFIDENCE
    method: str = ""

    @property
    def known(self) -> bool:
        return self.value is not None and self.low is not None and self.high is not None

    def text(self, digits: int = 3) -> str:
        """`0.125 [0.050, 0.200], n=40` (or `n/a` parts where unknown)."""
        if self.value is None:
            return f"n/a, n={self.n}"
        interval = "" if self.low is None else f" [{self.low:.{digits}f}, {self.high:.{digits}f}]"
        return f"{self.value:.{digits}f}{interval}, n={self.n}"
