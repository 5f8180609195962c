"""Population spectra, defined once for the samplers (``data``) and the theory (``theory``)."""

from __future__ import annotations

import jax.numpy as jnp


def powerlaw_spectrum(alpha, d: int, beta=None):
    """``sigma_i = i^(-alpha) / mean_j j^(-alpha)``, i = 1..d, optionally ``+ beta_k`` on the first axes.

    Args:
        alpha: exponent >= 0, shape ``[...]`` (float; sets the dtype).
        d: dimension (static).
        beta: optional spike strengths ``[r]`` added to ``sigma_1..sigma_r`` (axis spikes).

    Returns:
        ``sigma [..., d]``, decreasing, with ``mean(sigma) = 1`` before the spikes.
    """
    alpha = jnp.asarray(alpha)
    if not jnp.issubdtype(alpha.dtype, jnp.floating):
        alpha = alpha.astype(jnp.result_type(float))
    i = jnp.arange(1, d + 1, dtype=alpha.dtype)
    logs = -alpha[..., None] * jnp.log(i)
    s = jnp.exp(logs - jnp.max(logs, axis=-1, keepdims=True))
    s = s / jnp.mean(s, axis=-1, keepdims=True)
    if beta is not None and len(beta) > 0:
        add = jnp.zeros(d, alpha.dtype).at[: len(beta)].set(jnp.asarray(beta, alpha.dtype))
        s = s + add
    return s


__all__ = ["powerlaw_spectrum"]
