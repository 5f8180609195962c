"""Spiked covariance ``Sigma = I + sum_k beta_k v_k v_k^T``: q, bulk W2, BBP overlaps.

Contract: pure ``jnp`` closed forms and quadratures, broadcasting over arrays of
``gamma``, ``lam`` and ``beta`` (strict rank promotion: give arrays of equal rank, e.g.
``gamma[:, None]`` and ``lam[None, :]``). The dtype follows the inputs. Nothing is jitted
here; everything is ``jax.jit``-able.

Limits d, n -> infinity at fixed ``gamma = n/d`` (theory.md §4). A finite number of
spikes does not move ``q`` or the per-dimension ``W2^2/d``; they only create outliers.

References:
    Marchenko & Pastur (1967); Baik, Ben Arous & Péché (2005), Ann. Probab. 33;
    Paul (2007), Statistica Sinica 17; Benaych-Georges & Nadakuditi (2011), Adv. Math. 227.
"""

from __future__ import annotations

import jax.numpy as jnp

from .mp import float_dtype, as_float, mp_edges, mp_expect


def _pair(gamma, lam):
    dt = float_dtype(gamma, lam)
    return as_float(gamma, dt), as_float(lam, dt)


def sqrt_moment(gamma, lam, n_nodes: int = 20, n_panels: int = 11):
    """``I(gamma, lam) = E_{s ~ mu_gamma} sqrt(s + lam)`` (= ``tau((C + lam)^(1/2))``).

    Args:
        gamma: load n/d, shape broadcastable with ``lam`` (same rank).
        lam: regularisation >= 0.
        n_nodes, n_panels: quadrature size, see ``mp.mp_expect``.

    Returns:
        ``I`` with the broadcast shape of ``gamma`` and ``lam``.
    """
    gamma, lam = _pair(gamma, lam)
    shape = jnp.broadcast_shapes(gamma.shape, lam.shape)
    gamma = jnp.broadcast_to(gamma, shape)
    lam = jnp.broadcast_to(lam, shape)
    return mp_expect(lambda s: jnp.sqrt(s + lam[..., None]), gamma, n_nodes, n_panels)


def convergence(gamma, lam, **quad):
    """Convergence ``q(gamma, lam) = I^2 / (1 + lam)`` of two models on disjoint data.

    Independent Wishart matrices are asymptotically free, so
    ``tau(G_1 G_2) -> tau(G)^2 = I^2`` while ``tau(G^2) = tau(C) + lam -> 1 + lam``; the
    cosine of ``G_1 z`` and ``G_2 z`` concentrates on their ratio.

    Args:
        gamma: load n/d.
        lam: regularisation >= 0 (same rank as ``gamma``).
        **quad: ``n_nodes`` / ``n_panels`` passed to ``mp_expect``.

    Returns:
        ``q`` in [0, 1], broadcast shape.
    """
    gamma, lam = _pair(gamma, lam)
    i = sqrt_moment(gamma, lam, **quad)
    return i**2 / (1.0 + lam)


def bulk_w2(gamma, lam, **quad):
    """Per-dimension ``W2^2 / d`` between ``N(0, I)`` and ``N(0, C + lam I)``: ``2 + lam - 2 I``.

    Args:
        gamma: load n/d.
        lam: regularisation >= 0 (same rank as ``gamma``).
        **quad: quadrature size, see ``mp_expect``.

    Returns:
        ``W2^2/d``, broadcast shape.
    """
    gamma, lam = _pair(gamma, lam)
    return 2.0 + lam - 2.0 * sqrt_moment(gamma, lam, **quad)


def bbp_threshold(beta):
    """Critical load ``gamma_c = 1 / beta^2`` of the BBP transition."""
    beta = as_float(beta)
    return 1.0 / beta**2


def bbp_overlap(gamma, beta):
    """Squared overlap ``|<u_top, v>|^2`` of one spike of strength ``beta``.

    ``Q = (1 - 1/(gamma beta^2)) / (1 + 1/(gamma beta))`` for ``gamma beta^2 > 1``, else 0.

    Args:
        gamma: load n/d.
        beta: spike strength > 0 (same rank as ``gamma``).

    Returns:
        ``Q`` in [0, 1), broadcast shape.
    """
    gamma, beta = _pair(gamma, beta)
    x = gamma * beta**2
    val = (1.0 - 1.0 / x) / (1.0 + 1.0 / (gamma * beta))
    return jnp.where(x > 1.0, val, 0.0)


def outlier_eigenvalue(gamma, beta):
    """Limit of the eigenvalue of C attached to a spike: ``(1 + beta)(1 + 1/(gamma beta))``
    above the threshold, else the bulk edge ``b = (1 + sqrt(1/gamma))^2``."""
    gamma, beta = _pair(gamma, beta)
    above = gamma * beta**2 > 1.0
    _, b = mp_edges(gamma)
    return jnp.where(above, (1.0 + beta) * (1.0 + 1.0 / (gamma * beta)), b)


def _with_spikes(gamma, betas):
    dt = float_dtype(gamma, betas)
    gamma, betas = as_float(gamma, dt), as_float(betas, dt)
    batch = jnp.broadcast_shapes(gamma.shape, betas.shape[:-1])
    g = jnp.broadcast_to(gamma, batch)[..., None]
    bt = jnp.broadcast_to(betas, batch + betas.shape[-1:])
    return g, bt


def latent_overlap(gamma, betas):
    """Latent recovery ``Q = (1/k) ||Vhat_k^T V_k||_F^2`` for k spikes.

    Asymptotically the k outlier eigenvectors each carry their own spike's BBP overlap
    and are orthogonal to the other spikes (cross terms vanish; equal strengths only
    rotate within the spike subspace, which leaves the projections unchanged), so Q is
    the mean of the per-spike overlaps. A spike below threshold contributes 0.

    Args:
        gamma: load n/d, shape ``[...]``.
        betas: spike strengths ``[..., k]`` (leading axes broadcast with ``gamma``).

    Returns:
        ``Q``, shape ``[...]``.
    """
    g, bt = _with_spikes(gamma, betas)
    return jnp.mean(bbp_overlap(g, bt), axis=-1)


def top_eigenvalue(gamma, betas):
    """Limit of the largest eigenvalue of C for spikes ``betas [..., k]`` (shape ``[...]``)."""
    g, bt = _with_spikes(gamma, betas)
    return jnp.max(outlier_eigenvalue(g, bt), axis=-1)


__all__ = [
    "sqrt_moment",
    "convergence",
    "bulk_w2",
    "bbp_threshold",
    "bbp_overlap",
    "outlier_eigenvalue",
    "latent_overlap",
    "top_eigenvalue",
]
