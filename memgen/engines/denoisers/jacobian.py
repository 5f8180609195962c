"""Latent recovery read off the denoiser itself: the top eigenvectors of its mean Jacobian.

Kadkhodaie et al. (ICLR 2024) analyse a denoiser D through its Jacobian dD/dy: for the
optimal denoiser of a Gaussian it is ``Sigma (Sigma + sigma^2 I)^-1`` at every input, whose top
eigenvectors are the truth's principal directions whatever sigma. So the model's estimate of
the latent subspace is the top-k eigenspace of

    A = (1/B) sum_i (J(y_i) + J(y_i)^T) / 2,     y_i = x_i + sigma e_i  (held-out images),

symmetrised because only the symmetric part has real eigenvectors (it is all of J for an
MMSE denoiser, a gradient field). A is applied matrix-free (one JVP and one VJP per input
and vector) and ``linalg.top_eigh_matfree`` (block Lanczos) finds its top eigenvectors in
``2 B blocks b`` network passes; a d x d Jacobian is never formed.

Unlike Q of generated samples, this Q does not sit at a sample-count floor: a model that
knew the truth scores 1 up to the solver's convergence (the Wiener filter through the same
procedure: ``Q_jac_heldout``).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from ... import linalg

BLOCKS = 6  # Krylov depth, with b = k + OVERSAMPLE starting vectors (tests/test_jacobian.py: 1 - Q < 1e-5
# at sigma = 1, the default jacobian_sigma, and < 1e-3 at sigma = 0.5, where the gains' gap is small)
OVERSAMPLE = 4


def mean_jacobian(f: Callable, ys: jax.Array) -> Callable:
    """The symmetrised mean Jacobian of ``f: [d] -> [d]`` over inputs ``ys`` [B, d], as ``[d, b] -> [d, b]``."""

    def at(y, V):
        _, vjp = jax.vjp(f, y)
        JV = jax.vmap(lambda v: jax.jvp(f, (y,), (v,))[1], in_axes=1, out_axes=1)(V)
        JTV = jax.vmap(lambda v: vjp(v)[0], in_axes=1, out_axes=1)(V)
        return (JV + JTV) / 2

    def matvec(V):
        total = jax.lax.fori_loop(0, ys.shape[0], lambda i, acc: acc + at(ys[i], V), jnp.zeros_like(V))
        return total / ys.shape[0]

    return matvec


def wiener(pop_u: jax.Array, pop_s: jax.Array, sigma) -> Callable:
    """The Jacobian of the population Wiener filter ``U diag(s / (s + sigma^2)) U^T`` as a matvec."""
    w = pop_s / (pop_s + sigma**2)
    return lambda V: pop_u @ (w[:, None] * (pop_u.T @ V))


def top_subspace(matvec: Callable, key: jax.Array, d: int, k: int, dtype) -> jax.Array:
    """Top-k eigenvectors [d, k] of a symmetric ``matvec`` from a random start drawn from ``key``."""
    V0 = jax.random.normal(key, (d, k + OVERSAMPLE), dtype)
    return linalg.top_eigh_matfree(lambda V: matvec(V.T).T, V0.T, k, BLOCKS)[1]
