"""Marchenko–Pastur law of ``C = X^T X / n`` for white data, and integrals against it.

Contract: pure ``jnp`` functions that broadcast over arrays of the load ``gamma = n/d``;
the dtype follows the inputs (float32 in, float32 out). Nothing here is jitted; callers
may ``jax.jit`` any of them (``mp_expect`` with ``f`` closed over or static).

The law ``mu_gamma`` (ratio ``c = 1/gamma = d/n``) has edges ``a, b = (1 -+ sqrt(c))^2``,
density ``sqrt((b - s)(s - a)) / (2 pi c s)`` on ``[a, b]`` and an atom ``(1 - gamma)_+``
at 0 (theory.md §4).

``mp_expect`` integrates with the substitution ``s = a + (b - a)(1 - cos t)/2``, which
removes the square-root edge singularities (the density times ``ds`` becomes
``(b - a)^2 sin(t)^2 / (8 pi c s) dt``), followed by Gauss–Legendre panels on
``t in [0, pi]`` that are graded geometrically towards ``t = 0``. The grading matters
near ``gamma = 1``: there ``a -> 0`` and the ``1/s`` factor (and ``sqrt(s + lam)`` at
``lam = 0``) has complex singularities at distance ``~ sqrt(a)`` from ``t = 0``.
With the defaults the relative error is below 1e-10 for analytic ``f`` for every
``gamma`` tested in ``tests/test_theory.py`` (including ``|gamma - 1| = 1e-6``).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax.numpy as jnp
import numpy as np


def float_dtype(*xs):
    """Common floating dtype of the inputs (float32/float64), default float if none is."""
    dts = [jnp.asarray(x).dtype for x in xs]
    fl = [d for d in dts if jnp.issubdtype(d, jnp.floating)]
    if fl:
        return jnp.result_type(*fl)
    return jnp.result_type(float)


def as_float(x, dtype=None):
    """``x`` as a floating array (its own float dtype, or the default float dtype)."""
    x = jnp.asarray(x)
    if dtype is None:
        dtype = float_dtype(x)
    return x.astype(dtype)


def mp_edges(gamma):
    """Edges ``(a, b) = ((1 - sqrt(1/gamma))^2, (1 + sqrt(1/gamma))^2)`` of the MP bulk.

    Args:
        gamma: load n/d > 0, any shape.

    Returns:
        ``(a, b)``, each with the shape and dtype of ``gamma``.
    """
    gamma = as_float(gamma)
    r = jnp.sqrt(1.0 / gamma)
    return (1.0 - r) ** 2, (1.0 + r) ** 2


def mp_atom(gamma):
    """Mass ``(1 - gamma)_+`` of the atom at zero (the ``d - n`` null directions of C)."""
    gamma = as_float(gamma)
    return jnp.maximum(1.0 - gamma, 0.0)


def mp_density(s, gamma):
    """Density of the continuous part of ``mu_gamma`` (zero outside ``[a, b]``).

    Args:
        s: points, broadcastable against ``gamma`` (same rank; rank promotion is strict).
        gamma: load n/d.

    Returns:
        ``sqrt((b - s)(s - a)) / (2 pi c s)`` with ``c = 1/gamma``; it integrates to
        ``min(gamma, 1)``.
    """
    gamma = as_float(gamma)
    s = as_float(s, gamma.dtype)
    a, b = mp_edges(gamma)
    c = 1.0 / gamma
    inside = (s > a) & (s < b)
    prod = jnp.where(inside, (b - s) * (s - a), 0.0)
    s_safe = jnp.where(inside, s, 1.0)
    return jnp.where(inside, jnp.sqrt(prod) / (2.0 * jnp.pi * c * s_safe), 0.0)


@functools.lru_cache(maxsize=32)
def _graded_nodes(n_nodes: int, n_panels: int, ratio: float, n_uniform: int):
    """Gauss–Legendre nodes/weights on [0, pi]: ``n_uniform`` equal panels, the first of
    which is split into ``n_panels`` panels graded geometrically (ratio) towards t = 0."""
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    h = np.pi / n_uniform
    brk = np.concatenate([[0.0], h * ratio ** np.arange(n_panels - 1, 0, -1), h * np.arange(1, n_uniform + 1)])
    ts, ws = [], []
    for lo, hi in zip(brk[:-1], brk[1:]):
        ts.append(lo + (hi - lo) * (x + 1.0) / 2.0)
        ws.append(w * (hi - lo) / 2.0)
    return np.concatenate(ts), np.concatenate(ws)


def mp_nodes(gamma, n_nodes: int = 20, n_panels: int = 11, ratio: float = 0.2, n_uniform: int = 6):
    """Quadrature nodes and weights for ``mu_gamma`` (continuous part only).

    Args:
        gamma: load n/d, shape ``[...]``.
        n_nodes: Gauss–Legendre nodes per panel.
        n_panels: number of graded panels in ``[0, pi/n_uniform]`` (towards ``t = 0``).
        ratio: geometric grading ratio of the panels.
        n_uniform: equal panels on ``[0, pi]`` (resolve oscillatory ``f`` in the bulk).

    Returns:
        ``(s, w)``, each ``[..., n_nodes * n_panels]``: ``sum(w * f(s), -1)`` approximates
        the integral of ``f`` against the continuous part of ``mu_gamma``.
    """
    gamma = as_float(gamma)
    t_np, w_np = _graded_nodes(int(n_nodes), int(n_panels), float(ratio), int(n_uniform))
    lead = (1,) * gamma.ndim  # explicit ranks (strict rank promotion)
    t = jnp.asarray(t_np, dtype=gamma.dtype).reshape(lead + (-1,))
    wt = jnp.asarray(w_np, dtype=gamma.dtype).reshape(lead + (-1,))
    a, b = mp_edges(gamma)
    a, b = a[..., None], b[..., None]
    c = 1.0 / gamma[..., None]
    half = jnp.sin(0.5 * t) ** 2  # (1 - cos t)/2 without cancellation at small t
    s = a + (b - a) * half
    # density * ds/dt = (b-a)^2 sin^2 t / (8 pi c s); at gamma = 1, a = 0 and
    # sin^2 t / s = 4 cos^2(t/2) / b, so write it without the 0/0.
    cos2 = jnp.cos(0.5 * t) ** 2
    # (b-a)^2 sin^2 t = 4 (b-a)^2 half*cos2 ; s = a + (b-a) half
    w = (b - a) ** 2 * half * cos2 / (2.0 * jnp.pi * c * s) * wt
    return s, w


def mp_expect(f: Callable, gamma, n_nodes: int = 20, n_panels: int = 11):
    """``E_{s ~ mu_gamma} f(s)``, the atom at zero included.

    Args:
        f: function of eigenvalues ``s [..., K]`` (``K`` quadrature nodes on the last
            axis; shapes as ``gamma[..., None]``), returning values that broadcast to
            ``[..., K]`` or more (e.g. ``lambda s: jnp.sqrt(s + lam[None, :, None])``
            with ``gamma`` of shape ``[G, 1]``). It is also called once on zeros of
            shape ``[..., 1]`` for the atom.
        gamma: load n/d, shape ``[...]``.
        n_nodes: Gauss–Legendre nodes per panel (320 nodes in all by default).
        n_panels: graded panels near ``t = 0`` (see ``mp_nodes``).

    Returns:
        The integral, shape ``[...]`` broadcast with what ``f`` returns (minus the node
        axis), dtype of ``gamma``.
    """
    gamma = as_float(gamma)
    s, w = mp_nodes(gamma, n_nodes, n_panels)
    bulk = jnp.sum(w * f(s), axis=-1)
    atom = mp_atom(gamma)
    f0 = f(jnp.zeros_like(s[..., :1]))[..., 0]
    return bulk + jnp.where(atom > 0, atom * f0, 0.0)


__all__ = ["mp_edges", "mp_atom", "mp_density", "mp_nodes", "mp_expect", "as_float"]
