"""Order parameters and denoising references for ONE trained denoiser (theory.md §3, §5).

* :func:`memorisation` ``m = E_s max_{mu < n} |cos(x_s, x_mu)|`` over the model's training set.
* :func:`convergence` ``q = E_s cos(x_s^A, x_s^B)`` for a pair sampled from the same noise.
* :func:`latent_recovery` ``Q = ||Vhat_k^T V_k||_F^2 / k`` with ``Vhat_k`` the top-k
  eigenvectors of the generated samples' (uncentred) covariance.
* :func:`spectral_denoise` the linear denoiser ``U diag(s / (s + sigma^2)) U^T y``: the
  Wiener filter with the population eigenpairs, the memorising empirical-covariance
  denoiser ``C (C + sigma^2)^-1`` with those of the training set.

Pure functions of arrays for one model; matmuls at ``precision="highest"``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from memgen import linalg

_HI = "highest"


def cosines(x: jax.Array, y: jax.Array) -> jax.Array:
    """Cosine similarities [S, n] between rows of x [S, d] and y [n, d] (0 for zero rows)."""
    nx = jnp.linalg.norm(x, axis=-1, keepdims=True)
    ny = jnp.linalg.norm(y, axis=-1, keepdims=True)
    xs = x / jnp.where(nx > 0, nx, 1.0)
    ys = y / jnp.where(ny > 0, ny, 1.0)
    return jnp.matmul(xs, ys.T, precision=_HI)


def memorisation(samples: jax.Array, train: jax.Array, n: jax.Array) -> jax.Array:
    """m: mean over samples [S, d] of the largest |cos| with the first n rows of train [n_max, d]."""
    c = jnp.abs(cosines(samples, train))
    c = jnp.where(jnp.arange(train.shape[0])[None, :] < n, c, -1.0)
    return jnp.mean(jnp.max(c, axis=1))


def convergence(a: jax.Array, b: jax.Array) -> jax.Array:
    """q: mean cosine between paired rows of a [S, d] and b [S, d]."""
    return jnp.mean(jnp.sum(a * b, axis=-1) / (jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1)))


def top_eigvecs(x: jax.Array, k: int) -> jax.Array:
    """Top-k eigenvectors [d, k] of the uncentred second moment x^T x / S of x [S, d]."""
    c = jnp.matmul(x.T, x, precision=_HI) / x.shape[0]
    _, u = linalg.eigh(c)
    return u[:, ::-1][:, :k]


def latent_recovery(samples: jax.Array, v: jax.Array) -> jax.Array:
    """Q = ||Vhat_k^T V||_F^2 / k for samples [S, d] and true top-k eigenvectors v [d, k]."""
    k = v.shape[1]
    vh = top_eigvecs(samples, k)
    return jnp.sum(jnp.matmul(vh.T, v, precision=_HI) ** 2) / k


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
    "cosines",
    "memorisation",
    "convergence",
    "top_eigvecs",
    "latent_recovery",
    "empirical_eigen",
    "spectral_denoise",
    "mse",
]
