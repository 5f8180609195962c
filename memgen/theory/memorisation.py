"""Memorisation ``m = E_z max_mu |cos(x, x_mu)|`` of the linear generator, in theory.

Contract: pure ``jnp`` quadratures that broadcast over arrays of ``n`` and ``lam`` (equal
rank); the dtype follows the floating inputs (``n`` may be an integer array). Nothing is
jitted here; all of it is ``jax.jit``-able. ``memorisation_mc`` is the seeded Monte-Carlo
cross-check (explicit key).

**Fixed n, d -> infinity** (theory.md §4). The n training points become orthogonal with
norm ``sqrt(d)``, C has n eigenvalues ``d/n`` along them, and
``cos(x, x_mu) = g_mu / sqrt(|g|^2 + n lam)`` with ``g ~ N(0, I_n)``. The law of ``g`` is
invariant under scaling, so the maximum and the norm decouple exactly:
``E[max|g| e^{-t|g|^2}] = (1 + 2t)^{-(n+1)/2} mu_n``, and with
``1/sqrt(A) = pi^{-1/2} int_0^inf t^{-1/2} e^{-tA} dt``::

    m(n, lam) = mu_n K(n, lam),
    mu_n      = E max_{mu <= n} |g_mu| = int_0^inf [1 - erf(x/sqrt2)^n] dx,
    K(n, lam) = pi^{-1/2} int_0^inf t^{-1/2} e^{-t n lam} (1 + 2t)^{-(n+1)/2} dt,

with ``K(n, 0) = Gamma(n/2) / (sqrt2 Gamma((n+1)/2))`` (so ``m(1, 0) = 1``). Both integrals
are done by quadrature to ~1e-12; no sampling is involved.

**Proportional load** (extreme-value law). Over z, the n overlaps are jointly Gaussian,
nearly independent, each with variance
``s^2 = tau1/(n (tau1 + lam)) + (lam + (1 - 1/n) tau2/tau1) / (d (tau1 + lam))``
(``tau1 = tau(Sigma)``, ``tau2 = tau(Sigma^2)``; for Sigma = I this is theory.md's
``1/(n(1+lam)) + 1/d`` up to the ``1/n`` and ``lam/d`` terms). The expected maximum of n
independent ``|N(0, s^2)|`` is exactly ``s mu_n``. ``memorisation_proportional`` replaces the
first (fixed-n) term of ``s^2`` by the exact ``K(n, lam/tau1)^2`` so that it
reduces to ``m(n, lam)`` as d -> infinity. Its accuracy is reported in docs/theory.md.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erfc, gammaln

from .mp import float_dtype, as_float


# Python floats (weak types), so float32 inputs stay float32 under strict promotion
_INV_SQRT2 = float(1.0 / np.sqrt(2.0))
_TWO_OVER_SQRT_PI = float(2.0 / np.sqrt(np.pi))
_LOG_4PI = float(np.log(4.0 * np.pi))


def _pair(n, lam):
    dt = float_dtype(n, lam)
    return as_float(n, dt), as_float(lam, dt)


@functools.lru_cache(maxsize=8)
def _gl(k: int):
    return np.polynomial.legendre.leggauss(k)


def max_abs_gaussian(n, n_nodes: int = 200):
    """``mu_n = E max_{mu <= n} |g_mu|`` for n iid standard Gaussians (n may be real >= 1).

    Args:
        n: number of Gaussians, any shape (float or int array).
        n_nodes: Gauss–Legendre nodes on ``[0, sqrt(2 log(n+1)) + 9]`` (the tail beyond
            is below 1e-17).

    Returns:
        ``mu_n``, shape of ``n``; ``mu_1 = sqrt(2/pi)``, ``mu_n ~ sqrt(2 log n)``.
    """
    n = as_float(n)
    x_np, w_np = _gl(int(n_nodes))
    lead = (1,) * n.ndim
    x = jnp.asarray(x_np, n.dtype).reshape(lead + (-1,))
    w = jnp.asarray(w_np, n.dtype).reshape(lead + (-1,))
    length = jnp.sqrt(2.0 * jnp.log(n + 1.0))[..., None] + 9.0
    t = length * (x + 1.0) / 2.0
    tail = erfc(t * _INV_SQRT2)  # P(|g| > t)
    # 1 - (1 - tail)^n, accurate when tail is tiny
    integrand = -jnp.expm1(n[..., None] * jnp.log1p(-jnp.minimum(tail, 1.0)))
    integrand = jnp.where(tail >= 1.0, 1.0, integrand)
    return jnp.sum(w * integrand, axis=-1) * length[..., 0] / 2.0


def norm_factor(n, lam, h: float = 0.125, y_max: float = 32.0):
    """``K(n, lam) = E[max|g| / sqrt(|g|^2 + n lam)] / E[max|g|]`` (exact, by quadrature).

    Trapezoid rule in ``y`` with ``t = e^{2y} / (n + 1)``; the integrand is analytic in
    the strip ``|Im y| < pi/4`` (error ~ exp(-pi^2/(2h))), so ``h = 1/8`` gives ~1e-13.

    Args:
        n: training-set size >= 1 (same rank as ``lam``).
        lam: regularisation >= 0.
        h, y_max: step and half-width of the trapezoid grid.

    Returns:
        ``K``, broadcast shape of ``n`` and ``lam``.
    """
    n, lam = _pair(n, lam)
    shape = jnp.broadcast_shapes(n.shape, lam.shape)
    y = jnp.arange(-y_max, y_max + h / 2, h, dtype=n.dtype).reshape((1,) * len(shape) + (-1,))
    n_, lam_ = jnp.broadcast_to(n, shape)[..., None], jnp.broadcast_to(lam, shape)[..., None]
    w = jnp.exp(y) / jnp.sqrt(n_ + 1.0)  # t = w^2
    log_f = -(w**2) * n_ * lam_ - 0.5 * (n_ + 1.0) * jnp.log1p(2.0 * w**2)
    # K = (2/sqrt(pi)) int_0^inf f(w) dw, dw = w dy
    return _TWO_OVER_SQRT_PI * h * jnp.sum(jnp.exp(log_f) * w, axis=-1)


def norm_factor_lam0(n):
    """``K(n, 0) = Gamma(n/2) / (sqrt2 Gamma((n+1)/2))``, the closed form at lam = 0."""
    n = as_float(n)
    return jnp.exp(gammaln(n / 2.0) - gammaln((n + 1.0) / 2.0)) * _INV_SQRT2


def memorisation(n, lam):
    """``m(n, lam) = E max_mu |g_mu| / sqrt(|g|^2 + n lam)``: fixed n, d -> infinity, Sigma = I.

    Args:
        n: training-set size >= 1 (same rank as ``lam``).
        lam: regularisation >= 0.

    Returns:
        ``m`` in (0, 1], broadcast shape; ``m(1, 0) = 1``, ``m ~ sqrt(2 log n / n)``.
    """
    n, lam = _pair(n, lam)
    return max_abs_gaussian(n) * norm_factor(n, lam)


def memorisation_proportional(n, d, lam, tau1=1.0, tau2=1.0):
    """Extreme-value law for m at proportional load ``n = gamma d``.

    ``m ~= mu_n s`` with ``s^2 = K(n, lam/tau1)^2 + (lam + (1 - 1/n) tau2/tau1) /
    (d (tau1 + lam))`` (module docstring). For Sigma = I, large n:
    ``s^2 = 1/(n(1+lam)) + 1/d`` (theory.md).

    Args:
        n: training-set size >= 1 (same rank as ``lam``).
        d: dimension (scalar or array of the same rank).
        lam: regularisation >= 0.
        tau1: ``tau(Sigma)`` (1 for Sigma = I).
        tau2: ``tau(Sigma^2)`` (1 for Sigma = I).

    Returns:
        The approximate ``m``, broadcast shape.
    """
    n, lam = _pair(n, lam)
    d = as_float(d, lam.dtype)
    tau1 = as_float(tau1, lam.dtype)
    tau2 = as_float(tau2, lam.dtype)
    k = norm_factor(n, lam / tau1)
    s2 = k**2 + (lam + (1.0 - 1.0 / n) * tau2 / tau1) / (d * (tau1 + lam))
    return max_abs_gaussian(n) * jnp.sqrt(s2)


def gumbel_max_abs(n):
    """Gumbel (extreme-value) approximation of ``mu_n`` for large n.

    ``max |g|`` over n is the max of 2n half-Gaussian tails: with ``b_N`` solving
    ``N P(g > b) = 1`` (``N = 2n``) and ``a_N = 1/b_N``, ``E max ~= b_N + 0.5772 a_N``.
    Relative error ~ 1% at n = 100; use ``max_abs_gaussian`` for the exact value.
    """
    n = as_float(n)
    big = jnp.log(2.0 * n)
    b = jnp.sqrt(2.0 * big)
    b = b - (jnp.log(big) + _LOG_4PI) / (2.0 * b)
    return b + np.euler_gamma / b


def memorisation_mc(key, n: int, lam, n_samples: int = 100_000):
    """Seeded Monte-Carlo of ``m(n, lam)``: mean and standard error.

    Args:
        key: a ``jax.random`` key.
        n: training-set size (static int).
        lam: regularisations, any shape (float array).
        n_samples: Gaussian vectors ``g [n]`` drawn (shared by all ``lam``).

    Returns:
        ``(mean, stderr)``, each of the shape of ``lam``.
    """
    lam = as_float(lam)
    g = jax.random.normal(key, (n_samples, n), dtype=lam.dtype)
    mx = jnp.max(jnp.abs(g), axis=-1)
    sq = jnp.sum(g**2, axis=-1)
    lead = (1,) * lam.ndim
    vals = mx.reshape(lead + (-1,)) / jnp.sqrt(sq.reshape(lead + (-1,)) + n * lam[..., None])
    mean = jnp.mean(vals, axis=-1)
    se = jnp.std(vals, axis=-1) / float(np.sqrt(n_samples))
    return mean, se


__all__ = [
    "max_abs_gaussian",
    "norm_factor",
    "norm_factor_lam0",
    "memorisation",
    "memorisation_proportional",
    "gumbel_max_abs",
    "memorisation_mc",
]
