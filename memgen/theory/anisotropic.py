"""Anisotropic theory of any spectral model x = G(C) z: the local spectral measures of C.

Contract: pure ``jnp`` kernels for ONE load ``gamma`` and a population spectrum ``sigma [d]``
(``local_measure``, ``point_values``; ``jax.jit``-able with the gain closed over), and
``values``, which ``lax.map``s ``point_values`` over an array of loads. The dtype follows
``sigma``: call them with float64 (inside ``jax.enable_x64``), as ``theory.theory`` does.

Setting: ``x ~ N(0, Sigma)``, ``Sigma = diag(sigma)``, ``C = X^T X / n`` (uncentred),
``n = gamma d``, ``c = 1/gamma``; a spectral model samples ``x = G(C) z`` (or
``sum_j G_j(C) z_j`` with J independent noises, e.g. an ancestral sampler), two models on
independent splits share z. With ``tau = tr/d``:

* ``q_trace = tau(sum_j F_j^2) / tau(H)``, ``F_j = deq E G_j(C)`` (diagonal in Sigma's basis:
  two independent Wisharts, asymptotically free), ``H = diag deq E[sum_j G_j(C)^2]``; and the
  finite-d ``q = E_z [z^T (sum_j F_j^2) z / z^T H z]`` that keeps the z-fluctuations, the
  convention of ``powerlaw.point_values`` (for ``G = sqrt(l + lam)``, ``H = sigma + lam``
  and the two agree; with several noises each direction's coherent part ``sum_j F_j^2`` is
  taken proportional to its total ``H``, as for one noise).
* ``KL(N(0, K(C)) || N(0, Sigma))/d = (1/2) mean_k int [K/sigma_k - 1 - log(K/sigma_k)] dmu_k``
  and the reverse with ``sigma_k / K``, ``K = sum_j G_j^2`` (each integrand >= 0, so a model
  near the truth keeps its digits); +inf when ``K(C)`` is singular (an atom at 0, gamma < 1,
  meeting ``K(0) = 0``; or gamma = 1 with ``K(0) = 0``, where ``int K^-1`` diverges for the
  reverse KL).
* No ``w2``: ``tr (Sigma^(1/2) G(C)^2 Sigma^(1/2))^(1/2)`` is not a function of the local
  measures; only ``G = sqrt(l + lam)`` has a closed equivalent (``powerlaw.w2_equivalent``).

Method. The resolvent's deterministic equivalent (Silverstein 1995; Couillet & Liao 2022,
Thm 2.6), ``e_k^T (C - z)^-1 e_k ~ -1/(z (1 + m(z) sigma_k))``, makes ``mu_k`` (the spectral
measure of C seen from population axis k) explicit: on the real axis write ``t = -1/m =
u + i v``; the support of C's spectrum is the image of the curve ``c tau(sigma^2/|t - sigma|^2)
= 1`` (``v > 0``), ``x(u) = u + c tau(sigma) + c tau(sigma^2 (u - sigma)/|t - sigma|^2)`` is
increasing along it, and ``dmu_k = sigma_k v / (pi x |t - sigma_k|^2) x'(u) du`` (plus an atom
``1/(1 + m0 sigma_k)`` at 0 for gamma < 1, ``c tau(m0 sigma/(1 + m0 sigma)) = 1``). For each u,
``v^2`` is the root of a monotone secular equation (Newton on ``1/S``, which is concave:
monotone convergence from a lower bound). Gaps of the support are the intervals between
consecutive population values where ``psi'(t) = 1 - c tau(sigma^2/(t - sigma)^2) > 0``
(Silverstein & Choi 1995), found by bisection (``psi''`` is convex there); the outer edges
likewise. Quadrature: between consecutive population values, the ``tiers`` hardest intervals
(gaps and near-gaps first, ranked by a cheap upper bound of ``min psi2``) get Gauss-Legendre
on each side of the gap (or narrowest point), mapped quadratically toward it (square-root
edges become smooth); the other intervals, where the density is smooth on their scale, get
``n_easy`` nodes; graded panels toward the lower edge (the ``x^(-1/2)`` density at gamma = 1,
gains that vary on a tiny scale near 0). With the defaults K ~ 2 d + 4400 nodes. ``residual``
reports the worst error of the moments of the ``mu_k`` (``int dmu_k = 1``,
``int x dmu_k = sigma_k``, exact for the deterministic equivalent) and of the secular
equation: < 1e-7 at d = 1000 for power laws alpha <= 2, ``0.1 <= gamma <= 2`` (gamma = 1 and
1 +- 1e-3 included), and gamma = 10 for alpha <= 1 (5e-5 at alpha = 2); ~1e-3 to 1e-2 at
gamma >= 30 (more gaps than the tiers hold: enlarge ``tiers``). ``check_residual`` enforces
``RESIDUAL_TOL``. The G-independent measure is computed once per load for every gain in the
batch (e.g. a ridge grid); d = 1000: ~0.2 s per load on 2 cores, plus the gain.

Validity (the deterministic equivalent): ``d, n -> inf`` at fixed gamma with a spectrum of
large effective rank ``tau(Sigma)^2/tau(Sigma^2) d``; it is evaluated at the actual finite d
(the top population values are resolved one by one, their sample outliers smeared by the
equivalent's O(1/sqrt(n)) width, as their fluctuations are). Errors: O(1/d) in the
expectations ``F, H`` and the KLs (log det and inverse moments: KL/d 0.3%, reverse 0.9% at
d = 300, 0.1% and 0.4% at d = 600 for DDIM on alpha = 1, gamma = 2); the simulated q of one
pair of datasets fluctuates by O(1/sqrt(d)) (relative to ``1 - q``, larger when the
effective rank is small), and E_z of the cosine is a ratio, hence the finite-d ``q``.
gamma = 1: the lower edge is 0, the density ~ ``x^(-1/2)``; handled by the graded panels, but
the convergence in d is slow there (the smallest sample eigenvalue ~ 1/d^2, not 0), so a gain
that varies on scales below ``1/d^2`` near 0 (a Wiener denoiser at ``lam = 0`` with
``sigma_min^2 << 1/d^2``) and ``kl_rev`` near gamma = 1 (set to +inf at gamma = 1 when
``K(0) = 0``) are only asymptotic; ``kl_rev`` with a ridge is dominated by the smallest
eigenvalues (edge fluctuations O(d^(-2/3))): 9% off at d = 300, alpha = 1/2, lam = 0.1.
Large alpha (alpha >~ 1): the effective rank is small, q of one dataset pair fluctuates O(1)
relative to ``1 - q``, the trace ratio ``q_trace`` is off the simulated mean by several
standard errors (8-9 se at d = 300, alpha = 1) and only ``q`` applies; for alpha >~ 2 with
gamma >~ 10 nearly every top direction is its own component of the spectrum (``residual``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .powerlaw import bisect, ratio_expectation

RESIDUAL_TOL = 1e-4  # moments of the local measures (relative); ~1e-7 in the validated range


class LocalMeasure(NamedTuple):
    """Quadrature of the local spectral measures ``mu_k`` of C (one load).

    Attributes:
        sigma: population spectrum [d], sorted decreasing (the order of ``weight``'s columns).
        x: nodes > 0 on the continuous support [K].
        weight: ``int f dmu_k ~ sum_j weight[j, k] f(x_j) + atom[k] f(0)`` [K, d].
        atom: mass of ``mu_k`` at 0 [d] (0 for gamma >= 1).
        residual: worst relative error of the moments ``int dmu_k = 1``, ``int x dmu_k =
            sigma_k`` and of the secular equation (scalar).
    """

    sigma: jax.Array
    x: jax.Array
    weight: jax.Array
    atom: jax.Array
    residual: jax.Array


def _lift(s, t):
    """``s [d]`` shaped to broadcast against ``t[..., None]`` (strict rank promotion)."""
    return s.reshape((1,) * jnp.ndim(t) + s.shape)


def _psi2(t, s, c):
    """``c tau(sigma^2/(t - sigma)^2)`` at points ``t [...]``: < 1 exactly outside the support's pre-image."""
    s = _lift(s, t)
    return c * jnp.mean((s / (t[..., None] - s)) ** 2, axis=-1)


def _gl(n: int, dt):
    x, w = np.polynomial.legendre.leggauss(n)
    return jnp.asarray((x + 1) / 2, dt), jnp.asarray(w / 2, dt)  # on [0, 1]


def _graded(n: int, n_panels: int, ratio: float, dt):
    """Gauss-Legendre on [0, 1], panels graded geometrically toward 0 (then 3 equal ones)."""
    x, w = np.polynomial.legendre.leggauss(n)
    h = 0.25
    brk = np.concatenate([[0.0], h * ratio ** np.arange(n_panels - 1, 0, -1), h * np.arange(1, 5)])
    lo, hi = brk[:-1, None], brk[1:, None]
    s = (lo + (hi - lo) * (x[None] + 1) / 2).ravel()
    ws = ((hi - lo) * w[None] / 2).ravel()
    return jnp.asarray(s, dt), jnp.asarray(ws, dt)


def _toward(a, b, s, ws, quadratic):
    """Nodes/weights on ``[a, b]`` [P] from a rule ``(s, ws)`` on [0, 1]: ``u = b - (b - a)(1 - s)^2``
    where ``quadratic`` (a square-root edge at b becomes smooth), else linear. Returns [P * n]."""
    L = (b - a)[:, None]
    r = 1.0 - s[None, :]
    q = quadratic[:, None]
    u = jnp.where(q, b[:, None] - L * r**2, a[:, None] + L * s[None, :])
    om = jnp.where(q, 2.0 * L * r, L) * ws[None, :]
    return u.ravel(), om.ravel()


def _support(s, c, m_hard: int, iters: int = 60):
    """Pre-image of the support in u: outer edges and, per interval (s[k+1], s[k]), a split.

    Returns ``(u_left, u_right, lo, hi, e1, e2, gap, order)``: the interval k is
    ``[lo_k, hi_k]`` with support on ``[lo_k, e1_k]`` and ``[e2_k, hi_k]`` (``e1 = e2`` when it
    has no gap); ``order [d - 1]`` ranks the intervals by an upper bound of ``min psi2``
    (hardest first); gaps are searched in the first ``m_hard`` only.
    """
    r = jnp.sqrt(c * jnp.mean(s**2))  # psi2(u) <= 1 at |u - [s_min, s_max]| >= r
    u_right = bisect(lambda u: 1.0 - _psi2(u, s, c), s[0], s[0] + r, 2 * iters)
    u_left = bisect(lambda u: _psi2(u, s, c) - 1.0, jnp.minimum(-r, s[-1] - r), s[-1], 2 * iters)
    lo, hi = s[1:], s[:-1]
    tie = hi - lo <= 0
    # psi2 is convex on each interval; a cheap upper bound of its minimum ranks them: the
    # minimum of the two neighbours' terms, at (t - lo)/(hi - t) = (lo/hi)^(2/3)
    rho = jnp.where(tie, 1.0, (lo / hi) ** (2.0 / 3.0))
    t_star = jnp.where(tie, hi, (lo + rho * hi) / (1.0 + rho))
    proxy = jnp.where(tie, jnp.inf, _psi2(t_star, s, c))
    order = jnp.argsort(proxy)
    hard = order[:m_hard]
    lo_h, hi_h = lo[hard], hi[hard]
    tie_h = tie[hard]

    def dpsi2(t):  # increasing on the interval
        sl = _lift(s, t)
        return -jnp.mean((sl / (t[..., None] - sl)) ** 2 / (t[..., None] - sl), axis=-1)

    t_min = jnp.where(tie_h, hi_h, bisect(dpsi2, lo_h, hi_h, iters))
    gap = (_psi2(t_min, s, c) < 1.0) & ~tie_h
    g1 = bisect(lambda t: 1.0 - _psi2(t, s, c), lo_h, t_min, iters)
    g2 = bisect(lambda t: _psi2(t, s, c) - 1.0, t_min, hi_h, iters)
    e1 = t_star.at[hard].set(jnp.where(gap, g1, t_min))
    e2 = t_star.at[hard].set(jnp.where(gap, g2, t_min))
    gaps = jnp.zeros(lo.shape, bool).at[hard].set(gap)
    return u_left, u_right, lo, hi, e1, e2, gaps, order


def local_measure(sigma, gamma, tiers=((96, 12), (256, 4)), n_easy: int = 2, n_end: int = 8,
                  n_graded: int = 11, ratio: float = 0.2, iters: int = 12) -> LocalMeasure:
    """Quadrature of the deterministic-equivalent local spectral measures of ``C`` (module doc).

    Args:
        sigma: population spectrum [d] > 0 (any order; float64).
        gamma: load n/d > 0 (scalar).
        tiers: ``((m, n), ...)``: the next ``m`` intervals between consecutive population
            values, hardest first (gaps, near-gaps), get ``n`` Gauss-Legendre nodes on each
            side of their gap (or narrowest point); gaps are looked for in these only.
        n_easy: Gauss-Legendre nodes on each remaining interval (no gap, smooth density).
        n_end: nodes per panel of the outer panels (``n_graded + 3`` panels graded by
            ``ratio`` toward the lower edge, one toward the upper edge).
        iters: quasi-Newton steps of the secular equation (8 reach float64 in practice).

    Returns:
        ``LocalMeasure`` with ``K = sum_t 2 m_t n_t + (d - 1 - sum_t m_t) n_easy +
        (n_graded + 4) n_end`` nodes.
    """
    s = jnp.sort(jnp.asarray(sigma))[::-1]
    dt = s.dtype
    d = s.shape[0]
    c = 1.0 / jnp.asarray(gamma, dt)
    sizes, start = [], 0
    for m_t, n_t in tiers:
        m_t = max(0, min(int(m_t), d - 1 - start))
        sizes.append((start, m_t, int(n_t)))
        start += m_t
    u_left, u_right, lo, hi, e1, e2, gap, order = _support(s, c, start)

    us, oms = [], []
    # tiers: [lo, e1] and [e2, hi], mapped quadratically toward e1 / e2 (a gap's square-root
    # edges, or a near-gap's narrowest point, where v ~ sqrt(eps + (u - t_min)^2))
    for a, m_t, n_t in sizes:
        if m_t == 0:
            continue
        idx = order[a:a + m_t]
        sg, wg = _gl(n_t, dt)
        yes = jnp.ones(m_t, bool)
        u, om = _toward(lo[idx], e1[idx], sg, wg, yes)
        us.append(u), oms.append(om)
        u, om = _toward(-hi[idx], -e2[idx], sg, wg, yes)  # mirrored: toward e2
        us.append(-u), oms.append(om)
    if d - 1 - start > 0:  # easy intervals (no gap, v >> width): Gauss-Legendre on the whole interval
        idx = order[start:]
        sg, wg = _gl(n_easy, dt)
        u, om = _toward(lo[idx], hi[idx], sg, wg, jnp.zeros(d - 1 - start, bool))
        us.append(u), oms.append(om)
    sg, wg = _gl(n_end, dt)
    u, om = _toward(s[:1], u_right[None], sg, wg, jnp.ones(1, bool))
    us.append(u), oms.append(om)
    sg, wg = _graded(n_end, n_graded, ratio, dt)
    sg = 1.0 - sg  # graded toward s = 1, the lower edge
    u, om = _toward(-s[-1:], -u_left[None], sg, wg, jnp.ones(1, bool))
    us.append(-u), oms.append(om)
    u, om = jnp.concatenate(us), jnp.concatenate(oms)

    # v^2 = w: root of S(w) = c tau(sigma^2/((u - sigma)^2 + w)) = 1 by Newton on 1/S (concave,
    # increasing: monotone from the lower bound max_k (c/d) sigma_k^2 - (u - sigma_k)^2). S' by
    # a relative difference 1e-7 in the same fused reduction (one pass over [K, d] per step;
    # a second reduction would materialise the [K, d] denominators): a quasi-Newton step
    # whose error contracts by ~1e-7 per step once close.
    s2 = s**2
    D0 = (u[:, None] - s[None, :]) ** 2
    w_lb = jnp.maximum(0.0, jnp.max(c / d * s2[None, :] - D0, axis=-1))
    inside = (w_lb > 0) | (c * jnp.mean(s2[None, :] / jnp.maximum(D0, jnp.finfo(dt).tiny), axis=-1) > 1.0)
    d_min = jnp.min(D0, axis=-1) + jnp.finfo(dt).tiny / jnp.finfo(dt).eps  # nearest pole's scale

    def secular(w2):  # S at w2 [K, p] -> [K, p]
        den = (u[:, None, None] - s[None, None, :]) ** 2 + w2[:, :, None]
        return c * jnp.mean(s2[None, None, :] / den, axis=-1)

    def newton(_, w):
        h = 1e-7 * (w + d_min)
        S2 = secular(jnp.stack([w, w + h], axis=-1))
        S, T = S2[:, 0], (S2[:, 0] - S2[:, 1]) / h
        step = jnp.where(T > 0, S * (S - 1.0) / jnp.where(T > 0, T, 1.0), 0.0)
        return jnp.where(inside, jnp.maximum(w + step, 0.0), 0.0)

    w = jax.lax.fori_loop(0, iters, newton, w_lb)
    dd = u[:, None] - s[None, :]
    Dw = D0 + w[:, None]
    res_w = jnp.max(jnp.where(inside, jnp.abs(c * jnp.mean(s2[None, :] / Dw, axis=-1) - 1.0), 0.0))
    A = c * jnp.mean(s2[None, :] / Dw**2, axis=-1)
    B = c * jnp.mean(s2[None, :] * dd / Dw**2, axis=-1)
    # x = u + c tau(sigma) + c tau(sigma^2 (u - sigma)/D), written without the cancellation at
    # the lower edge 0 of gamma = 1: u (1 + c tau(sigma (u - sigma)/D)) + w c tau(sigma/D)
    x = u * (1.0 + c * jnp.mean(s[None, :] * dd / Dw, axis=-1)) + w * c * jnp.mean(s[None, :] / Dw, axis=-1)
    xp = 1.0 + c * jnp.mean(s2[None, :] * (w[:, None] - D0) / Dw**2, axis=-1) + 2.0 * B**2 / A
    live = inside & (w > 0) & (x > 0)
    dens = jnp.where(live, om * xp * jnp.sqrt(w) / (jnp.pi * jnp.where(live, x, 1.0)), 0.0)
    weight = dens[:, None] * s[None, :] / Dw
    x = jnp.where(live, x, jnp.maximum(x, 0.0))

    # atom at 0 (c > 1): 1/(1 + m0 sigma_k), c tau(m0 sigma/(1 + m0 sigma)) = 1
    def h(lm):
        e = jnp.exp(lm) * s
        return c * jnp.mean(e / (1.0 + e)) - 1.0

    lm0 = bisect(h, jnp.log(1e-30 / s[0]), jnp.log(1e30 / s[-1]), 240)
    atom = jnp.where(c > 1.0, 1.0 / (1.0 + jnp.exp(lm0) * s), 0.0)
    mass = jnp.sum(weight, axis=0) + atom
    mean = jnp.sum(weight * x[:, None], axis=0)
    residual = jnp.maximum(jnp.max(jnp.abs(mass - 1.0)), jnp.max(jnp.abs(mean / s - 1.0)))
    return LocalMeasure(s, x, weight, atom, jnp.maximum(residual, res_w))


def _div(r):
    """``r - 1 - log r`` >= 0 elementwise (+inf at r = 0 or inf)."""
    ok = (r > 0) & jnp.isfinite(r)
    rs = jnp.where(ok, r, 1.0)
    return jnp.where(ok, (rs - 1.0) - jnp.log(rs), jnp.inf)


def point_values(G, gamma, sigma, noise_axis: bool = False, **quad) -> dict:
    """q, q_trace, kl, kl_rev and the quadrature residual of a spectral model at one load.

    Args:
        G: the gain, ``G(l)`` for eigenvalues ``l [K]`` (>= 0) -> ``S + (K,)`` (S: any batch
            axes, e.g. a ridge grid), or ``(J,) + S + (K,)`` with ``noise_axis``.
        gamma: load n/d (scalar).
        sigma: population spectrum [d] (float64).
        noise_axis: the gain's first axis indexes J independent noises (``x = sum_j G_j(C) z_j``).
        **quad: options of ``local_measure``.

    Returns:
        dict of arrays of shape S: ``q``, ``q_trace``, ``kl``, ``kl_rev``, ``residual`` (broadcast).
    """
    meas = local_measure(sigma, gamma, **quad)
    s, x, W, atom = meas.sigma, meas.x, meas.weight, meas.atom
    dt = s.dtype
    g = jnp.asarray(G(jnp.concatenate([x, jnp.zeros((1,), dt)])), dt)
    if not noise_axis:
        g = g[None]
    lift = lambda a: a.reshape((1,) * (g.ndim - 2) + a.shape)  # noqa: E731  [d] or [K] -> S + (.)
    gx, g0 = g[..., :-1], g[..., -1:]
    F = gx @ W + g0 * lift(atom)[None]  # [J, *S, d]
    P = jnp.sum(F**2, axis=0)  # coherent part of the numerator, [*S, d]
    k2x, k20 = jnp.sum(gx**2, axis=0), jnp.sum(g0**2, axis=0)  # the law's variance K = sum_j G_j^2
    H = k2x @ W + k20 * lift(atom)
    bshape = P.shape[:-1]
    q = jax.vmap(ratio_expectation)(P.reshape(-1, P.shape[-1]), H.reshape(-1, H.shape[-1])).reshape(bshape)
    q_trace = jnp.mean(P, axis=-1) / jnp.mean(H, axis=-1)

    # KL/d = (1/2) mean_k int div(K/sigma_k) dmu_k, expanded into matrix-vector products (an
    # identity for the quadrature measure: no cancellation beyond rounding), atoms apart
    node = lift(jnp.mean(W, axis=1))  # [K]: mean_k weight
    live = node > 0
    zero = jnp.any(live & (k2x <= 0), axis=-1)  # K(C) singular on the continuous support
    kpos = jnp.where(live & (k2x > 0), k2x, 1.0)
    log_mean = jnp.sum(node * jnp.log(kpos), axis=-1)  # mean_k int log K dmu_k (continuous part)
    cont = jnp.mean(jnp.sum(W, axis=0))
    lm = jnp.mean(jnp.sum(W, axis=0) * jnp.log(s))
    sl, al = lift(s), lift(atom)
    a_fwd = jnp.mean(jnp.where(al > 0, al * _div(k20 / sl), 0.0), axis=-1)
    a_rev = jnp.mean(jnp.where(al > 0, al * _div(sl / k20), 0.0), axis=-1)
    kl = 0.5 * (jnp.mean((k2x @ W) / sl, axis=-1) - cont - log_mean + lm + a_fwd)
    kl_rev = 0.5 * (jnp.mean(sl * ((1.0 / kpos) @ W), axis=-1) - cont + log_mean - lm + a_rev)
    kl = jnp.where(zero, jnp.inf, kl)
    kl_rev = jnp.where(zero, jnp.inf, kl_rev)
    # gamma = 1 with K(0) = 0: int K^-1 dmu diverges (density ~ x^(-1/2)); quadrature would not say so
    kl_rev = jnp.where((jnp.asarray(gamma, dt) == 1.0) & (k20[..., 0] == 0), jnp.inf, kl_rev)
    return {"q": q, "q_trace": q_trace, "kl": kl, "kl_rev": kl_rev,
            "residual": jnp.broadcast_to(meas.residual, bshape)}


def values(G, gamma, sigma, noise_axis: bool = False, **quad) -> dict:
    """``point_values`` over loads ``gamma`` (scalar or [G]) -> dict of ``gamma.shape + S`` arrays.

    Example (a DDIM sampler on a power law, a ridge grid batched inside the gain; ``gains.gain``
    returns the stack ``[J, ...]`` of a model's noises)::

        model = memgen.LinearDiffusion(sampler="ddim", steps=10)
        lam = jnp.asarray([0.0, 0.1])
        G = lambda l: gains.gain(l, lam[:, None], model)  # [J = 1, 2, K]
        out = values(G, jnp.asarray([0.5, 2.0]), powerlaw_spectrum(jnp.asarray(1.0), 1000), noise_axis=True)
        out["q"]  # [2 gammas, 2 lams]
    """
    sigma = jnp.asarray(sigma)
    gamma = jnp.asarray(gamma, sigma.dtype)
    out = jax.lax.map(lambda g: point_values(G, g, sigma, noise_axis, **quad), gamma.reshape(-1))
    return {k: v.reshape(gamma.shape + v.shape[1:]) for k, v in out.items()}


def check_residual(residual, what: str = "anisotropic local measure") -> None:
    """Raise ``RuntimeError`` where the quadrature residual (host array) exceeds ``RESIDUAL_TOL``."""
    r = np.asarray(residual)
    bad = ~(r <= RESIDUAL_TOL)
    if bad.any():
        raise RuntimeError(
            f"{what}: quadrature residual {np.nanmax(np.where(np.isnan(r), np.inf, r)):.3g} "
            f"> {RESIDUAL_TOL:g} "
            f"at {int(bad.sum())} of {r.size} points (more gaps than the tiers hold? enlarge tiers)"
        )


__all__ = ["LocalMeasure", "local_measure", "point_values", "values", "check_residual", "RESIDUAL_TOL"]
