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
- bulk ``w2 = W2^2(N(0, Sigma_bulk), N(0, S)) / d`` and ``gaussian_divergences`` (KL both
  ways, squared Hellinger) of a spectral model's Gaussian law ``N(0, S)`` to the truth.
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


def memorisation(x: jax.Array, X: jax.Array, n, block: int | None = None) -> dict[str, jax.Array]:
    """Nearest-training-sample statistics of samples.

    Args:
        x: samples [..., S, d].
        X: training set [n_pad, d]; only the first ``n`` rows are real.
        n: number of real rows (traced int, 1 <= n <= n_pad).
        block: None (one pass over all n_pad rows), or a row block: the rows are walked
            ``block`` at a time up to the last real one (a loop of traced length), so a
            small ``n`` in a large padding bucket costs its own rows, not n_pad. The
            statistics are the same but for rounding: the dot products may round
            differently, which can also decide exact ties (a sample equal to two duplicate
            rows: distances 0 and ~1e-15, memorised or not).

    Returns:
        ``{"m": [...], "m_kad": [...], "mem_frac": [...]}``.
    """
    n = jnp.asarray(n)
    n_pad = X.shape[0]
    xs = _sample_moments(x)
    if block is None or n_pad <= block:
        stats = _nearest(x, xs, X, jnp.arange(n_pad, dtype=n.dtype) < n)
    else:
        inf = jnp.full(x.shape[:-1], jnp.inf, x.dtype)
        none = (jnp.zeros(x.shape[:-1], x.dtype), jnp.full(x.shape[:-1], -jnp.inf, x.dtype), inf, inf)
        stats = linalg.fold_row_blocks(lambda acc, Xb, real: _merge(acc, _nearest(x, xs, Xb, real)),
                                       none, X, 0, n, block)
    best_cos, best_corr, first, second = stats
    ratio_sq = first / jnp.maximum(second, _TINY)
    # With one training sample there is no second neighbour: ratio 0 -> memorised.
    mem_frac = jnp.mean((ratio_sq < 1.0 / 9.0).astype(x.dtype), axis=-1)
    return {"m": jnp.mean(best_cos, axis=-1), "m_kad": jnp.mean(best_corr, axis=-1), "mem_frac": mem_frac}


def _sample_moments(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(|x|^2, |x|, mean over d, mean-removed norm) of each sample [..., S]."""
    d = x.shape[-1]
    sq = jnp.sum(x * x, axis=-1)
    mx = jnp.mean(x, axis=-1)
    return sq, jnp.sqrt(sq), mx, jnp.sqrt(jnp.maximum(sq - d * mx**2, 0))


def _nearest(x, xs, X, real):
    """Over the rows of X [B, d] where ``real`` [B]: each sample's largest |cosine|, largest
    mean-removed correlation, and two smallest squared distances, each [..., S]."""
    def row(v):  # a vector over training rows [B], shaped to broadcast against [..., S, B]
        return v.reshape((1,) * (x.ndim - 1) + v.shape)

    sq_x, norm_x, mx, cnx = xs
    real = row(real)
    d = x.shape[-1]
    dot = (x.reshape(-1, d) @ X.T).reshape(x.shape[:-1] + X.shape[:1])  # [..., S, B]: the one
    # O(S B d) product (as one 2-D matmul); everything below is O(S B)
    sq_X = jnp.sum(X * X, axis=-1)
    cos = jnp.abs(dot) / jnp.maximum(norm_x[..., None] * row(jnp.sqrt(sq_X)), _TINY)
    best_cos = jnp.max(jnp.where(real, cos, 0), axis=-1)

    # mean-removed: (x - xbar)(X - Xbar) = x.X - d xbar Xbar, |x - xbar|^2 = |x|^2 - d xbar^2
    mX = jnp.mean(X, axis=-1)
    cdot = dot - d * mx[..., None] * row(mX)
    cnX = jnp.sqrt(jnp.maximum(sq_X - d * mX**2, 0))
    corr = cdot / jnp.maximum(cnx[..., None] * row(cnX), _TINY)
    best_corr = jnp.max(jnp.where(real, corr, -jnp.inf), axis=-1)

    d2 = jnp.maximum(sq_x[..., None] + row(sq_X) - 2 * dot, 0)
    d2 = jnp.where(real, d2, jnp.inf)
    # The two smallest squared distances, without a sort or an argmin: XLA's CPU backend does
    # not vectorise an argmin (a two-output reduction), which took as long as the product
    # ``dot`` itself (quick bench grid). The second is the smallest of the others, or the
    # first again where the first is reached twice (the argmin's tie rule, bit for bit; with a
    # NaN distance the second is NaN, but so is the first under either rule, and the sample
    # counts as not memorised either way).
    first = jnp.min(d2, axis=-1)
    at_first = d2 == first[..., None]
    twice = jnp.sum(at_first.astype(jnp.int32), axis=-1) > 1
    second = jnp.where(twice, first, jnp.min(jnp.where(at_first, jnp.inf, d2), axis=-1))
    return best_cos, best_corr, first, second


def _merge(a, b):
    """``_nearest`` statistics of the union of two sets of rows."""
    return (jnp.maximum(a[0], b[0]), jnp.maximum(a[1], b[1]), jnp.minimum(a[2], b[2]),
            jnp.minimum(jnp.maximum(a[2], b[2]), jnp.minimum(a[3], b[3])))


def subspace_overlap(u_hat: jax.Array, v: jax.Array) -> jax.Array:
    """Q = (1/k) ||Uhat^T V||_F^2 for orthonormal columns Uhat [d, k] and V [d, k] -> []."""
    return jnp.sum((u_hat.T @ v) ** 2) / v.shape[1]


def top_eigvecs(x: jax.Array, k: int) -> jax.Array:
    """Top-k eigenvectors [d, k] of the uncentred second moment x^T x / S of samples x [S, d]."""
    _, u = linalg.eigh(x.T @ x / x.shape[0])
    return u[:, ::-1][:, :k]


def bulk_w2(excess: jax.Array, var0: jax.Array, evecs: jax.Array, sigma: jax.Array, isotropic: bool) -> jax.Array:
    """W2^2(N(0, diag(sigma)), N(0, S)) / d for a spectral model covariance S, every lam [L].

    ``S = U diag(excess) U^T + var0 I``: the law of ``x = G(C) z`` (``excess = G(l)^2 - G(0)^2``,
    ``var0 = G(0)^2``; ``gains.spectral``); for the linear generator ``excess = l``, ``var0 = lam``,
    exactly (no ``(l + lam) - lam`` rounding).

    Args:
        excess: model variance in excess of var0 along the fit's eigenvectors [L, r] (0 on
            padding columns); var0: the variance off span(U) [L].
        evecs: U [d, r] (zero columns on padding); sigma: population bulk variances [d].
        isotropic: (static) sigma == 1, where the answer is the spectral sum
            ``(1/d) sum_i (sqrt(var_i) - 1)^2`` over all d directions, free for every lam.
            Otherwise ``tr Sigma + tr S - 2 tr (Sigma^(1/2) S Sigma^(1/2))^(1/2)``, one
            ``eigvalsh`` per lam.
    """
    d, r = evecs.shape
    var = excess + var0[:, None]
    if isotropic:
        inner = jnp.sum((jnp.sqrt(var) - 1) ** 2, axis=-1)
        return (inner + (d - r) * (jnp.sqrt(var0) - 1) ** 2) / d
    root = jnp.sqrt(sigma)
    B = root[:, None] * evecs  # Sigma^(1/2) U
    M = (B[None] * excess[:, None, :]) @ B.T[None] + var0[:, None, None] * jnp.diag(sigma)[None]
    ev = jnp.maximum(linalg.eigvalsh(M), 0)  # ascending [L, d]
    # Where var0 = 0, rank(M) = #(var > 0): its d - rank smallest are exact zeros, whose
    # rounding would otherwise add ~sqrt(eps) each under the square root.
    rank = jnp.sum(var > 0, axis=-1)
    ev = jnp.where((var0[:, None] == 0) & (jnp.arange(d)[None, :] < d - rank[:, None]), 0, ev)
    tr_model = jnp.sum(excess, axis=-1) + d * var0
    return (jnp.sum(sigma) + tr_model - 2 * jnp.sum(jnp.sqrt(ev), axis=-1)) / d


def _off_span(evecs: jax.Array, widened: bool):
    """Whether span(U) leaves directions of R^d out, for U [d, r]: always when r < d (a Python
    True); at r = d, only if U may have zero columns (``widened``, static: a small load's fit
    widened to the full width, ``fit.branched``), when they are there (a traced bool). Terms
    over the complement ``I - U U^T`` count only then: at full rank they are rounding alone
    (tr Sigma - sum_j u_j^T Sigma u_j, ~1e-4 in float32). Static when it can be: the traced
    test costs every kernel ~0.07 s of compiling."""
    d, r = evecs.shape
    if r < d or not widened:
        return r < d
    return jnp.any(jnp.sum(evecs**2, axis=0) < 0.5)


def _logdet_psd(A: jax.Array) -> jax.Array:
    """log det of symmetric positive (semi)definite matrices [..., k, k] (-inf if singular)."""
    return jnp.sum(jnp.log(jnp.maximum(linalg.eigvalsh(A), 0)), axis=-1)


def gaussian_divergences(excess, var0, evecs, sigma, spikes, beta, isotropic: bool, dmu=None,
                         widened: bool = False) -> dict[str, jax.Array]:
    """KL both ways and the squared Hellinger distance between N(dmu, S) and the truth N(0, Sigma).

    ``S = U diag(excess) U^T + var0 I`` as in ``bulk_w2``;
    ``Sigma = diag(sigma) + V diag(beta) V^T`` (the full population, spikes included), handled
    through Woodbury and the determinant lemma: nothing d x d is formed except the Hellinger
    term of a non-isotropic bulk (one ``eigvalsh`` per lam).

    A singular S (var0 = 0 with directions left, e.g. n < d at lam = 0) gives ``kl`` and
    ``kl_rev`` = +inf and ``h2`` = 1 exactly (never NaN).

    Args:
        excess [L, r], var0 [L], evecs U [d, r]: the model (zero columns of U: excess 0).
        sigma [d], spikes V [d, k], beta [k]: the population.
        isotropic: (static) sigma == 1.
        dmu: the model's mean minus the truth's, [d] or per lam [L, d] (default 0).
        widened: (static) U may have zero columns although r = d (``_off_span``).

    Returns:
        ``{"kl": KL(model || truth)/d, "kl_rev": KL(truth || model)/d, "h2": 1 - BC}``, each [L].
    """
    d, r = evecs.shape
    k = spikes.shape[1]
    var = excess + var0[:, None]
    comp = d - r  # directions outside the fit's columns (static)
    dinv = 1 / sigma
    logdet_sigma = jnp.sum(jnp.log(sigma))
    tr_sigma = jnp.sum(sigma) + jnp.sum(beta)
    uDu = (evecs**2).T @ dinv  # u_j^T D^-1 u_j [r]
    uSu = (evecs**2).T @ sigma + ((spikes.T @ evecs) ** 2).T @ beta  # u_j^T Sigma u_j [r]
    tr_inv = jnp.sum(dinv)
    if k:
        DV = dinv[:, None] * spikes  # D^-1 V [d, k]
        M = jnp.diag(1 / beta) + spikes.T @ DV  # [k, k]
        m_ev, m_vec = linalg.eigh(M)
        Minv = (m_vec / m_ev[None, :]) @ m_vec.T
        logdet_sigma = logdet_sigma + jnp.sum(jnp.log(beta)) + jnp.sum(jnp.log(m_ev))
        W = DV.T @ evecs  # V^T D^-1 U [k, r]
        uDu = uDu - jnp.sum(W * (Minv @ W), axis=0)  # u^T Sigma^-1 u
        tr_inv = tr_inv - jnp.trace(Minv @ (DV.T @ DV))
    logvar = jnp.log(var)  # -inf where var = 0
    logdet_S = jnp.sum(logvar, axis=-1) + (comp * jnp.log(var0) if comp else 0.0)
    tr_inv_S = var0 * tr_inv + excess @ uDu  # tr(Sigma^-1 S)
    kl = 0.5 * (tr_inv_S - d + logdet_sigma - logdet_S) / d

    singular = jnp.any(var <= 0, axis=-1) | ((var0 <= 0) & (comp > 0))
    safe = lambda v: 1 / jnp.where(v > 0, v, 1)  # noqa: E731
    rest = tr_sigma - jnp.sum(uSu)  # tr((I - UU^T) Sigma) (zero columns of U add nothing)
    tr_S_inv = safe(var) @ uSu + jnp.where(_off_span(evecs, widened), safe(var0) * rest, 0.0)
    kl_rev = jnp.where(singular, jnp.inf, 0.5 * (tr_S_inv - d + logdet_S - logdet_sigma) / d)
    kl = jnp.where(singular, jnp.inf, kl)

    # Hellinger: log BC = 1/4 logdet S + 1/4 logdet Sigma - 1/2 logdet((S + Sigma)/2)
    if isotropic:
        a, a0 = (var + 1) / 2, (var0 + 1) / 2  # (S + I)/2 is spectral in U
        logdet_mid = jnp.sum(jnp.log(a), axis=-1) + comp * jnp.log(a0)
        if k:
            VU = spikes.T @ evecs  # [k, r]
            # V^T A^-1 V with A = (S + I)/2 + V (beta/2) V^T split off: A^-1 spectral
            inner = (spikes.T @ spikes)[None] / a0[:, None, None] + jnp.einsum(
                "kr,lr,jr->lkj", VU, 1 / a - 1 / a0[:, None], VU)
            hb = jnp.sqrt(beta / 2)
            core = jnp.eye(k, dtype=var.dtype)[None] + hb[None, :, None] * inner * hb[None, None, :]
            logdet_mid = logdet_mid + _logdet_psd(core)
    else:
        full = jnp.diag(sigma) + (spikes * beta[None, :]) @ spikes.T
        S = (evecs[None] * excess[:, None, :]) @ evecs.T[None]
        S = S + var0[:, None, None] * jnp.eye(d, dtype=var.dtype)[None]
        logdet_mid = _logdet_psd((S + full[None]) / 2)
    log_bc = 0.25 * logdet_S + 0.25 * logdet_sigma - 0.5 * logdet_mid
    h2 = jnp.where(singular, 1.0, -jnp.expm1(log_bc))
    div = {"kl": kl, "kl_rev": kl_rev, "h2": h2}
    if dmu is None:
        return div
    dmu = jnp.broadcast_to(dmu, var0.shape + (d,))
    return _with_mean(div, dmu, excess, var0, evecs, sigma, spikes, beta, isotropic, widened)


def _with_mean(div, dmu, excess, var0, evecs, sigma, spikes, beta, isotropic: bool, widened: bool) -> dict:
    """Adds a mean difference to the divergences ``div`` of N(0, S) to N(0, Sigma).

    ``KL(model || truth) += dmu^T Sigma^-1 dmu / 2d``, ``KL(truth || model) += dmu^T S^-1 dmu / 2d``,
    ``log BC -= dmu^T ((S + Sigma)/2)^-1 dmu / 8``; Sigma's spikes by Woodbury (k x k), S spectral
    in U; only a non-isotropic bulk's Hellinger term forms ``(S + Sigma)/2`` (one ``eigh`` per
    lam). A singular S stays at +inf and H^2 = 1.

    Args:
        div: ``{"kl", "kl_rev", "h2"}`` [L] of the zero-mean law.
        dmu: the model's mean minus the truth's [L, d].
        excess [L, r], var0 [L], evecs U [d, r]; sigma [d], spikes V [d, k], beta [k]; isotropic,
            widened (static): as for ``gaussian_divergences``.
    """
    d = evecs.shape[0]
    k = spikes.shape[1]
    var = excess + var0[:, None]
    safe = lambda v: 1 / jnp.where(v > 0, v, 1)  # noqa: E731
    p = dmu @ evecs  # [L, r]
    sq = jnp.sum(dmu**2, axis=-1)
    perp = jnp.where(_off_span(evecs, widened), sq - jnp.sum(p**2, axis=-1), 0.0)  # off span(U)

    def spectral_quad(w, w0):  # dmu^T (U diag(w) U^T + w0 (I - U U^T)) dmu, per lam
        return jnp.sum(w * p**2, axis=-1) + w0 * perp

    dinv = 1 / sigma
    q_truth = (dmu**2) @ dinv  # dmu^T Sigma^-1 dmu, Woodbury over the spikes
    if k:
        DV = dinv[:, None] * spikes
        m_ev, m_vec = linalg.eigh(jnp.diag(1 / beta) + spikes.T @ DV)
        w = (dmu @ DV) @ m_vec  # [L, k]
        q_truth = q_truth - jnp.sum(w**2 / m_ev[None, :], axis=-1)
    q_model = spectral_quad(safe(var), safe(var0))
    if isotropic:  # A = (S + I)/2 + V (beta/2) V^T, A0 = (S + I)/2 spectral
        a, a0 = (var + 1) / 2, (var0 + 1) / 2
        q_mid = spectral_quad(1 / a, 1 / a0)
        if k:
            def a0_inv(x):  # A0^-1 x for x [L, d, m]
                return x / a0[:, None, None] + jnp.einsum("dr,lr,lrm->ldm", evecs, 1 / a - 1 / a0[:, None],
                                                          jnp.einsum("dr,ldm->lrm", evecs, x))
            Vl = jnp.broadcast_to(spikes[None], (dmu.shape[0],) + spikes.shape)
            AV = a0_inv(Vl)  # [L, d, k]
            y = jnp.einsum("ldk,ld->lk", AV, dmu)
            core = jnp.diag(2 / beta)[None] + jnp.einsum("dk,ldj->lkj", spikes, AV)
            c_ev, c_vec = linalg.eigh(core)
            t = jnp.einsum("lk,lkj->lj", y, c_vec)
            q_mid = q_mid - jnp.sum(t**2 / c_ev, axis=-1)
    else:
        full = jnp.diag(sigma) + (spikes * beta[None, :]) @ spikes.T
        S = (evecs[None] * excess[:, None, :]) @ evecs.T[None]
        S = S + var0[:, None, None] * jnp.eye(d, dtype=var.dtype)[None]
        m_ev, m_vec = linalg.eigh((S + full[None]) / 2)
        q_mid = jnp.sum(jnp.einsum("ld,lde->le", dmu, m_vec) ** 2 / m_ev, axis=-1)
    singular = jnp.isinf(div["kl_rev"])
    log_bc = jnp.log1p(-jnp.where(singular, 0.0, div["h2"])) - q_mid / 8
    return {"kl": div["kl"] + 0.5 * q_truth / d,
            "kl_rev": jnp.where(singular, jnp.inf, div["kl_rev"] + 0.5 * q_model / d),
            "h2": jnp.where(singular, 1.0, -jnp.expm1(log_bc))}


def _offdiag_logsumexp(X: jax.Array, scale, mask=None, block: int = 1024) -> jax.Array:
    """log sum_{i != j} exp(-|x_i - x_j|^2 / scale) over the rows of X [m, d] (masked rows left out).

    Row blocks of ``block`` keep the memory at O(block m) for a fresh set of 10^4 points.
    """
    m, d = X.shape
    sq = jnp.sum(X * X, axis=-1)
    valid = jnp.ones(m, bool) if mask is None else mask
    nb = -(-m // block)
    pad = nb * block - m
    Xp = jnp.pad(X, ((0, pad), (0, 0)))
    sqp, vp = jnp.pad(sq, (0, pad)), jnp.pad(valid, (0, pad))
    idx = jnp.arange(nb * block).reshape(nb, block)

    def one(rows):
        d2 = jnp.maximum(sqp[rows][:, None] + sq[None, :] - 2 * Xp[rows] @ X.T, 0)
        keep = vp[rows][:, None] & valid[None, :] & (rows[:, None] != jnp.arange(m)[None, :])
        return jax.nn.logsumexp(jnp.where(keep, -d2 / scale, -jnp.inf))

    return jax.nn.logsumexp(jax.lax.map(one, idx))


def kde_pairs(X: jax.Array, n, eps2) -> jax.Array:
    """``a = log [(1/n) sum_{i != j} exp(-|x_i - x_j|^2 / (4 eps^2))]`` over the ``n`` real rows of X [m, d].

    The off-diagonal part of ``int kde_D^2`` as a multiple of ``(4 pi)^(-d/2)``, in units of
    std = 1 with bandwidth ``eps^2 = n^(-2/d)`` (see ``relative_distance``).
    """
    m = X.shape[0]
    n = jnp.asarray(n)
    return _offdiag_logsumexp(X, 4 * eps2, jnp.arange(m, dtype=n.dtype) < n) - jnp.log(n.astype(X.dtype))


def kde_cross(X: jax.Array, n, mu: jax.Array, evecs: jax.Array, var: jax.Array, eps2) -> jax.Array:
    """``b = log [(1/n) sum_i N(x_i; mu, S + eps^2 I)]`` as a multiple of ``(4 pi)^(-d/2)``.

    ``int p_G kde_D`` for ``p_G = N(mu, S)``, ``S = U diag(var) U^T``:
    ``b = logsumexp(-q_i/2) - log n - 1/2 sum log(var + eps^2) + (d/2) log 2``,
    ``q_i = (x_i - mu)^T (S + eps^2 I)^-1 (x_i - mu)``.

    Args:
        X: points [m, d] (rows >= n are padding); n: real rows (traced int).
        mu [d], evecs U [d, d] (a full basis), var [d] (>= 0): the generated law.
        eps2: the KDE bandwidth squared [].
    """
    m, d = X.shape
    proj = (X - mu[None, :]) @ evecs  # [m, d]
    q = jnp.sum(proj**2 / (var + eps2)[None, :], axis=-1)
    n = jnp.asarray(n)
    lse = jax.nn.logsumexp(jnp.where(jnp.arange(m, dtype=n.dtype) < n, -q / 2, -jnp.inf))
    return (lse - jnp.log(jnp.asarray(n, X.dtype)) - 0.5 * jnp.sum(jnp.log(var + eps2))
            + 0.5 * d * jnp.log(jnp.asarray(2.0, X.dtype)))


def relative_distance(train: tuple, fresh: tuple) -> jax.Array:
    """Halder's Delta = e(training set) - e(fresh set), relative to its larger part, in [-1, 1].

    ``e(D) = int (p_G - kde_D)^2 - int p_G^2 = int kde_D^2 - 2 int p_G kde_D`` with the Gaussian
    KDE of bandwidth ``eps = std n^(-1/d)`` (n = |D|; Halder, arXiv 2411.17807). In units of
    std = 1 the diagonal of ``int kde_D^2`` is ``(4 pi)^(-d/2)`` for every n, so it cancels in
    Delta and is left out (``kde_pairs``): Delta keeps its digits in float32.

    Args:
        train, fresh: ``(a, b)`` = (``kde_pairs``, ``kde_cross``) of each set (the fresh
            ``a`` does not depend on the model: callers compute it once per seed).

    Returns:
        ``(P - Q) / max(P, Q)`` with ``Delta / (4 pi)^(-d/2) = P - Q``,
        ``P = e^{a_T} + 2 e^{b_F}``, ``Q = e^{a_F} + 2 e^{b_T}``: the sign of Delta (Halder's
        criterion: the model generalises when P(Delta > 0) -> 1) and its relative size,
        representable in float32 where Delta itself (~1e-22 at d = 100) is not.
    """
    (a_t, b_t), (a_f, b_f) = train, fresh
    log2 = jnp.log(2.0).astype(a_t.dtype)
    log_p = jnp.logaddexp(a_t, log2 + b_f)
    log_q = jnp.logaddexp(a_f, log2 + b_t)
    return jnp.where(log_p >= log_q, -jnp.expm1(log_q - log_p), jnp.expm1(log_p - log_q))
