"""The order parameters (theory.md §3), defined once for every engine.

Contract: pure functions of ONE point's arrays, no jit/vmap (``memgen.run`` batches). One
mask convention: a training set arrives padded to ``n_pad`` rows of which the first ``n``
are real. One zero-norm guard: a zero vector has cosine 0 with everything.

- memorisation ``m = E_z max_{mu < n} |cos(x, x_mu)|`` over the model's own training set;
- ``m_kad``: Kadkhodaie et al.'s convention, max over mu of the mean-removed correlation
  (no absolute value);
- ``mem_frac``: fraction of samples with nearest / second-nearest training distance < 1/3
  (the "memorised" criterion of the diffusion literature);
- convergence ``q = E_z cos(x^(1), x^(2))`` for two models driven by the same z;
- latent recovery ``Q = (1/k) ||Uhat_k^T V_k||_F^2`` (``subspace_overlap``), with Uhat from
  a fit's eigenvectors (linear) or from the samples' second moment (``top_eigvecs``);
- bulk ``w2 = W2^2(N(0, Sigma_bulk), N(0, C + lam I)) / d`` from a fit's spectrum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import linalg

_TINY = 1e-30


def _unit(x: jax.Array) -> jax.Array:
    """Rows scaled to unit norm (zero rows stay zero) [..., d]."""
    norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return x / jnp.maximum(norm, _TINY)


def cosine(a: jax.Array, b: jax.Array) -> jax.Array:
    """cos(a, b) along the last axis [...]."""
    return jnp.sum(_unit(a) * _unit(b), axis=-1)


def convergence(xa: jax.Array, xb: jax.Array) -> jax.Array:
    """q: mean over samples of cos(x^(1), x^(2)); xa, xb [..., S, d] -> [...]."""
    return jnp.mean(cosine(xa, xb), axis=-1)


def memorisation(x: jax.Array, X: jax.Array, n) -> dict[str, jax.Array]:
    """Nearest-training-sample statistics of samples.

    Args:
        x: samples [..., S, d].
        X: training set [n_pad, d]; only the first ``n`` rows are real.
        n: number of real rows (traced int, 1 <= n <= n_pad).

    Returns:
        ``{"m": [...], "m_kad": [...], "mem_frac": [...]}``.
    """
    def row(v):  # a vector over training rows [n_pad], shaped to broadcast against [..., S, n_pad]
        return v.reshape((1,) * (x.ndim - 1) + v.shape)

    n = jnp.asarray(n)
    real = row(jnp.arange(X.shape[0], dtype=n.dtype) < n)
    d = x.shape[-1]
    dot = (x.reshape(-1, d) @ X.T).reshape(x.shape[:-1] + X.shape[:1])  # [..., S, n_pad]: the one
    # O(S n d) product (as one 2-D matmul); everything below is O(S n)
    sq_x, sq_X = jnp.sum(x * x, axis=-1), jnp.sum(X * X, axis=-1)
    norm_x, norm_X = jnp.sqrt(sq_x), jnp.sqrt(sq_X)

    cos = jnp.abs(dot) / jnp.maximum(norm_x[..., None] * row(norm_X), _TINY)
    m = jnp.mean(jnp.max(jnp.where(real, cos, 0), axis=-1), axis=-1)

    # mean-removed: (x - xbar)(X - Xbar) = x.X - d xbar Xbar, |x - xbar|^2 = |x|^2 - d xbar^2
    mx, mX = jnp.mean(x, axis=-1), jnp.mean(X, axis=-1)
    cdot = dot - d * mx[..., None] * row(mX)
    cnx = jnp.sqrt(jnp.maximum(sq_x - d * mx**2, 0))
    cnX = jnp.sqrt(jnp.maximum(sq_X - d * mX**2, 0))
    corr = cdot / jnp.maximum(cnx[..., None] * row(cnX), _TINY)
    m_kad = jnp.mean(jnp.max(jnp.where(real, corr, -jnp.inf), axis=-1), axis=-1)

    d2 = jnp.maximum(sq_x[..., None] + row(sq_X) - 2 * dot, 0)
    d2 = jnp.where(real, d2, jnp.inf)
    first = jnp.min(d2, axis=-1)  # the two smallest squared distances, without a sort
    at_first = row(jnp.arange(d2.shape[-1])) == jnp.argmin(d2, axis=-1)[..., None]
    second = jnp.min(jnp.where(at_first, jnp.inf, d2), axis=-1)
    ratio_sq = first / jnp.maximum(second, _TINY)
    # With one training sample there is no second neighbour: ratio 0 -> memorised.
    mem_frac = jnp.mean((ratio_sq < 1.0 / 9.0).astype(x.dtype), axis=-1)
    return {"m": m, "m_kad": m_kad, "mem_frac": mem_frac}


def subspace_overlap(u_hat: jax.Array, v: jax.Array) -> jax.Array:
    """Q = (1/k) ||Uhat^T V||_F^2 for orthonormal columns Uhat [d, k] and V [d, k] -> []."""
    return jnp.sum((u_hat.T @ v) ** 2) / v.shape[1]


def top_eigvecs(x: jax.Array, k: int) -> jax.Array:
    """Top-k eigenvectors [d, k] of the uncentred second moment x^T x / S of samples x [S, d]."""
    _, u = linalg.eigh(x.T @ x / x.shape[0])
    return u[:, ::-1][:, :k]


def bulk_w2(evals: jax.Array, evecs: jax.Array, lam: jax.Array, sigma: jax.Array, isotropic: bool) -> jax.Array:
    """W2^2(N(0, diag(sigma)), N(0, C + lam I)) / d for every lam [L], C = U diag(s) U^T.

    Args:
        evals: eigenvalues s [r] of C (>= 0; 0 on padding); evecs: U [d, r].
        lam: regularisations [L]; sigma: population variances [d].
        isotropic: (static) sigma == 1, where the answer is a spectral sum,
            ``(1/d) sum_i (sqrt(s_i + lam) - 1)^2`` over all d eigenvalues of C (the d - r
            absent from a thin fit are 0), free for every lam. Otherwise
            ``tr Sigma + tr(C + lam) - 2 tr (Sigma^(1/2) (C + lam) Sigma^(1/2))^(1/2)``, one
            ``eigvalsh`` per lam.
    """
    d, r = evecs.shape
    if isotropic:
        inner = jnp.sum((jnp.sqrt(evals[None, :] + lam[:, None]) - 1) ** 2, axis=-1)
        return (inner + (d - r) * (jnp.sqrt(lam) - 1) ** 2) / d
    root = jnp.sqrt(sigma)
    B = root[:, None] * evecs  # Sigma^(1/2) U
    core = (B * evals[None, :]) @ B.T  # Sigma^(1/2) C Sigma^(1/2)
    M = core[None] + lam[:, None, None] * jnp.diag(sigma)[None]  # [L, d, d]
    ev = jnp.maximum(linalg.eigvalsh(M), 0)  # ascending [L, d]
    # At lam = 0, rank(M) = rank(C): its d - rank smallest are exact zeros, whose rounding
    # would otherwise add ~sqrt(eps) each under the square root.
    rank = jnp.sum(evals > 0)
    ev = jnp.where((lam[:, None] == 0) & (jnp.arange(d)[None, :] < d - rank), 0, ev)
    tr_model = jnp.sum(evals) + d * lam
    return (jnp.sum(sigma) + tr_model - 2 * jnp.sum(jnp.sqrt(ev), axis=-1)) / d
