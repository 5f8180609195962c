"""Gaussian data with a low-rank spike or a power-law spectrum, sampled without dense Sigma.

Contract: pure functions for ONE grid point; no jit, no vmap (``memgen.run`` batches).
The swept numbers (spike strengths beta, exponent alpha) enter as traced arrays, so a new
sweep does not recompile; shapes (d, rank, n_rows) are static.

Sampling uses the sum-of-independent-Gaussians form of
``Sigma = diag(sigma) + V diag(beta) V^T``:
``x = sqrt(sigma) * g + V (sqrt(beta) * h)``, ``g ~ N(0, I_d)``, ``h ~ N(0, I_r)``,
which costs O(d r) per sample and never forms Sigma. Spiked data is the case sigma = 1;
Isotropic data (``N(mean 1, std^2 I)``) is sigma = std^2 without spikes, plus its mean.

Rows are drawn in blocks from ``fold_in(key, block)``: training sets of every size are
prefixes of one long draw (nested in gamma) and a row's value does not depend on how many
rows are drawn, so results do not depend on padding or chunking.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from . import linalg
from .threefry import unrolled

from .specs import DataSpec, Isotropic, PowerLaw, Spiked
from .spectra import powerlaw_spectrum


class Population(NamedTuple):
    """One draw of the population covariance ``diag(sigma) + V diag(beta) V^T``.

    Attributes:
        sigma: bulk variances [d] (ones for Spiked; tau(sigma) = 1 for PowerLaw).
        spikes: spike directions V [d, r], orthonormal columns (r may be 0).
        beta: spike strengths [r].
        latent: the directions scored by latent recovery Q [d, k], orthonormal.
        mean: the population mean [d] (Isotropic data), ``None`` for a zero mean.
    """

    sigma: jax.Array
    spikes: jax.Array
    beta: jax.Array
    latent: jax.Array
    mean: jax.Array | None = None


def normal(key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
    """Standard normals drawn in float32 and cast to ``dtype``.

    One stream for both precisions: a float32 and an x64 scan of the same spec see the same
    data and noise, so their difference is arithmetic alone (tests/test_store.py bounds it).
    ``jax.random.normal``'s numbers, hashed by straight-line code (``threefry.unrolled``).
    """
    return jax.random.normal(unrolled(key), shape, jnp.float32).astype(dtype)


def _directions(key: jax.Array, d: int, r: int, kind: str, dtype) -> jax.Array:
    """Orthonormal [d, r]: Haar-random (QR with sign fix) or the first coordinate axes."""
    if kind == "axis" or r == 0:
        return jnp.eye(d, r, dtype=dtype)
    q, rr = linalg.qr(normal(key, (d, r), dtype))
    return q * jnp.sign(jnp.diagonal(rr))[None, :]


def population(key: jax.Array, spec: DataSpec, beta, alpha, dtype) -> Population:
    """The population of one seed.

    Args:
        key: PRNG key for the spike directions (unused for ``directions="axis"`` and Isotropic).
        spec: the data spec (static: d, rank, directions; Isotropic: mean and std).
        beta: spike strengths [r] (traced; the spec's or a swept value).
        alpha: power-law exponent [] (traced; ignored for Spiked).
        dtype: floating dtype of every output.

    Returns:
        A ``Population``.
    """
    d = spec.d
    if isinstance(spec, Isotropic):  # no latent directions but the mean's: Q scores that one
        ones = jnp.ones((d, 1), dtype)
        return Population(sigma=jnp.full((d,), spec.std**2, dtype), spikes=jnp.zeros((d, 0), dtype),
                          beta=jnp.zeros((0,), dtype), latent=ones / jnp.sqrt(jnp.asarray(d, dtype)),
                          mean=jnp.full((d,), spec.mean, dtype))
    r = len(spec.beta)
    beta = jnp.broadcast_to(jnp.asarray(beta, dtype), (r,))
    spikes = _directions(key, d, r, spec.directions, dtype)
    if isinstance(spec, Spiked):
        sigma = jnp.ones((d,), dtype)
    elif isinstance(spec, PowerLaw):
        sigma = powerlaw_spectrum(jnp.asarray(alpha, dtype), d)
    else:  # pragma: no cover - specs are validated upstream
        raise TypeError(f"unsupported data spec {type(spec).__name__}")
    latent = spikes if r > 0 else jnp.eye(d, spec.rank, dtype=dtype)
    return Population(sigma=sigma, spikes=spikes, beta=beta, latent=latent)


_BLOCK = 32  # rows drawn per key: large enough to amortise key derivation, small padding waste
_DRAW_ELEMENTS = 2**20  # elements drawn at once: the random bits' temporaries stay a few MB, whatever n d


def _blocks(draw, n_rows: int, d: int) -> jax.Array:
    """``draw(b)`` -> rows [_BLOCK, d] of block b, for every block of ``n_rows`` rows: [n_rows, d].

    Drawn ``_DRAW_ELEMENTS`` at a time (``lax.map``): JAX's Threefry on the CPU (a loop) and
    the normal transform hold about three times their output in temporaries, which for a whole
    training set at large d (n = 65536 rows of d = 16384) would triple its memory. (The
    unrolled hash that ``normal`` now uses fuses into the transform; the grouping stays, since
    regrouping could move the draw by an ulp.) Each block's values depend only on
    its key, so the grouping draws the same numbers up to the compiled code's float32 rounding
    (<= 1 ulp against the whole-at-once draw; tests/test_reproduce.py).
    """
    blocks = -(-n_rows // _BLOCK)
    per = max(1, _DRAW_ELEMENTS // (_BLOCK * d))
    g = jax.lax.map(draw, jnp.arange(blocks, dtype=jnp.uint32), batch_size=per)
    return g.reshape(-1, d)[:n_rows]


def standard_rows(key: jax.Array, n_rows: int, d: int, dtype) -> jax.Array:
    """``n_rows`` standard normal rows [n_rows, d], nested: block ``b`` of 32 rows from ``fold_in(key, b)``.

    The first rows of a longer draw are exactly a shorter draw (nested training sets;
    padding-independent). ``sample`` draws its isotropic part from this very stream.
    """
    return _blocks(lambda b: normal(jax.random.fold_in(jax.random.fold_in(key, b), 0), (_BLOCK, d), dtype),
                   n_rows, d)


def sample(key: jax.Array, pop: Population, n_rows: int) -> jax.Array:
    """A training set of ``n_rows`` samples [n_rows, d] (nested rows, see ``standard_rows``):
    ``sqrt(sigma) g (+ mean) + sum_j sqrt(beta_j) h_j v_j``, block b's isotropic part g from
    ``fold_in(fold_in(key, b), 0)`` and its spike amplitudes h from ``fold_in(fold_in(key, b), 1)``."""
    d, r = pop.spikes.shape
    dtype = pop.sigma.dtype

    def draw(b):  # one block [_BLOCK, d], drawn whole so that no n x d temporary is left
        kb = jax.random.fold_in(key, b)
        x = jnp.sqrt(pop.sigma)[None, :] * normal(jax.random.fold_in(kb, 0), (_BLOCK, d), dtype)
        if pop.mean is not None:
            x = x + pop.mean[None, :]
        if r == 0:
            return x
        h = normal(jax.random.fold_in(kb, 1), (_BLOCK, r), dtype)
        return x + (h * jnp.sqrt(pop.beta)[None, :]) @ pop.spikes.T

    return _blocks(draw, n_rows, d)
