"""Theory of spectral models x = G(C) z (lineardiff.md §3): renormalised noise and MP integrals of a gain.

Contract: pure, broadcasting ``jnp`` functions; the dtype follows the inputs (callers run
them in float64, see ``theory.theory``).

* ``kappa``: Silverstein's renormalised noise, ``kappa - z = (1/gamma) kappa tau(Sigma (Sigma + kappa)^-1)``,
  so that ``E (C + z)^-1 ~ (kappa/z) (Sigma + kappa)^-1``; closed form for isotropic Sigma.
* Isotropic population (Sigma = I; a finite-rank spike moves these by O(1/d)): with ``G`` the
  model's gain and ``E`` the Marchenko-Pastur average (its atom ``(1 - gamma) G(0)`` included),
  ``q = (E G)^2 / E G^2`` (two independent Wisharts are asymptotically free),
  ``W2^2/d = 1 + E G^2 - 2 E |G|``, ``KL(model || truth)/d = E[G^2 - 1 - log G^2]/2`` and
  ``KL(truth || model)/d = E[G^-2 - 1 + log G^2]/2`` (+inf when the atom meets G(0) = 0).
  A stochastic sampler (ddpm: ``x = sum_j G_j(C) z_j``, J independent noises shared by the
  pair) has ``q = sum_j (E G_j)^2 / sum_j E G_j^2`` and the law's variance ``v = sum_j G_j^2``
  in place of ``G^2``.
* Centred denoisers (``LinearDiffusion.centre``) on zero-mean data: the same to leading order.
  Centring moves C by a rank-one term (the MP law is unchanged) and adds the mean
  ``(I - g(C)) mu_hat``, ``|mu_hat|^2 ~ d/n``: O(1/n) in q and KL/d. The exception is the
  singular edge n = d with G(0) = 0 (Wiener at lam = 0): the centred C has rank d - 1, so the
  simulated KLs are +inf where the theory's are finite.
* ``Q`` and the top eigenvalue are properties of C alone: BBP (``spiked``) for any monotone gain.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .mp import as_float, mp_atom, mp_nodes


def kappa_isotropic(z, gamma):
    """Renormalised noise for Sigma = I: the root > 0 of ``kappa^2 + (1 - z - 1/gamma) kappa - z = 0``.

    Args:
        z: ridge >= 0; gamma: load n/d > 0 (broadcasting).

    Returns:
        kappa, broadcast shape (``max(0, 1 - gamma)``-like at z = 0: 0 for gamma >= 1,
        ``1/gamma - 1`` for gamma < 1).
    """
    z, gamma = jnp.broadcast_arrays(as_float(z), as_float(gamma))
    b = 1 - z - 1 / gamma
    return (-b + jnp.sqrt(b * b + 4 * z)) / 2


def kappa(z, gamma, sigma, iters: int = 200):
    """Renormalised noise for a population spectrum ``sigma [d]`` (bisection in log kappa).

    Solves ``h(kappa) = kappa (1 - tau(sigma / (sigma + kappa)) / gamma) - z = 0``; h < 0 at
    kappa -> 0 and its positive root is unique (h increases wherever it is positive).

    Args:
        z: ridge >= 0, shape ``[...]``; gamma: load n/d > 0 (broadcasting with z).
        sigma: population eigenvalues [d] > 0.
        iters: bisection steps (200 reach float64 resolution on [1e-30, 1e30]).

    Returns:
        kappa >= 0, broadcast shape of z and gamma (0 where ``z = 0`` and ``gamma >= 1``).
    """
    z, gamma = jnp.broadcast_arrays(as_float(z), as_float(gamma))
    sigma = jnp.asarray(sigma, z.dtype)
    scale = jnp.maximum(jnp.max(sigma), jnp.max(z, initial=0.0))
    lo = jnp.full(z.shape, jnp.log(1e-30 * scale))
    hi = jnp.full(z.shape, jnp.log(1e30 * scale))

    sig = sigma.reshape((1,) * z.ndim + sigma.shape)

    def h(logk):
        k = jnp.exp(logk)
        t = jnp.mean(sig / (sig + k[..., None]), axis=-1)
        return k * (1 - t / gamma) - z

    def body(_, bounds):
        lo, hi = bounds
        mid = (lo + hi) / 2
        neg = h(mid) < 0
        return jnp.where(neg, mid, lo), jnp.where(neg, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iters, body, (lo, hi))
    k = jnp.exp((lo + hi) / 2)
    return jnp.where((z == 0) & (gamma >= 1), 0.0, k)


def spectral_values(G, gamma, **quad) -> dict:
    """Isotropic-population theory of a spectral model: q, w2, kl, kl_rev (module doc).

    A stochastic sampler (ddpm) draws J independent noises, ``x = sum_j G_j(C) z_j``, the two
    models of a pair sharing all of them: then ``q = sum_j (E G_j)^2 / sum_j E G_j^2`` (each
    noise's cross term is free like a deterministic gain's) and the law is
    ``N(0, v(C))``, ``v = sum_j G_j^2``, for w2 and the KLs. A deterministic gain is J = 1.
    A coarse sampler's gain may change sign (Heun with few steps): q uses G itself, the law
    only ``v``. The KLs integrate ``u - 1 - log u >= 0`` (u = v or 1/v), never a difference of
    large moments, so a model close to the truth keeps its digits.

    Args:
        G: the gain as a function of eigenvalues ``s [..., K]`` (``gamma[..., None]``'s shape;
            G may broadcast its singleton axes but adds no axis but an optional leading noise
            axis): shape ``s.shape`` (J = 1), or ``(J,) + s.shape`` for a gain stack; e.g.
            ``lambda s: gains.gain(s, c[..., None], model)``.
        gamma: load n/d, shape ``[...]``.
        **quad: ``n_nodes`` / ``n_panels`` of ``mp_expect``.

    Returns:
        dict of arrays with the broadcast shape of ``gamma`` and what ``G`` broadcasts.
    """
    gamma = as_float(gamma)
    s, w = mp_nodes(gamma, **quad)  # one quadrature (mp_expect's) for every moment below
    atom = mp_atom(gamma)

    def stack(x):  # [J, ...] whatever G returns
        out = G(x)
        return out if out.ndim > x.ndim else out[None]

    def expect(bulk, zero):  # E over the MP law of values at the nodes [(J,) ..., K] and at 0 [(J,) ...]
        lead = (1,) * (bulk.ndim - w.ndim)  # the noise axis, if any (strict rank promotion)
        a = atom.reshape(lead + atom.shape)
        return jnp.sum(w.reshape(lead + w.shape) * bulk, axis=-1) + jnp.where(a > 0, a * zero, 0.0)

    def div(u):  # u - 1 - log u, +inf at u = 0 or inf
        return jnp.where((u > 0) & jnp.isfinite(u), u - 1 - jnp.log(jnp.where(u > 0, u, 1)), jnp.inf)

    g, g0 = stack(s), stack(jnp.zeros_like(s[..., :1]))[..., 0]  # [J, ..., K], [J, ...]
    v, v0 = jnp.sum(g**2, axis=0), jnp.sum(g0**2, axis=0)  # the law's variance sum_j G_j^2
    m1 = expect(g, g0)  # [J, ...]
    m2 = expect(v, v0)
    a1 = expect(jnp.sqrt(v), jnp.sqrt(v0))
    kl = expect(div(v), div(v0)) / 2
    kl_rev = expect(div(1 / v), div(1 / v0)) / 2
    # at gamma = 1 with v(0) = 0 the MP density ~ s^-1/2 makes the integral of 1/v ~ 1/s
    # diverge (quadrature would return a large finite number)
    kl_rev = jnp.where((gamma == 1) & (v0 == 0), jnp.inf, kl_rev)
    return {"q": jnp.sum(m1**2, axis=0) / m2, "w2": 1 + m2 - 2 * a1, "kl": kl, "kl_rev": kl_rev}


def kl_exact_generator(gamma):
    """KL(N(0, C) || N(0, I))/d of the exact generator at gamma = N/d >= 1: ``(1 + ((1-c)/c) ln(1-c))/2``, c = 1/gamma.

    About ``1/(4 gamma)`` at large gamma; 1/2 at gamma = 1; +inf for gamma < 1 (C singular).
    """
    c = 1 / as_float(gamma)
    safe = jnp.where(c < 1, c, 0.5)
    return jnp.where(c < 1, (1 + (1 - safe) / safe * jnp.log1p(-safe)) / 2, jnp.where(c == 1, 0.5, jnp.inf))


__all__ = ["kappa_isotropic", "kappa", "spectral_values", "kl_exact_generator"]
