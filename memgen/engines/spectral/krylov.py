"""The matrix-free route for large d: ``G(C) z``, top eigenpairs and traces from Krylov spaces.

Contract: pure functions for ONE dataset; no jit, no vmap (``memgen.run`` batches).

``C = X^T X / n`` is only ever applied, as ``X^T (X V) / n`` on the real rows (``operator``):
O(n d) per vector, never the O(n d^2) covariance or its O(d^3) decomposition. Three things
are read from Krylov spaces of C (Saad, *Numerical Methods for Large Eigenvalue Problems*,
ch. 6; Golub & Meurant, *Matrices, Moments and Quadrature*):

* the samples: for each noise vector z, the Lanczos space ``K_m(C, z)`` with orthonormal basis
  ``V`` [m, d] and ``T = V C V^T`` gives ``G(C) z ~ V^T G(T) V z``; the space does not depend on
  lam, so every lam (any spectral gain) comes from one space;
* quadratic forms ``z^T G(C) z = (V z)^T G(T) (V z)``, whose mean over Gaussian z estimates
  ``tr G(C)`` (stochastic Lanczos quadrature, Ubaru, Chen & Saad 2017): ``trace``;
* the top-k eigenpairs (latent recovery Q, top_eig): block Lanczos from a random block
  (``linalg.top_eigh_matfree``).

Every basis is kept and re-orthogonalised in full (twice, Gram-Schmidt), and the Ritz pairs
come from the full projection of C on the basis' span (``linalg.ritz``, not the three-term
recurrence's coefficients), so they stay exact when rounding would break plain Lanczos; a
space stops growing where it would be exhausted (C of rank n: its starts' span plus C's range
is full), since past that point its "directions" are rounding noise. The error of ``G(C) z`` falls geometrically with m at a rate set by how well a
polynomial of degree m approximates G on C's spectrum: fast where G is smooth on it, slow
where the spectrum reaches a singularity of G (``sqrt(l + lam)`` at ``lam = 0`` with C's
spectrum reaching 0, i.e. n = d): ``depth`` picks m from the Marchenko-Pastur edges and
refuses what cannot converge.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ... import data as data_mod
from ... import linalg, observables
from .fit import row_mask

# Relative accuracy the route is built for (the samples' G(C) z; a cosine moves by at most about
# twice it, and m, q and Q are promised to 1e-4; checked against eigh by the tests).
TOL = 3e-5
MAX_DEPTH = 160  # the deepest Lanczos space a scan compiles (samples x depth x d floats per model)


class KrylovFit(NamedTuple):
    """Per-noise Lanczos spaces of one training set's C.

    Attributes:
        basis: Lanczos bases V [S, m, d], one space per noise vector (rows orthonormal, then
            zero past the space's exact size, rows the Ritz coordinates drop: ``linalg.ritz``).
        ritz: Ritz values theta of C on each space [S, m] (ascending).
        coef: the noise vector in Ritz coordinates, ``Y^T V z`` [S, m].
        vecs: the Ritz vectors in basis coordinates Y [S, m, m].
    """

    basis: jax.Array
    ritz: jax.Array
    coef: jax.Array
    vecs: jax.Array


def operator(X: jax.Array, n):
    """``V [b, d] -> V C`` for ``C = X_r^T X_r / n`` on the first ``n`` rows of X [n_pad, d]."""
    mask = row_mask(X.shape[0], n, X.dtype)[:, None] / jnp.asarray(n, X.dtype)
    # As columns, X (X^T V^T): XLA's CPU dot runs the same flops 1.4-1.6x faster this way than as
    # (V X^T) X (p = 37 vectors, n = 2048-8192, d = 4096; benchmarks/README). The mask is on
    # [n_pad, p]: no masked copy of X.
    return lambda V: (X.T @ ((X @ V.T) * mask)).T


def lanczos(matvec, z: jax.Array, m: int, start: jax.Array | None = None, rank=None):
    """The Lanczos spaces ``K_m(C, z_s)`` of every noise vector, and optionally a top-k block space.

    One ``matvec`` per step serves all S spaces and the block (one pass over X); each space is
    orthogonalised on its own, in full (``linalg.krylov_spaces``).

    Args:
        matvec: ``[p, d] -> [p, d]``, C applied to each row.
        z: noise vectors [S, d] (nonzero).
        m: Krylov depth (static): the dimension of each noise vector's space, and the number
            of blocks of the top-k space.
        start: ``None`` or a random start block [b, d] for the top eigenpairs.
        rank: C's rank (traced int; ``min(n, d)``): each space stops growing where its
            starts' span plus C's range is full (``linalg.krylov_spaces``); None: no cap.

    Returns:
        ``KrylovFit`` of the noise vectors, and (``start`` given) the top block's
        (basis [m b, d], Ritz values [m b], coordinates [m b, m b]).
    """
    starts = (z[:, None, :],) + (() if start is None else (start[None],))
    spaces = linalg.krylov_spaces(matvec, starts, m, rank)
    V, theta, Y = spaces[0]
    c = jnp.einsum("smd,sd->sm", V, z)  # V z (= |z| e_1 up to rounding)
    fit = KrylovFit(V, theta, jnp.einsum("smp,sm->sp", Y, c), Y)
    if start is None:
        return fit
    K, s, Yb = spaces[1]
    return fit, (K[0], s[0], Yb[0])


def apply(f: KrylovFit, G: jax.Array) -> jax.Array:
    """``G(C) z_s`` for every noise vector and every gain row: G [L, S, m] on the Ritz values -> [L, S, d]."""
    w = jnp.einsum("smp,lsp->lsm", f.vecs, G * f.coef[None])
    return jnp.einsum("lsm,smd->lsd", w, f.basis)


def quadratic(f: KrylovFit, G: jax.Array) -> jax.Array:
    """``z_s^T G(C) z_s`` for every gain row: G [L, S, m] -> [L, S] (Gauss quadrature)."""
    return jnp.sum(G * f.coef[None] ** 2, axis=-1)


def sqrt_trace(f: KrylovFit, theta: jax.Array, lam: jax.Array, tr_c, rank, top: jax.Array, U: jax.Array,
               z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``tr (C + lam I)^(1/2)`` by stochastic Lanczos quadrature over the noise vectors, and its standard error.

    The plain estimate ``mean_s z_s^T G(C) z_s`` (Hutchinson) has variance ``2 ||G(C)||_F^2 / S``,
    about ``2 d / S``: too much for w2 (~0.01 at d = 512). Three control variates of known mean
    take out nearly all of it, and leave the estimate unbiased whatever their accuracy:

    * C's null space (n < d): its part ``(d - rank) sqrt(lam)`` is exact; the quadrature
      nodes at 0 (Ritz values cut to 0) are left out of the sum;
    * C's top eigenpairs ``(top, U)`` (spikes, a mean: outliers far above the bulk): their
      part ``sum_i G(l_i)`` is added exactly and ``G(l_i) (u_i^T z)^2`` (mean ``G(l_i)``)
      subtracted from each probe;
    * the rest of the range: the tangent p of G at the bulk's mean eigenvalue
      ``mu = (tr C - sum_i l_i) / (rank - k)``, whose trace over the range is exact from
      ``tr C``; only ``G - p`` (second order in the bulk's spread) is estimated.

    Args:
        f: the noise vectors' Lanczos spaces; theta: their Ritz values with the null space cut
            to 0 [S, m]; lam: ridges [L].
        tr_c: ``tr C`` []; rank: ``rank C`` [] (float); top [k], U [d, k]: C's top eigenpairs.
        z: the noise vectors [S, d] (S >= 2).

    Returns:
        (estimate [L], standard error over the S probes [L]).
    """
    d = z.shape[-1]
    k = top.shape[0]
    mu = (tr_c - jnp.sum(top)) / jnp.maximum(rank - k, 1)
    g = jnp.sqrt(mu + lam)[:, None]  # [L, 1]

    def resid(l):  # G - p on eigenvalues l [..., r] for every lam -> [L, ..., r]
        l = l[None]
        g_ = g.reshape(g.shape[:1] + (1,) * (l.ndim - 1))
        return jnp.sqrt(l + lam.reshape(g_.shape)) - g_ - (l - mu) / (2 * g_)

    on_range = jnp.where(theta[None] > 0, resid(theta), 0)  # [L, S, m]
    probes = quadratic(f, on_range) - jnp.einsum("lk,sk->ls", resid(top), (z @ U) ** 2)  # [L, S]
    # tr p over the range: rank p(mu) + p'(mu) (tr C - rank mu)
    exact = (d - rank) * jnp.sqrt(lam) + rank * g[:, 0] + (tr_c - rank * mu) / (2 * g[:, 0])
    exact = exact + jnp.sum(resid(top), axis=-1)
    S = probes.shape[-1]
    return exact + jnp.mean(probes, axis=-1), jnp.std(probes, axis=-1, ddof=1) / jnp.sqrt(S)


def depth(gamma: float, lam: float, scale: float = 1.0, outliers: int = 0) -> int | None:
    """Lanczos depth m that brings ``sqrt(C + lam) z`` to ``TOL`` for C with bulk MP(1/gamma), or None.

    The sample covariance of n = gamma d rows with bulk variance ``scale`` has its bulk on
    ``scale [(1 - g^-1/2)^2, (1 + g^-1/2)^2]``, plus exact zeros when n < d (where the square
    root is exact: Lanczos resolves them) and ``outliers`` isolated eigenvalues above (spikes,
    a mean), each of which costs about one more step. A polynomial of degree m approximates
    ``sqrt(l + lam)`` on ``[a, b]`` to ``~rho^-m``, ``rho = (sqrt(k) + 1) / (sqrt(k) - 1)``,
    ``k = (b + lam) / (a + lam)``: the Chebyshev bound. Measured (d = 512, float64, gamma from
    0.25 to 4, lam from 0 to 1), Lanczos needs all of it at n < d, where the polynomial must
    also vanish on C's null space, but only about half of it at n > d (it adapts to the MP
    density, which vanishes at the edges): that half is taken there. Returns ``None`` where
    ``k`` is infinite (n = d at lam = 0: the bulk reaches the square root's branch point) or
    the depth would exceed ``MAX_DEPTH``.
    """
    r = 1 / math.sqrt(gamma)
    a, b = scale * (1 - r) ** 2, scale * (1 + r) ** 2
    if a + lam <= 0:
        return None
    k = (b + lam) / (a + lam)
    rho = (math.sqrt(k) + 1) / (math.sqrt(k) - 1)
    cheb = math.log(1 / TOL) / math.log(rho)
    m = math.ceil(cheb if gamma < 1 else cheb / 2) + outliers + 6
    return m if m <= MAX_DEPTH else None


def flops(n_pad: int, d: int, samples: int, m: int, block: int) -> float:
    """Rough flops of one model by the Krylov route: the planner's cost (``plan.pad_groups``)."""
    passes = m * (samples + block)  # operator applications, 4 n d each
    return 4.0 * n_pad * d * passes + 8.0 * d * m * m * (samples + block * block) + 9.0 * samples * m**3


def model(key_rows, pop, n, lam, z, start, n_pad: int, unit: float, depth: int):
    """One linear generator of a pair by the matrix-free route: C is only applied.

    The samples ``(C + lam I)^(1/2) z`` come from one Lanczos space per noise vector (every lam
    from it); Q and top_eig from the block space of ``start`` [b, d], grown in the same loop; w2
    from the noise vectors' spaces by stochastic Lanczos quadrature of ``tr (C + lam I)^(1/2)``
    (``sqrt_trace``), with its standard error over the S noise vectors.
    """
    X = data_mod.sample(key_rows, pop, n_pad)
    d = X.shape[1]
    rank = jnp.minimum(n, d)  # of the uncentred C, almost surely
    f, block = lanczos(operator(X, n), z[0], depth, start, rank=rank)
    # Ritz values of C's null space (n < d) come out at rounding level, eps times C's largest
    # eigenvalue (a mean or spike can put that 10^4 above the bulk); their square roots would
    # pollute the lam = 0 generator (as in ``fit.fit``). They are cut to 0 below half the MP
    # bulk's lower edge, unit^2 (1 - sqrt(d / n))^2; at n >= d there is no null space.
    nf = jnp.asarray(n, X.dtype)
    floor = jnp.where(nf < d, unit**2 * (1 - jnp.sqrt(d / nf)) ** 2 / 2, 0)
    theta = jnp.where(f.ritz > floor, f.ritz, 0)[None]  # [1, S, m], >= 0
    G = jnp.sqrt(theta + lam[:, None, None])  # [L, S, m]
    x = apply(f, G)
    out = observables.memorisation(x, X, n)
    k = pop.latent.shape[1]
    top, U = linalg.top_pairs(*block, k)
    out["Q"] = observables.subspace_overlap(U, pop.latent)
    out["top_eig"] = top[0]
    # rows first: a masked sum over all of X made XLA copy X (tests/test_run.py, the memory model)
    tr_c = jnp.sum(jnp.sum(X * X, axis=1) * row_mask(n_pad, n, X.dtype)) / jnp.asarray(n, X.dtype)
    tr_root, err = sqrt_trace(f, theta[0], lam, tr_c, rank.astype(X.dtype), top, U, z[0])
    out["w2"] = (tr_c + d * lam + d * unit**2 - 2 * unit * tr_root) / d
    out["w2_err"] = 2 * unit * err / d
    return out, x
