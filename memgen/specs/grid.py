"""The grid spec: the scanned axes."""

from __future__ import annotations

from dataclasses import dataclass

from .checks import as_tuple, check_all, check_int, fail
from .data import PowerLaw

LAM_MAX = 1e6  # float32 resolves lam + O(1) eigenvalues to ~0.1 here; 1/eps32 ~ 8e6 loses them

@dataclass(frozen=True)
class Grid:
    """The scanned axes. Every combination is one grid point.

    Attributes:
        gamma: loads n/d > 0; each model of a pair is fitted on n = round(gamma d).
        lam: regularisations in [0, LAM_MAX] (served from one eigendecomposition per dataset).
        seeds: independent repetitions, >= 1.
        beta: optional sweep of the spike strength (every spike of the data set to
            each value in turn); ``None`` keeps the data's own.
        alpha: optional sweep of the power-law exponent (PowerLaw data only).
        seed: root seed; every draw is ``fold_in`` of it and the point's coordinates.
    """

    gamma: tuple[float, ...] = (0.5, 1.0, 2.0)
    lam: tuple[float, ...] = (0.0,)
    seeds: int = 4
    beta: tuple[float, ...] | None = None
    alpha: tuple[float, ...] | None = None
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "gamma", as_tuple("Grid.gamma", self.gamma))
        check_all("Grid.gamma", self.gamma, "> 0", lambda g: g > 0)
        object.__setattr__(self, "lam", as_tuple("Grid.lam", self.lam))
        check_all("Grid.lam", self.lam, ">= 0", lambda l: l >= 0)
        check_all("Grid.lam", self.lam, "<= 1e6 (float32 keeps about 7 digits: beyond that, lam + eig(C) "
                   "rounds the data's spectrum away)", lambda l: l <= LAM_MAX)
        check_int("Grid.seeds", self.seeds, 1)
        check_int("Grid.seed", self.seed, 0)
        for name in ("beta", "alpha"):
            v = getattr(self, name)
            if v is not None:
                v = as_tuple(f"Grid.{name}", v)
                if name == "beta":
                    check_all("Grid.beta", v, "> 0", lambda b: b > 0)
                else:
                    check_all("Grid.alpha", v, ">= 0", lambda a: a >= 0)
                object.__setattr__(self, name, v)
        for name in ("gamma", "lam", "beta", "alpha"):
            v = getattr(self, name)
            if v is not None and len(set(v)) != len(v):
                fail(f"Grid.{name}", "a list without repeated values", list(v))

    def check(self, data: "DataSpec") -> None:
        """Cross-checks against the data spec (raises ``ValueError``)."""
        for g in self.gamma:
            if n_samples(g, data.d) < 1:
                fail("Grid.gamma", f">= {0.5 / data.d:.3g} so that n = round(gamma*d) >= 1 at d={data.d}", g)
        if self.alpha is not None and self.beta is not None:
            fail("Grid.beta", "unset when Grid.alpha is swept (one swept axis at a time)", list(self.beta))
        if self.alpha is not None and not isinstance(data, PowerLaw):
            fail("Grid.alpha", "unset unless the data is PowerLaw", list(self.alpha))
        if self.beta is not None and isinstance(data, PowerLaw) and not data.beta:
            fail("Grid.beta", "unset for PowerLaw data without spikes", list(self.beta))


def n_samples(gamma: float, d: int) -> int:
    """Training-set size of one model at load gamma: n = round(gamma d)."""
    return int(round(gamma * d))
