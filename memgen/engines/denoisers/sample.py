"""Diffusion samplers driven by a trained denoiser, for ONE model and ONE initial noise.

* :func:`ddim_sample`: the deterministic probability-flow (DDIM, variance-exploding) sampler
  on a geometric ladder ``sigma_max = s_0 > ... > s_T = sigma_min``:
  ``x <- D(x) + (s_{t+1} / s_t) (x - D(x))``, started at ``x = sigma_max z``; returns the
  final denoised ``D(x)``. Two models of a pair started from the same ``z`` are compared by q.
* :func:`ascent_sample`: the stochastic coarse-to-fine gradient ascent of Kadkhodaie &
  Simoncelli (2021): with residual ``f = y - D(y, s)``, effective noise ``s = |f| / sqrt(d)``
  (the previous step's estimate is fed to a conditional denoiser),
  step ``h_t = h0 t / (1 + h0 (t - 1))`` and ``g_t = s sqrt((1 - beta h_t)^2 - (1 - h_t)^2)``,
  ``y <- y - h_t f + g_t e_t``. The injected noise ``e_t`` comes from ``fold_in(key, t)``, so
  the members of a pair given the same key see the same noise sequence.

A sampler drives any denoiser ``denoise(x [H, W], sigma []) -> [H, W]``: a trained network
(:func:`network`) or a linear reference (``references.spectral_denoise``), so that the two are
sampled by the same procedure. Batching over samples and models is the caller's (``jax.vmap``);
nothing here jits.

References:
    Song, Meng, Ermon, "Denoising diffusion implicit models", ICLR 2021.
    Kadkhodaie & Simoncelli, "Stochastic solutions for linear inverse problems using the
    prior implicit in a denoiser", NeurIPS 2021.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from . import model as _model
from ...specs import ConvDenoiser


def sigma_ladder(spec: ConvDenoiser, dtype) -> jax.Array:
    """Geometric noise levels [sample_steps + 1] from sigma_max down to sigma_min."""
    return jnp.exp(jnp.linspace(math.log(spec.sigma_max), math.log(spec.sigma_min), spec.sample_steps + 1, dtype=dtype))


def network(graph, variables):
    """The trained network as a sampler's ``denoise(x [H, W], sigma) -> [H, W]``."""
    return lambda x, sigma: _model.apply(graph, variables, x, sigma)


def ddim_sample(denoise, z: jax.Array, spec: ConvDenoiser) -> jax.Array:
    """Deterministic probability-flow sample from initial noise z [H, W] (unit variance).

    Returns:
        the generated image [H, W] (same dtype as z).
    """
    sig = sigma_ladder(spec, z.dtype)

    def body(x, t):
        x0 = denoise(x, sig[t])
        return x0 + (sig[t + 1] / sig[t]) * (x - x0), None

    x, _ = jax.lax.scan(body, spec.sigma_max * z, jnp.arange(spec.sample_steps))
    return denoise(x, sig[-1])


def ascent_sample(denoise, key: jax.Array, z: jax.Array, spec: ConvDenoiser) -> jax.Array:
    """Stochastic coarse-to-fine ascent from y_0 = sigma_max z [H, W].

    Args:
        denoise: the denoiser, ``denoise(y [H, W], sigma) -> [H, W]``.
        key: noise key; step t injects ``normal(fold_in(key, t))``.
        z: initial noise [H, W].
        spec: sampler settings (``sample_steps``, ``ascent_h0``, ``ascent_beta``).

    Returns:
        the final denoised image D(y_T) [H, W].
    """
    h0, beta = spec.ascent_h0, spec.ascent_beta
    d = z.size
    floor = jnp.asarray(spec.sigma_min, z.dtype)

    def body(carry, t):
        y, s = carry  # s: the current effective noise level, fed to the denoiser
        tt = t.astype(z.dtype)
        h = h0 * tt / (1.0 + h0 * (tt - 1.0))
        f = y - denoise(y, s)
        s = jnp.maximum(jnp.sqrt(jnp.sum(f**2) / d), floor)
        g = s * jnp.sqrt(jnp.maximum((1.0 - beta * h) ** 2 - (1.0 - h) ** 2, 0.0))
        e = jax.random.normal(jax.random.fold_in(key, t), z.shape, z.dtype)
        return (y - h * f + g * e, s), None

    s0 = jnp.asarray(spec.sigma_max, z.dtype)
    (y, s), _ = jax.lax.scan(body, (spec.sigma_max * z, s0), jnp.arange(1, spec.sample_steps + 1))
    return denoise(y, s)


def generate(denoise, key: jax.Array, z: jax.Array, spec: ConvDenoiser) -> jax.Array:
    """Samples [S, H, W] of one denoiser from initial noises z [S, H, W] with ``spec.sampler``.

    ``key`` drives the ascent sampler's injected noise (sample s uses ``fold_in(key, s)``);
    the DDIM sampler ignores it. Give both members of a pair the same ``key`` and ``z``.
    """
    if spec.sampler == "ddim":
        return jax.vmap(lambda zz: ddim_sample(denoise, zz, spec))(z)
    keys = jax.vmap(lambda s: jax.random.fold_in(key, s))(jnp.arange(z.shape[0]))
    return jax.vmap(lambda k, zz: ascent_sample(denoise, k, zz, spec))(keys, z)


__all__ = ["sigma_ladder", "network", "ddim_sample", "ascent_sample", "generate"]
