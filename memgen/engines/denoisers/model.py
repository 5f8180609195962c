"""Bias-free CNN denoiser (BF-CNN) in flax nnx, single-example semantics.

``BFCNN(y, sigma)`` maps one noisy image ``y`` [H, W] (or [H, W, 1]) to its denoised estimate
``D(y)`` of the same shape. The network computes the residual ``f(y)`` (the noise estimate)
with 3x3 convolutions and ReLUs and no additive constant anywhere, and returns
``D(y) = y - f(y)``. Every layer is positively homogeneous in y, so ``D(a y, sigma) =
a D(y, sigma)`` for ``a > 0``. The noise level enters only through positive per-channel
gains (rescale-only conditioning); with ``conditional=False`` the denoiser is *blind*, as
in Kadkhodaie et al., and ignores sigma.

Nothing here vmaps or jits. Ensembles are built by :func:`init_params` vmapped over keys,
and applied by :func:`apply` vmapped over stacked parameters (see ``train.py``).

References:
    Mohan, Kadkhodaie, Simoncelli, Fernandez-Granda, "Robust and interpretable blind image
    denoising via bias-free convolutional neural networks", ICLR 2020.
    Kadkhodaie, Guth, Simoncelli, Mallat, "Generalization in diffusion models arises from
    geometry-adaptive harmonic representations", ICLR 2024.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from ...specs import ConvDenoiser


def conv3x3(x: jax.Array, w: jax.Array, padding: str) -> jax.Array:
    """One bias-free 3x3 convolution of one image.

    Written as nine shifted copies and one matmul rather than ``lax.conv``: under ``vmap``
    over an ensemble of kernels this becomes a batched matmul, whereas XLA turns a vmapped
    ``lax.conv`` into a grouped convolution, which is slow on CPU.

    Args:
        x: activations [H, W, C].
        w: kernel [3, 3, C, O].
        padding: ``"circular"`` or ``"zeros"``.

    Returns:
        [H, W, O]
    """
    h, wd, c = x.shape
    mode = "wrap" if padding == "circular" else "constant"
    xp = jnp.pad(x, ((1, 1), (1, 1), (0, 0)), mode=mode)
    patches = jnp.concatenate([xp[i : i + h, j : j + wd] for i in range(3) for j in range(3)], axis=-1)
    return jnp.matmul(patches, w.reshape(9 * c, w.shape[-1]), precision="highest")


def sigma_features(sigma: jax.Array, lo: float, hi: float, n_feat: int) -> jax.Array:
    """Gaussian bumps [n_feat] of log(sigma) on an even grid over [log lo, log hi]."""
    c = jnp.linspace(math.log(lo), math.log(hi), n_feat, dtype=sigma.dtype)
    width = (math.log(hi) - math.log(lo)) / max(n_feat - 1, 1)
    return jnp.exp(-0.5 * ((jnp.log(sigma) - c) / width) ** 2)


class BFCNN(nnx.Module):
    """Bias-free CNN: conv -> ReLU -> [conv -> (gain) -> ReLU] x (depth - 2) -> conv.

    With ``conditional=True`` each hidden layer's channels are multiplied by a positive gain
    ``exp(phi(log sigma) @ A_l)`` (``phi``: Gaussian bumps, ``A_l`` learned, zero at init):
    a rescale-only noise-level conditioning that keeps ``D(a y, sigma) = a D(y, sigma)``.
    With ``conditional=False`` the network is blind (Kadkhodaie et al.) and ignores sigma.

    Args:
        depth: number of conv layers (>= 2).
        width: hidden channels.
        padding: ``"circular"`` or ``"zeros"``.
        conditional: use the noise-level gains.
        sigma_range: (sigma_min, sigma_max) spanned by the gain features.
        dtype: parameter dtype.
        rngs: ``nnx.Rngs`` for the He-normal initialisation.
    """

    n_feat = 8

    def __init__(self, depth: int, width: int, *, padding: str, conditional: bool, sigma_range, dtype, rngs: nnx.Rngs):
        chans = [1] + [width] * (depth - 1) + [1]
        kernels = []
        for li, (ci, co) in enumerate(zip(chans[:-1], chans[1:])):
            # He-normal; the last layer starts small so that D starts near the identity.
            std = math.sqrt(2.0 / (9 * ci)) if li < depth - 1 else 0.1 * math.sqrt(1.0 / (9 * ci))
            kernels.append(nnx.Param(std * jax.random.normal(rngs.params(), (3, 3, ci, co), dtype)))
        self.kernels = nnx.List(kernels)
        n_gain = depth - 1 if conditional else 0
        self.gains = nnx.List([nnx.Param(jnp.zeros((self.n_feat, width), dtype)) for _ in range(n_gain)])
        self.padding = padding
        self.sigma_range = tuple(sigma_range)

    def __call__(self, y: jax.Array, sigma: jax.Array | float | None = None) -> jax.Array:
        """D(y, sigma) for one image y [H, W] or [H, W, 1] and a scalar noise level sigma."""
        x = y[..., None] if y.ndim == 2 else y
        feat = None
        if len(self.gains):
            if sigma is None:
                raise ValueError("a conditional BFCNN needs sigma")
            feat = sigma_features(jnp.asarray(sigma, y.dtype), *self.sigma_range, self.n_feat)
        hdn = x
        for li in range(len(self.kernels) - 1):
            hdn = conv3x3(hdn, self.kernels[li][...], self.padding)
            if feat is not None:
                hdn = hdn * jnp.exp(feat @ self.gains[li][...])[None, None, :]
            hdn = jax.nn.relu(hdn)
        resid = conv3x3(hdn, self.kernels[-1][...], self.padding)
        return y - resid.reshape(y.shape)


def build(spec: ConvDenoiser, key: jax.Array, dtype) -> BFCNN:
    """A freshly initialised :class:`BFCNN` for ``spec`` (parameters in ``dtype``)."""
    return BFCNN(
        spec.depth,
        spec.width,
        padding=spec.padding,
        conditional=spec.conditional,
        sigma_range=(spec.sigma_min, spec.sigma_max),
        dtype=dtype,
        rngs=nnx.Rngs(params=key),
    )


def graphdef(spec: ConvDenoiser, dtype):
    """The static graph of the model (no arrays are kept)."""
    return nnx.split(nnx.eval_shape(lambda: build(spec, jax.random.key(0), dtype)))[0]


def init_params(key: jax.Array, spec: ConvDenoiser, dtype) -> nnx.State:
    """Parameters of one model: a pytree of arrays; vmap over keys for an ensemble."""
    return nnx.split(build(spec, key, dtype))[1]


def apply(graph, params: nnx.State, y: jax.Array, sigma=None) -> jax.Array:
    """D(y) for one image with parameters ``params`` (pure; merge happens at trace time)."""
    return nnx.merge(graph, params)(y, sigma)


__all__ = ["BFCNN", "conv3x3", "sigma_features", "build", "graphdef", "init_params", "apply"]
