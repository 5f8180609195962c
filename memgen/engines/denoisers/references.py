"""Denoising references for ONE trained denoiser (theory.md §5); the order parameters are
``memgen.observables``'.

* :func:`spectral_denoise` the linear denoiser ``U diag(s / (s + sigma^2)) U^T y``: the
  Wiener filter with the population eigenpairs, the memorising empirical-covariance
  denoiser ``C (C + sigma^2)^-1`` with those of the training set.

Pure functions of arrays for one model; matmuls at ``precision="highest"``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ... import linalg

_HI = "highest"


def empirical_eigen(train: jax.Array, n: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eigenpairs (s [d], U [d, d]) of C = X_n^T X_n / n, X_n the first n rows of train [n_max, d]."""
    mask = (jnp.arange(train.shape[0]) < n).astype(train.dtype)
    xm = train * mask[:, None]
    c = jnp.matmul(xm.T, xm, precision=_HI) / n.astype(train.dtype)
    s, u = linalg.eigh(c)
    return jnp.maximum(s, 0.0), u


def spectral_denoise(y: jax.Array, u: jax.Array, s: jax.Array, sigma: jax.Array) -> jax.Array:
    """Linear denoiser U diag(s / (s + sigma^2)) U^T applied to rows of y [T, d]."""
    coef = jnp.matmul(y, u, precision=_HI) * (s / (s + sigma**2))[None, :]
    return jnp.matmul(coef, u.T, precision=_HI)


def mse(den: jax.Array, x: jax.Array) -> jax.Array:
    """Mean squared error per pixel."""
    return jnp.mean((den - x) ** 2)


__all__ = [
    "empirical_eigen",
    "spectral_denoise",
    "mse",
]
