"""General (power-law) population spectrum: Silverstein deterministic equivalents.

Contract: kernels for ONE load ``gamma`` (and one ``lam``) and a population spectrum
``sigma [d]`` (the diagonal of Sigma in its eigenbasis), pure ``jnp``, ``jax.jit``- and
``jax.vmap``-able, dtype of ``sigma``; ``grid_values`` batches them over a (gamma, lam)
grid with ``lax.map`` (memory ~ ``batch * 257 * d`` floats). Solvers return their
residuals; ``check_residual`` (host side) raises ``RuntimeError`` when one did not converge.
Call them with float64 ``sigma``: in float32 the solvers can fail even at gamma = 1, lam = 0
(``memgen.theory.theory`` always runs them in float64, inside ``jax.enable_x64``).

With ``c = 1/gamma = d/n`` and ``C = Sigma^(1/2) W Sigma^(1/2)``, the companion Stieltjes
transform ``m(z)`` solves ``z = -1/m + c tau(sigma / (1 + m sigma))`` and the resolvent has
the deterministic equivalent ``(C - z)^(-1) ~ -(1/z) (I + m(z) Sigma)^(-1)`` (Silverstein
1995; Couillet & Liao 2022, Thm 2.6). On the negative axis ``z = -u`` everything is real:
``delta = m(-u) > 0`` solves ``delta u + c tau(delta sigma/(1 + delta sigma)) = 1`` (concave,
increasing: Newton from ``1/(u + c tau(sigma))`` converges monotonically).

* ``F = deq[(C + lam)^(1/2)]`` from ``sqrt(A) = (1/pi) int_0^inf t^(-1/2) [1 - t (A + t)^(-1)] dt``
  with ``u = lam + t``: ``F_i = (2/pi) int_0^inf [lam/u + u delta sigma_i/u] / (1 + delta sigma_i) dw``,
  ``t = w^2``; trapezoid in ``log w`` (integrand analytic for ``|Im log w| < pi/2``).
* ``q_trace = tau(F^2) / tau(Sigma + lam)`` (theory.md), and the finite-d ``q`` that keeps
  the z-fluctuations: ``q = E_z [z^T F^2 z / z^T (Sigma + lam) z]`` (exact 1-D integral). They
  agree when the effective rank ``tau(Sigma)^2/tau(Sigma^2)`` d is large; for alpha >~ 1/2
  only the second matches simulation (docs/theory.md).
* ``w2 = 2 tau(Sigma) + lam - 2 tau(deq[(Sigma^(1/2) (C + lam) Sigma^(1/2))^(1/2)])``, where
  ``Sigma^(1/2)(C + lam)Sigma^(1/2) = lam Sigma + (sample covariance of N(0, Sigma^2))`` has
  ``(M + t)^(-1) ~ (lam Sigma + Sigma^2/(1 + e) + t)^(-1)``, ``e = c tau(Sigma^2 (...)^(-1))``.
* Outliers (leave-one-out, Benaych-Georges & Nadakuditi 2011): a population eigenvalue
  ``s`` separates iff ``1 - c tau'(sigma^2/(s - sigma)^2) > 0`` (tau' without itself); then
  ``lambda_top = s (1 + c tau'(sigma/(s - sigma)))`` and
  ``|<u, e>|^2 = s (1 - c tau'(sigma^2/(s - sigma)^2)) / lambda_top``. For Sigma = I + beta e e^T
  these are the BBP formulas. A spike ``beta v v^T`` along a random direction on top of
  ``diag(sigma)`` uses ``1 + m beta tau(1/(1 + m sigma)) = 0`` instead.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..spectra import powerlaw_spectrum

_Y = np.arange(-32.0, 32.0 + 1e-9, 0.25)  # trapezoid nodes in log w


def _tol(dtype) -> float:
    return 1e-9 if jnp.finfo(dtype).bits == 64 else 1e-4


def solve_delta(u, sigma, gamma, iters: int = 80):
    """``delta = m(-u)``: the companion Stieltjes transform of C on the negative axis.

    Args:
        u: points > 0, shape ``[K]``.
        sigma: population spectrum ``[d]``.
        gamma: load n/d (scalar).
        iters: Newton iterations (monotone from below).

    Returns:
        ``(delta [K], residual [K])`` with residual ``|delta u + c tau(...) - 1|``.
    """
    c = 1.0 / gamma
    s = sigma[None, :]
    uu = u[:, None]

    def h_and_dh(delta):
        ds = delta[:, None] * s
        h = delta * u + c * jnp.mean(ds / (1.0 + ds), axis=-1) - 1.0
        dh = u + c * jnp.mean(s / (1.0 + ds) ** 2, axis=-1)
        return h, dh

    delta0 = 1.0 / (uu[:, 0] + c * jnp.mean(sigma))

    def body(_, delta):
        h, dh = h_and_dh(delta)
        # monotone from below in exact arithmetic (h concave); clip guards rounding
        return jnp.clip(delta - h / dh, delta0, 1.0 / u)

    delta = jax.lax.fori_loop(0, iters, body, delta0)
    h, _ = h_and_dh(delta)
    return delta, jnp.abs(h)


def _w_nodes(scale, dtype):
    y = jnp.asarray(_Y, dtype)
    h = float(_Y[1] - _Y[0])
    w = scale * jnp.exp(y)
    return w, h * w  # nodes and weights (dw = w dy)


def sqrt_equivalent(sigma, gamma, lam):
    """Diagonal of ``F = deq[(C + lam I)^(1/2)]`` in the eigenbasis of Sigma.

    Args:
        sigma: population spectrum ``[d]``.
        gamma: load n/d (scalar).
        lam: regularisation >= 0 (scalar).

    Returns:
        ``(F [d], residual)``; for Sigma = I, ``F_i = E_{mu_gamma} sqrt(s + lam)``.
    """
    dt = sigma.dtype
    w, wt = _w_nodes(jnp.sqrt(jnp.mean(sigma) + lam), dt)
    u = lam + w**2
    delta, res = solve_delta(u, sigma, gamma)
    ds = delta[:, None] * sigma[None, :]
    integrand = (lam / u[:, None] + ds) / (1.0 + ds)  # [K, d]
    f = (2.0 / np.pi) * jnp.sum(wt[:, None] * integrand, axis=0)
    # tails: int_0^{w_min} ~ w_min * integrand(w_min); int_{w_max}^inf ~ (lam + sigma)/w_max
    f = f + (2.0 / np.pi) * (w[0] * integrand[0] + (lam + sigma) / w[-1])
    return f, jnp.max(res)


def ratio_expectation(a, b):
    """``E_z [sum_i a_i z_i^2 / sum_i b_i z_i^2]`` for ``z ~ N(0, I)``, a >= 0, b > 0 (exact).

    Uses ``E[N/D] = int_0^inf E[N e^{-tD}] dt`` = ``int sum_i a_i/(1+2t b_i)
    prod_j (1+2t b_j)^(-1/2) dt``, trapezoid in ``log t``.
    """
    p = b / jnp.sum(b)
    y = jnp.arange(-40.0, 40.0 + 1e-9, 0.25, dtype=b.dtype)
    e = jnp.exp(y)[:, None] * p[None, :]  # 2 t b_j with t = e^y / (2 sum b)
    log_prod = -0.5 * jnp.sum(jnp.log1p(e), axis=-1)
    num = jnp.sum(a[None, :] / (1.0 + e), axis=-1)
    return 0.25 * jnp.sum(num * jnp.exp(log_prod + y)) / (2.0 * jnp.sum(b))


def solve_e(t, sigma, gamma, lam, iters: int = 80):
    """``e(t)`` for ``M = lam Sigma + (sample covariance of N(0, Sigma^2))`` at ``z = -t``.

    Solves ``e = c tau(sigma^2 / (lam sigma + t + sigma^2/(1 + e)))`` by Newton from above
    (the residual is convex in e). Returns ``(e [K], residual [K])``.
    """
    c = 1.0 / gamma
    s2 = (sigma**2)[None, :]
    a = lam * sigma[None, :] + t[:, None]

    def h_and_dh(e):
        den = a * (1.0 + e[:, None]) + s2
        r = c * jnp.mean(s2 * (1.0 + e[:, None]) / den, axis=-1)
        dr = c * jnp.mean(s2**2 / den**2, axis=-1)
        return e - r, 1.0 - dr

    e0 = c * jnp.mean(s2 / a, axis=-1)

    def body(_, e):
        h, dh = h_and_dh(e)
        # monotone from above in exact arithmetic (h convex); rounding in the first,
        # huge iterates may land just below the root, where h' > 0 still holds.
        return jnp.clip(jnp.where(dh > 0, e - h / dh, 0.5 * e), 0.0, e0)

    e = jax.lax.fori_loop(0, iters, body, e0)
    h, _ = h_and_dh(e)
    return e, jnp.abs(h) / (1.0 + e)


def w2_equivalent(sigma, gamma, lam):
    """Per-dimension ``W2^2/d`` between ``N(0, Sigma)`` and ``N(0, C + lam I)`` (scalar, residual)."""
    dt = sigma.dtype
    w, wt = _w_nodes(jnp.sqrt(jnp.mean(sigma**2) + lam * jnp.mean(sigma)), dt)
    t = w**2
    e, res = solve_e(t, sigma, gamma, lam)
    eig = lam * sigma[None, :] + sigma[None, :] ** 2 / (1.0 + e[:, None])  # [K, d]
    integrand = jnp.mean(eig / (eig + t[:, None]), axis=-1)
    tr_sqrt = (2.0 / np.pi) * (jnp.sum(wt * integrand) + w[0] * integrand[0])
    tr_sqrt = tr_sqrt + (2.0 / np.pi) * jnp.mean(lam * sigma + sigma**2) / w[-1]
    return 2.0 * jnp.mean(sigma) + lam - 2.0 * tr_sqrt, jnp.max(res)


def point_values(sigma, gamma, lam):
    """q, q_trace, w2 (and the worst solver residual) for one (gamma, lam).

    Args:
        sigma: population spectrum ``[d]``.
        gamma: load n/d (scalar).
        lam: regularisation (scalar).

    Returns:
        dict with scalars ``q``, ``q_trace``, ``w2``, ``residual``.
    """
    f, r1 = sqrt_equivalent(sigma, gamma, lam)
    w2, r2 = w2_equivalent(sigma, gamma, lam)
    q_trace = jnp.mean(f**2) / (jnp.mean(sigma) + lam)
    q = ratio_expectation(f**2, sigma + lam)
    return {"q": q, "q_trace": q_trace, "w2": w2, "residual": jnp.maximum(r1, r2)}


def grid_values(sigma, gamma, lam, batch_size: int = 16):
    """``point_values`` over a (gamma, lam) grid: returns dict of ``[G, L]`` arrays."""
    gg, ll = jnp.meshgrid(gamma, lam, indexing="ij")
    out = jax.lax.map(
        lambda p: point_values(sigma, p[0], p[1]),
        jnp.stack([gg.ravel(), ll.ravel()], axis=-1),
        batch_size=batch_size,
    )
    return {k: v.reshape(gg.shape) for k, v in out.items()}


# ----------------------------------------------------------------------- outliers


def outlier_overlaps(sigma, gamma, idx):
    """Leave-one-out outliers of the population axes ``idx``, each a spike on the rest.

    For ``s = sigma_j`` and the other ``d - 1`` values (larger ones included, signed),
    ``psi(s) = s (1 + (c/d) sum_{i != j} sigma_i/(s - sigma_i))`` is the sample outlier and
    ``psi'(s) = 1 - (c/d) sum_{i != j} sigma_i^2/(s - sigma_i)^2``; the axis separates iff
    ``psi'(s) > 0`` (and no other sigma_i equals s). Overlaps (residue of
    ``e^T (C - z)^(-1) e ~ -1/(z (1 + m_{-j}(z) s))`` at ``m_{-j} = -1/s``):
    ``|<u_j, e_j>|^2 = s psi'(s) / psi(s)`` and, for another axis ``l``,
    ``|<u_j, e_l>|^2 = s^2 sigma_l / (n psi(s) (s - sigma_l)^2)`` (``n = gamma d``).

    Args:
        sigma: population spectrum ``[d]``.
        gamma: load n/d, shape ``[...]``.
        idx: static axis indices ``[k]`` (python ints).

    Returns:
        ``(overlap [..., k], eigenvalue [..., k], cross [..., k, k])``: ``cross[..., a, b]``
        is ``|<u_{idx_a}, e_{idx_b}>|^2`` for ``a != b`` (0 on the diagonal). Overlaps and
        cross terms are 0, eigenvalues NaN, for axes that do not separate.
    """
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    d = sigma.shape[0]
    gamma = jnp.asarray(gamma, sigma.dtype)
    lift = lambda a: a.reshape((1,) * gamma.ndim + a.shape)  # noqa: E731  (rank_promotion)
    c = (1.0 / gamma)[..., None]  # [..., 1]
    s = sigma[idx]  # [k]
    mask = np.arange(d)[None, :] != idx[:, None]  # [k, d] (static)
    diff = s[:, None] - sigma[None, :]
    live = mask & (diff != 0)
    safe = jnp.where(live, diff, 1.0)
    t1 = jnp.sum(jnp.where(live, sigma[None, :] / safe, 0.0), axis=-1) / d  # [k]
    t2 = jnp.sum(jnp.where(live, (sigma[None, :] / safe) ** 2, 0.0), axis=-1) / d
    distinct = jnp.all(jnp.where(mask, diff != 0, True), axis=-1)  # [k]
    slope = 1.0 - c * lift(t2)  # psi'(s)  [..., k]
    lam_top = lift(s) * (1.0 + c * lift(t1))  # psi(s)
    sep = lift(distinct) & (slope > 0) & (lam_top > 0)
    lam_safe = jnp.where(sep, lam_top, 1.0)
    overlap = jnp.where(sep, lift(s) * slope / lam_safe, 0.0)
    pair = s[:, None] - s[None, :]  # [k, k]
    off = ~np.eye(idx.shape[0], dtype=bool)
    pair_safe = jnp.where(off & (pair != 0), pair, 1.0)
    # [k, k]: s_a^2 s_b / (s_a - s_b)^2 / d, as (s_a / (s_a - s_b))^2 s_b so that tiny
    # (large-alpha) spectra do not underflow pair^2 to 0 (0/0 = NaN)
    w = (s[:, None] / pair_safe) ** 2 * s[None, :] / d
    cross = (c / lam_safe)[..., None] * lift(jnp.where(off & (pair != 0), w, 0.0))
    cross = jnp.where(sep[..., None], cross, 0.0)
    return overlap, jnp.where(sep, lam_top, jnp.nan), cross


def axis_outlier(sigma, gamma, j: int):
    """Sample outlier attached to population axis ``j``: ``(overlap |<u_j, e_j>|^2, eigenvalue)``.

    ``outlier_overlaps`` for one axis: a spike ``sigma_j`` on the other ``d - 1`` values
    (larger ones included). Overlap 0 and eigenvalue NaN when ``sigma_j`` does not separate.
    ``gamma`` may be an array ``[G]``; returns arrays of its shape.
    """
    overlap, lam_top, _ = outlier_overlaps(sigma, gamma, [j])
    return overlap[..., 0], lam_top[..., 0]


def latent_recovery(sigma, gamma, idx):
    """Theory of ``Q = (1/k) ||Uhat_k^T V_k||_F^2`` for the population axes ``idx`` (k of them).

    ``Q = (1/k) sum_a [|<u_a, e_a>|^2 + sum_{b != a} |<u_a, e_b>|^2]`` from
    ``outlier_overlaps`` (rows of non-separating axes count 0). ``gamma [...]`` -> ``[...]``.
    """
    overlap, _, cross = outlier_overlaps(sigma, gamma, idx)
    return jnp.mean(overlap + jnp.sum(cross, axis=-1), axis=-1)


def _z_of_m(m, sigma, c):
    return -1.0 / m + c * jnp.mean(sigma / (1.0 + m * sigma))


def _dz_of_m(m, sigma, c):
    return 1.0 / m**2 - c * jnp.mean((sigma / (1.0 + m * sigma)) ** 2)


def bisect(f, lo, hi, iters=200):
    """Root of an increasing ``f`` on ``(lo, hi)`` by bisection (elementwise over array bounds)."""

    def body(_, b):
        lo, hi = b
        mid = 0.5 * (lo + hi)
        up = f(mid) > 0
        return jnp.where(up, lo, mid), jnp.where(up, mid, hi)

    lo, hi = jax.lax.fori_loop(0, iters, body, (lo, hi))
    return 0.5 * (lo + hi)


def bulk_edge(sigma, gamma):
    """Right edge of the deterministic-equivalent spectrum: ``min z(m)`` on ``(-1/sigma_max, 0)``."""
    c = 1.0 / gamma
    m = bisect(lambda m: _dz_of_m(m, sigma, c), -1.0 / jnp.max(sigma), jnp.zeros((), sigma.dtype))
    return _z_of_m(m, sigma, c), m


def random_spike_outlier(sigma, gamma, beta):
    """Overlap and eigenvalue for a spike ``beta v v^T`` along a random direction on ``diag(sigma)``.

    Solves ``phi(m) = 1 + m beta tau(1/(1 + m sigma)) = 0`` on ``(m_edge, 0)``; overlap
    ``tau(1/(1+m sigma)) z'(m) / (z(m) phi'(m))``. Scalars in, scalars out (0 / edge when
    the spike does not separate).
    """
    c = 1.0 / gamma
    edge, m_edge = bulk_edge(sigma, gamma)

    def phi(m):
        return 1.0 + m * beta * jnp.mean(1.0 / (1.0 + m * sigma))

    sep = phi(m_edge) < 0
    m = bisect(phi, m_edge, jnp.zeros((), sigma.dtype))
    a = jnp.mean(1.0 / (1.0 + m * sigma))
    dphi = beta * jnp.mean(1.0 / (1.0 + m * sigma) ** 2)
    x = _z_of_m(m, sigma, c)
    overlap = a * _dz_of_m(m, sigma, c) / (x * dphi)
    return jnp.where(sep, overlap, 0.0), jnp.where(sep, x, edge)


def check_residual(residual, what: str = "Silverstein solver") -> None:
    """Raise ``RuntimeError`` if any residual (host array) exceeds the dtype's tolerance."""
    r = np.asarray(residual)
    tol = _tol(r.dtype)
    bad = ~(r <= tol)
    if bad.any():
        raise RuntimeError(
            f"{what} did not converge at {int(bad.sum())} of {r.size} points "
            f"(worst residual {np.nanmax(np.where(np.isnan(r), np.inf, r)):.3g} > tol {tol:g}); "
            "check for extreme gamma/lam or use float64 (jax_enable_x64)."
        )


__all__ = [
    "powerlaw_spectrum",
    "solve_delta",
    "sqrt_equivalent",
    "ratio_expectation",
    "solve_e",
    "w2_equivalent",
    "point_values",
    "grid_values",
    "outlier_overlaps",
    "axis_outlier",
    "latent_recovery",
    "bulk_edge",
    "random_spike_outlier",
    "check_residual",
]
