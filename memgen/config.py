"""Frozen, validated specifications: what data, which model, which grid.

Every spec validates itself at construction and raises ``ValueError`` naming the
parameter and its allowed range, so bad input fails before any compute starts.
The CLI builds the very same objects, so its validation is the library's.

Specs round-trip through plain dicts (``to_dict`` / ``from_dict``), which is how a
results store remembers what produced it (``store.spec_from_attrs``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Union


def fail(name: str, rule: str, value: Any) -> None:
    raise ValueError(f"{name} must be {rule}, got {value!r}")


def _as_tuple(name: str, value: Any) -> tuple[float, ...]:
    """Scalars and sequences of numbers -> tuple of floats (hashable, comparable)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),)
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        fail(name, "a number or a list of numbers", value)
    return out


def _check_all(name: str, values: tuple[float, ...], rule: str, ok) -> None:
    if len(values) == 0:
        fail(name, "a non-empty list", list(values))
    for v in values:
        if not math.isfinite(v):
            fail(name, f"finite and {rule}", v)
        if not ok(v):
            fail(name, rule, v)


def check_int(name: str, value: Any, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        fail(name, f"an integer >= {lo}", value)


def _check_directions(name: str, value: str) -> None:
    if value not in ("random", "axis"):
        fail(name, "'random' or 'axis'", value)


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Spiked:
    """Sigma = I_d + sum_k beta_k v_k v_k^T with orthonormal v_k (theory.md §1).

    Attributes:
        d: dimension, >= 2.
        beta: spike strengths beta_k > 0, one per latent direction (rank = len(beta)).
        directions: ``"random"`` (Haar-random orthonormal, one draw per seed) or
            ``"axis"`` (the first coordinate axes; handy for tests).
    """

    d: int = 400
    beta: tuple[float, ...] = (2.0,)
    directions: str = "random"

    def __post_init__(self):
        check_int("Spiked.d", self.d, 2)
        object.__setattr__(self, "beta", _as_tuple("Spiked.beta", self.beta))
        _check_all("Spiked.beta", self.beta, "> 0", lambda b: b > 0)
        if len(self.beta) >= self.d:
            fail("Spiked.beta", f"fewer than d={self.d} spikes", len(self.beta))
        _check_directions("Spiked.directions", self.directions)

    @property
    def rank(self) -> int:
        return len(self.beta)


@dataclass(frozen=True)
class PowerLaw:
    """Sigma = diag(sigma_i) + optional spikes, sigma_i ∝ i^(-alpha), tau(diag) = 1.

    The latent directions scored by Q are the spike directions when there are spikes,
    else the top-``k`` population eigenvectors (the first ``k`` coordinate axes).

    Attributes:
        d: dimension, >= 2.
        alpha: spectral exponent, >= 0 (0 is the identity).
        k: number of top population directions scored by Q when there are no spikes.
        beta: optional spike strengths added on top (empty: none).
        directions: spike directions, ``"random"`` or ``"axis"``.
    """

    d: int = 400
    alpha: float = 1.0
    k: int = 1
    beta: tuple[float, ...] = ()
    directions: str = "random"

    def __post_init__(self):
        check_int("PowerLaw.d", self.d, 2)
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)):
            fail("PowerLaw.alpha", "a number >= 0", self.alpha)
        _check_all("PowerLaw.alpha", (float(self.alpha),), ">= 0", lambda a: a >= 0)
        object.__setattr__(self, "alpha", float(self.alpha))
        check_int("PowerLaw.k", self.k, 1)
        if self.k >= self.d:
            fail("PowerLaw.k", f"< d={self.d}", self.k)
        beta = () if self.beta in ((), None) else _as_tuple("PowerLaw.beta", self.beta)
        if beta:
            _check_all("PowerLaw.beta", beta, "> 0", lambda b: b > 0)
        object.__setattr__(self, "beta", beta)
        _check_directions("PowerLaw.directions", self.directions)

    @property
    def rank(self) -> int:
        """Number of latent directions scored by Q."""
        return len(self.beta) if self.beta else self.k


DataSpec = Union[Spiked, PowerLaw]


# ---------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Linear:
    """The regularised covariance-square-root generator x = (C + lam I)^(1/2) z.

    Attributes:
        samples: generated samples z per model and grid point (the E_z average).
    """

    samples: int = 32

    def __post_init__(self):
        check_int("Linear.samples", self.samples, 1)


ModelSpec = Linear


# ----------------------------------------------------------------------------- grid

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
        object.__setattr__(self, "gamma", _as_tuple("Grid.gamma", self.gamma))
        _check_all("Grid.gamma", self.gamma, "> 0", lambda g: g > 0)
        object.__setattr__(self, "lam", _as_tuple("Grid.lam", self.lam))
        _check_all("Grid.lam", self.lam, ">= 0", lambda l: l >= 0)
        _check_all("Grid.lam", self.lam, "<= 1e6 (float32 keeps about 7 digits: beyond that, lam + eig(C) "
                   "rounds the data's spectrum away)", lambda l: l <= LAM_MAX)
        check_int("Grid.seeds", self.seeds, 1)
        check_int("Grid.seed", self.seed, 0)
        for name in ("beta", "alpha"):
            v = getattr(self, name)
            if v is not None:
                v = _as_tuple(f"Grid.{name}", v)
                if name == "beta":
                    _check_all("Grid.beta", v, "> 0", lambda b: b > 0)
                else:
                    _check_all("Grid.alpha", v, ">= 0", lambda a: a >= 0)
                object.__setattr__(self, name, v)
        for name in ("gamma", "lam", "beta", "alpha"):
            v = getattr(self, name)
            if v is not None and len(set(v)) != len(v):
                fail(f"Grid.{name}", "a list without repeated values", list(v))

    def check(self, data: DataSpec) -> None:
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


# ------------------------------------------------------------------- serialisation

SPECS = {cls.__name__: cls for cls in (Spiked, PowerLaw, Linear, Grid)}


def to_dict(spec) -> dict:
    """Spec -> JSON-able dict with a ``kind`` tag."""
    out = {"kind": type(spec).__name__}
    for f in dataclasses.fields(spec):
        v = getattr(spec, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def from_dict(d: dict):
    """Inverse of ``to_dict`` (ValueError on a missing kind, an unknown kind or unknown fields)."""
    if not isinstance(d, dict) or "kind" not in d:
        raise ValueError(f"a spec must be a dict with a 'kind' key, got {d!r}")
    d = dict(d)
    kind = d.pop("kind")
    if kind not in SPECS:
        raise ValueError(f"unknown spec kind {kind!r}; known: {sorted(SPECS)}")
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(SPECS[kind])})
    if unknown:
        raise ValueError(f"{kind}: unknown fields {unknown}")
    return SPECS[kind](**d)


def replace(spec, **changes):
    """``dataclasses.replace`` that re-runs validation."""
    return dataclasses.replace(spec, **changes)


__all__ = ["Spiked", "PowerLaw", "Linear", "Grid", "n_samples", "to_dict", "from_dict", "DataSpec", "ModelSpec"]
