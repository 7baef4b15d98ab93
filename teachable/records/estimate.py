"""An estimate: a figure with its interval and the number of units it rests on, the one schema
every reported figure and verdict carries. The estimators that fill it live in `measure`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, field_validator

CONFIDENCE = 0.95


Design = Literal["normal", "welch", "crossed", "fisher z"]


class VarianceComponent(BaseModel):
    """One term of an estimate's variance: `variance` per unit of `level`, divided by the
    product of the sizes in `over` (the levels it is averaged over, as large as this run made
    them). The planner scales `over` to predict the interval of a run of other sizes."""

    level: str
    variance: float
    over: dict[str, int]

    @field_validator("variance")
    @classmethod
    def _significant(cls, variance: float) -> float:
        """Six significant digits, as a figure is kept: a figure recomputed from its logged
        data gives the same record."""
        return float(f"{variance:.6g}")

    def share(self, sizes: dict[str, float] | None = None) -> float:
        """The term's part of the variance at `sizes` (this run's where None)."""
        divisor = 1.0
        for name, size in self.over.items():
            divisor *= size if sizes is None else sizes.get(name, size)
        return self.variance / divisor


class Estimate(BaseModel):
    """A figure with its interval and the number of units it rests on; `low`/`high` are None
    where no interval exists (no data, or an undefined statistic).

    `n` counts the units; where they are laid out in levels, `parts` gives the size of each
    (seeds, items, episodes), and the figure is reported by its parts, never their product.
    `counts` names what else the interval rests on (discordant pairs of binary outcomes, the
    distinct values of each side of a rank correlation), and `p_value` is a test of no effect
    where the method has one. `components` and `design` say how the interval arises from the
    sizes: its variance components, and how their sum becomes an interval (`normal`: a normal
    quantile; `welch`: independent groups, a t with Welch-Satterthwaite degrees of freedom;
    `crossed`: seeds and items crossed, a t with Satterthwaite's; `fisher z`: a correlation
    whose variance is on atanh's scale)."""

    value: float | None
    low: float | None = None
    high: float | None = None
    n: int
    confidence: float = CONFIDENCE
    method: str = ""
    parts: dict[str, int] = {}
    counts: dict[str, int] = {}
    p_value: float | None = None
    components: list[VarianceComponent] = []
    design: Design | None = None

    @property
    def known(self) -> bool:
        return self.value is not None and self.low is not None and self.high is not None

    def size(self) -> str:
        """`3 seeds x 24 items x 1 episode` where n has parts, else `40`."""
        if not self.parts:
            return str(self.n)
        return " x ".join(f"{count} {_singular(name, count)}" for name, count in self.parts.items())

    def text(self, digits: int = 3) -> str:
        """`0.125 [0.050, 0.200], n=1 seed x 40 items x 1 episode; 9 discordant; p=0.012` (or
        `n/a` parts where unknown)."""
        details = [f"{count} {name}" for name, count in self.counts.items()]
        if self.p_value is not None:
            details.append(f"p={self.p_value:.3g}")
        extra = "".join(f"; {detail}" for detail in details)
        if self.value is None:
            return f"n/a, n={self.size()}{extra}"
        interval = "" if self.low is None else f" [{self.low:.{digits}f}, {self.high:.{digits}f}]"
        return f"{self.value:.{digits}f}{interval}, n={self.size()}{extra}"


def _singular(name: str, count: int) -> str:
    """`seed` for one of `seeds`."""
    return name[:-1] if count == 1 and name.endswith("s") else name
