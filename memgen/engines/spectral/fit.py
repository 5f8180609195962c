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
dropped exactly. A centred fit (``C = (X - mu)^T (X - mu) / n``, mu = ``row_mean``) has rank
n - 1: its one extra null direction (the real rows' mean, in the Gram route) is dropped the
same way.

A stochastic sampler draws J noise vectors: ``sample`` sums ``G_j(C) z_j`` over them.
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


def row_mean(X: jax.Array, n) -> jax.Array:
    """Mean of the first ``n`` rows of X [n_pad, d] -> [d]: a centred fit's mu."""
    return jnp.sum(X * row_mask(X.shape[0], n, X.dtype)[:, None], axis=0) / jnp.asarray(n, X.dtype)


def fit(X: jax.Array, n, mean: jax.Array | None = None, cov: jax.Array | None = None,
        gram: jax.Array | None = None) -> LinearFit:
    """Fits the generator on the first ``n`` rows of X with one ``eigh``.

    Uses the d x d covariance when ``n_pad >= d`` and the n_pad x n_pad Gram matrix otherwise
    (a static choice, by shape).

    Args:
        X: training set padded to n_pad rows [n_pad, d]; rows >= n are ignored.
        n: number of real rows, 1 <= n <= n_pad (traced int).
        mean: ``None`` (C = X^T X / n) or the real rows' mean mu [d] (``row_mean``): then
            C = (X - mu)^T (X - mu) / n, the centred covariance (rank n - 1).
        cov: ``sum_{i < n} x_i x_i^T`` [d, d] when the caller keeps it (n_pad >= d, uncentred),
            else None: formed from X.
        gram: ``X X^T`` of all n_pad rows [n_pad, n_pad] when the caller keeps it (n_pad < d,
            uncentred; masked here to the first n), else None: formed from X.

    Returns:
        ``LinearFit`` with r = min(n_pad, d).
    """
    n_pad, d = X.shape
    mask = row_mask(n_pad, n, X.dtype)
    Xm = X * mask[:, None]
    nf = jnp.asarray(n, X.dtype)
    n = jnp.asarray(n)
    centre = mean is not None
    if centre:
        Xm = (X - mean[None, :]) * mask[:, None]
    rank = n - 1 if centre else n  # rank(C) <= n, n - 1 once centred
    if n_pad >= d:
        s, U = linalg.eigh((Xm.T @ Xm if cov is None else cov) / nf)
        # the d - rank smallest are exact zeros; rounding would make them ~eps, whose square
        # roots (~sqrt(eps)) would pollute the lam = 0 generator.
        return LinearFit(jnp.where(jnp.arange(d, dtype=n.dtype) >= d - rank, jnp.maximum(s, 0), 0), U)
    K = (Xm @ Xm.T if gram is None else gram * (mask[:, None] * mask[None, :])) / nf
    scale = jnp.trace(K) / nf  # mean real eigenvalue > 0
    shift = jnp.diag((1 - mask) * scale)
    if centre:  # the real rows' mean direction is null for centred rows: shifted off with the padding
        shift = shift + scale * jnp.outer(mask, mask) / nf
    s, V = linalg.eigh(K - shift)
    valid = s > -0.5 * scale
    W = Xm.T @ V  # [d, n_pad], column norms^2 = n s
    norm = jnp.linalg.norm(W, axis=0)
    keep = valid & (norm > 0)
    U = jnp.where(keep[None, :], W / jnp.where(keep, norm, 1)[None, :], 0)
    return LinearFit(jnp.where(keep, jnp.maximum(s, 0), 0), U)


def branched(X: jax.Array, n, mean: jax.Array | None, cov: jax.Array | None, gram: jax.Array | None,
             widths: tuple[int, ...], branch) -> LinearFit:
    """``fit`` of the first ``n`` rows of X [n_pad, d], r = min(n_pad, d) columns, or of a
    smaller Gram matrix.

    ``widths``: static Gram sizes m < r of a bucket's small loads (``sizes.fit_widths``);
    ``branch`` (traced int) picks one: 0 the bucket's own fit, j the Gram fit on the first
    ``widths[j - 1]`` rows (from ``gram``'s leading block when the caller keeps it), widened to
    r columns (``widened``). A load of 64 rows in a bucket of 1024 at d = 256 then decomposes
    64 x 64, not 256 x 256 (0.2 ms against 2.5). A ``lax.switch``, so only the fit compiles
    once per width: everything after it has the bucket's shapes.
    """
    def own():
        return fit(X, n, mean, cov=cov, gram=gram)

    if not widths:
        return own()
    r = min(X.shape)

    def small(m):
        return lambda: widened(fit(X[:m], n, mean, gram=None if gram is None else gram[:m, :m]), r)

    return jax.lax.switch(branch, [own] + [small(m) for m in widths])


def widened(f: LinearFit, r: int) -> LinearFit:
    """``f`` with zero columns in front up to r columns: the same C (the new columns' eigenvalue
    is 0, so the order stays ascending), in the shape of a wider fit. A small load's own Gram
    fit, inside a bucket whose fits have r columns (``branched``)."""
    pad = r - f.evals.shape[0]
    return LinearFit(jnp.pad(f.evals, (pad, 0)), jnp.pad(f.evecs, ((0, 0), (pad, 0))))


def sample(f: LinearFit, G: jax.Array, G0: jax.Array, z: jax.Array) -> jax.Array:
    """Samples ``x = sum_j G_j(C) z_j`` for every gain of a batch (e.g. every lam) from one fit.

    Args:
        f: the fit (r columns).
        G: gains on the fit's eigenvalues [J, L, r], one row per noise vector (``G(0)`` on
            padding columns); [L, r] is J = 1.
        G0: gains on the complement of span(U), ``G_j(0)`` [J, L] (or [L]).
        z: the noise vectors [J, S, d] (or [S, d]).

    Returns:
        Generated samples [L, S, d] (without a centred model's mean). Cost O(J S d r) once
        plus O(L J S (d + r)) and O(L S d r).
    """
    G, G0 = G.reshape((-1,) + G.shape[-2:]), G0.reshape((-1, G0.shape[-1]))
    z = z.reshape((-1,) + z.shape[-2:])
    p = jnp.einsum("jsd,dr->jsr", z, f.evecs)  # shared by every gain
    c = G - G0[..., None]  # [J, L, r]
    off = jnp.einsum("jl,jsd->lsd", G0, z)  # the complement of span(U): sum_j G0_j z_j
    return off + jnp.einsum("jlr,jsr->lsr", c, p) @ f.evecs.T


def top_evecs(f: LinearFit, k: int) -> jax.Array:
    """Top-k eigenvectors of C (the model's covariance C + lam I shares them) [d, k]."""
    return f.evecs[:, -k:]


def accumulate(S: jax.Array, X: jax.Array, lo, hi, block: int = 64) -> jax.Array:
    """``S + sum_{lo <= i < hi} x_i x_i^T`` over rows of X [n_pad, d] (``lo``, ``hi`` traced): [d, d].

    Walks the ``block``-row blocks that meet [lo, hi), masking the rows outside
    (``linalg.fold_row_blocks``). Cost ~ 2 (hi - lo + 2 block) d^2.
    """
    def add(S, Xb, keep):
        return S + (Xb * keep[:, None].astype(X.dtype)).T @ Xb

    return linalg.fold_row_blocks(add, S, X, lo, hi, block)
