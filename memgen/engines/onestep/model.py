"""Halder's one-step linear denoiser: the fit and the Gaussian law it generates, for ONE training set.

Contract: pure functions, no jit/vmap (``memgen.run`` batches). Training sets arrive padded to
``n_pad`` rows of which the first ``n`` are real (``n`` traced).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ... import linalg


class Law(NamedTuple):
    """The generated law N(mu, U diag(var) U^T) and the map that samples it.

    Attributes:
        mu: mean [d].
        evecs: U [d, d], orthonormal (a full basis).
        var: variances [d] >= 0, ascending; exactly 0 on the d - rank null directions.
        B: the fitted slope [d, d]; a sample is ``mu + sqrt(c) B z``.
        c: the variance of the sampled x_T [].
        rank: rank of B (traced int).
    """

    mu: jax.Array
    evecs: jax.Array
    var: jax.Array
    B: jax.Array
    c: jax.Array
    rank: jax.Array


def forward(x0: jax.Array, xi: jax.Array, horizon: float) -> jax.Array:
    """Halder's forward noising ``x_T = e^-T x0 - sqrt(l (1 - e^-2T)) xi``, ``l = e^-2T`` [..., d]."""
    l = math.exp(-2 * horizon)
    return math.exp(-horizon) * x0 - math.sqrt(l * (1 - l)) * xi


def fit(X0: jax.Array, XT: jax.Array, n, horizon: float) -> Law:
    """OLS with intercept from x_T to x0 on the first ``n`` rows (minimum norm when n - 1 < d).

    The slope is ``B = C0^T CT (CT^T CT)^+`` on centred rows (``CT^T`` through the n_pad x
    n_pad Gram matrix when ``n_pad <= d``, a static choice by shape); eigenvalues below
    ``lam_max eps max(n_pad, d)`` count as zero (singular values below ``sqrt(that)``: the
    centring's exact null direction rounds to ~``eps lam_max``). The law is
    ``N(b0 + B e^-T xbar, c B B^T)``, ``b0 = xbar - B xTbar``,
    ``c = e^-2T sbar^2 + l (1 - e^-2T)`` with ``sbar^2`` the mean unbiased per-coordinate
    variance of the training set.

    Args:
        X0: training set [n_pad, d]; XT: its forward-noised copy [n_pad, d].
        n: real rows, 2 <= n <= n_pad (traced int).
        horizon: T (static).
    """
    n_pad, d = X0.shape
    dt = X0.dtype
    n = jnp.asarray(n)
    mask = (jnp.arange(n_pad, dtype=n.dtype) < n).astype(dt)[:, None]
    nf = jnp.asarray(n, dt)
    m0 = jnp.sum(X0 * mask, axis=0) / nf
    mT = jnp.sum(XT * mask, axis=0) / nf
    C0, CT = (X0 - m0[None, :]) * mask, (XT - mT[None, :]) * mask
    eps = jnp.finfo(dt).eps
    if n_pad > d:
        lam, V = linalg.eigh(CT.T @ CT)
        inv = jnp.where(lam > lam[-1] * eps * max(n_pad, d), 1 / jnp.where(lam > 0, lam, 1), 0)
        B = (C0.T @ CT) @ (V * inv[None, :]) @ V.T
    else:
        lam, V = linalg.eigh(CT @ CT.T)
        inv = jnp.where(lam > lam[-1] * eps * max(n_pad, d), 1 / jnp.where(lam > 0, lam, 1), 0)
        B = C0.T @ (V * inv[None, :]) @ (V.T @ CT)
    rank = jnp.sum(inv > 0)
    l = math.exp(-2 * horizon)
    sbar2 = jnp.sum(C0**2) / (d * (nf - 1))
    c = l * sbar2 + l * (1 - l)
    mu = m0 - B @ mT + math.exp(-horizon) * (B @ m0)
    ev, U = linalg.eigh(B @ B.T)
    # rank(B B^T) = rank: the d - rank smallest are exact zeros (rounding would make them ~eps,
    # and a "finite" KL of a singular law)
    ev = jnp.where(jnp.arange(d, dtype=rank.dtype) >= d - rank, jnp.maximum(ev, 0), 0)
    return Law(mu=mu, evecs=U, var=c * ev, B=B, c=c, rank=rank)


def sample(law: Law, z: jax.Array) -> jax.Array:
    """Samples ``mu + sqrt(c) B z`` [S, d] from noise z [S, d]."""
    return law.mu[None, :] + jnp.sqrt(law.c) * (z @ law.B.T)


def population_variance(horizon: float) -> float:
    """Per-coordinate generated variance at n -> infinity (std = 1): ``1 / (2 - e^-2T)`` (0.504621 at T = 2)."""
    return 1 / (2 - math.exp(-2 * horizon))


__all__ = ["Law", "forward", "fit", "sample", "population_variance"]
