"""An estimate: a figure with its interval and the number of units it rests on, the one schema
every reported figure and verdict carries. The estimators that fill it live in `measure`."""

from __future__ import annotations

from pydantic import BaseModel

CONFIDENCE = 0.95


class Estimate(BaseModel):
    """A figure with its interval and the number of units it rests on; `low`/`high` are None
    where no interval exists (no data, or an undefined statistic).

    `n` counts the units; where they are laid out in levels, `parts` gives the size of each
    (seeds, items, episodes), and the figure is reported by its parts, never their product.
    `counts` names what else the interval rests on (discordant pairs of binary outcomes, the
    distinct values of each side of a rank correlation), and `p_value` is a test of no effect
    where the method has one."""

    value: float | None
    low: float | None = None
    high: float | None = None
    n: int
    confidence: float = CONFIDENCE
    method: str = ""
    parts: dict[str, int] = {}
    counts: dict[str, int] = {}
    p_value: float | None = None

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
