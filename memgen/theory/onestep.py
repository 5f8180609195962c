"""Population limits of Halder's one-step model (lineardiff.md §3), in units of the data's std.

At n -> infinity the OLS slope is ``B = e^-T / (l (2 - l))`` times the identity (``l = e^-2T``)
and the generated law is ``N(mean, v I)`` with ``v = 1 / (2 - l)`` (0.504621 at T = 2), so
against the truth ``N(mean, I)``: ``KL(model || truth)/d = (v - 1 - ln v)/2``,
``KL(truth || model)/d = (1/v - 1 + ln v)/2`` and ``H^2 = 1 - (2 sqrt(v) / (1 + v))^(d/2)``.
For ``n - 1 < d`` the slope has rank <= n - 1 < d and the law is singular: KL = +inf and
H^2 = 1 exactly, at every finite d.
"""

from __future__ import annotations

import math

import numpy as np


def variance(horizon: float) -> float:
    """Generated variance per coordinate at n -> infinity: ``1 / (2 - e^-2T)``."""
    return 1 / (2 - math.exp(-2 * horizon))


def values(n, d: int, horizon: float) -> dict[str, np.ndarray]:
    """h2, kl, kl_rev [len(n)]: exact (singular) for n - 1 < d, the population limit otherwise."""
    n = np.asarray(n)
    v = variance(horizon)
    singular = n - 1 < d
    kl = np.where(singular, np.inf, 0.5 * (v - 1 - math.log(v)))
    kl_rev = np.where(singular, np.inf, 0.5 * (1 / v - 1 + math.log(v)))
    h2 = np.where(singular, 1.0, -math.expm1(0.5 * d * math.log(2 * math.sqrt(v) / (1 + v))))
    return {"h2": h2.astype(float), "kl": kl.astype(float), "kl_rev": kl_rev.astype(float)}


__all__ = ["variance", "values"]
