"""One eigendecomposition per training set, and the sample x = G(C) z of any spectral gain G.

Contract: pure functions for ONE dataset; no jit, no vmap (``memgen.run`` batches).

A fit is a (possibly thin) eigendecomposition ``C = U diag(s) U^T`` with U [d, r]. Then for
any spectral gain G (``gains``; e.g. ``G(s) = sqrt(s + lam)``, theory.md §2)

    G(C) z = G(0) z + U diag(G(s) - G(0)) U^T z,

which is exact both for the full route (r = d, ``eigh`` of the d x d covariance) and for the
thin Gram route (r = n < d, ``eigh`` of the n x n Gram matrix, U = X^T V normalised): on the
complement of span(U), C vanishes and the operator is G(0) I.

Training sets arrive padded to a static number of rows ``n_pad`` with only the first ``n``
real (``n`` is traced, so every load of one padding bucket shares a compilation). Padding
rows are masked out; in the Gram route their block is shifted to a negative eigenvalue, far
from the real spectrum (>= 0), so that its eigenvectors cannot mix with real ones and are
dropped exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ... import linalg


class LinearFit(NamedTuple):
    """Eigendecomposition of one sample covariance C = X^T X / n.

    Attributes:
        evals: eigenvalues s [r], ascending, >= 0; 0 on padding columns.
        evecs: eigenvectors U [d, r], orthonormal columns; zero columns on padding.
    """

    evals: jax.Array
    evecs: jax.Array


def row_mask(n_pad: int, n, dtype) -> jax.Array:
    """1 for the first ``n`` of ``n_pad`` rows, else 0 [n_pad]."""
    n = jnp.asarray(n)
    return (jnp.arange(n_pad, dtype=n.dtype) < n).astype(dtype)


def fit(X: jax.Array, n) -> LinearFit:
    """Fits the generator on the first ``n`` rows of X with one ``eigh``.

    Uses the d x d covariance when ``n_pad >= d`` and the n_pad x n_pad Gram matrix otherwise
    (a static choice, by shape).

    Args:
        X: training set padded to n_pad rows [n_pad, d]; rows >= n are ignored.
        n: number of real rows, 1 <= n <= n_pad (traced int).

    Returns:
        ``LinearFit`` with r = min(n_pad, d).
    """
    n_pad, d = X.shape
    mask = row_mask(n_pad, n, X.dtype)
    Xm = X * mask[:, None]
    nf = jnp.asarray(n, X.dtype)
    if n_pad >= d:
        s, U = linalg.eigh(Xm.T @ Xm / nf)
        # rank(C) <= n: the d - n smallest are exact zeros; rounding would make them ~eps,
        # whose square roots (~sqrt(eps)) would pollute the lam = 0 generator.
        n = jnp.asarray(n)
        return LinearFit(jnp.where(jnp.arange(d, dtype=n.dtype) >= d - n, jnp.maximum(s, 0), 0), U)
    K = Xm @ Xm.T / nf
    scale = jnp.trace(K) / nf  # mean real eigenvalue > 0
    s, V = linalg.eigh(K - jnp.diag((1 - mask) * scale))
    valid = s > -0.5 * scale
    W = Xm.T @ V  # [d, n_pad], column norms^2 = n s
    norm = jnp.linalg.norm(W, axis=0)
    keep = valid & (norm > 0)
    U = jnp.where(keep[None, :], W / jnp.where(keep, norm, 1)[None, :], 0)
    return LinearFit(jnp.where(keep, jnp.maximum(s, 0), 0), U)


def sample(f: LinearFit, G: jax.Array, G0: jax.Array, z: jax.Array) -> jax.Array:
    """Samples x = G(C) z for every gain of a batch (e.g. every lam) from one fit.

    Args:
        f: the fit (r columns).
        G: gains on the fit's eigenvalues [L, r] (``G(0)`` on padding columns).
        G0: gains on the complement of span(U), ``G(0)`` [L].
        z: latent noise [S, d].

    Returns:
        Generated samples [L, S, d]. Cost O(S d r) once plus O(L S d r).
    """
    p = z @ f.evecs  # [S, r], shared by every gain
    c = G - G0[:, None]  # [L, r]
    return G0[:, None, None] * z[None] + (c[:, None, :] * p[None]) @ f.evecs.T


def top_evecs(f: LinearFit, k: int) -> jax.Array:
    """Top-k eigenvectors of C (the model's covariance C + lam I shares them) [d, k]."""
    return f.evecs[:, -k:]
