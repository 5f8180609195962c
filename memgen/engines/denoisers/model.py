"""Bias-free denoisers in flax nnx, single-example semantics: the BF-CNN and a UNet.

``BFCNN(y, sigma)`` and ``UNet(y, sigma)`` map one noisy image ``y`` [H, W] (or [H, W, 1]) to
its denoised estimate ``D(y)`` of the same shape. The network computes the residual ``f(y)``
(the noise estimate) with convolutions, ReLUs and no additive constant anywhere, and returns
``D(y) = y - f(y)``. Every layer is positively homogeneous in y, so ``D(a y, sigma) =
a D(y, sigma)`` for ``a > 0``. The noise level enters only through positive per-channel
gains (rescale-only conditioning); with ``conditional=False`` the denoiser is *blind*, as
in Kadkhodaie et al., and ignores sigma.

A model's variables are ``(params, stats)``: the trained parameters (an ``nnx.State``) and
the running statistics of the UNet's bias-free normalisation (a list of arrays, empty for
the BF-CNN), kept apart because the optimiser must not touch them. :func:`apply` is the
model at evaluation (fixed statistics: exactly homogeneous); :func:`apply_train` is the
model inside a training batch (batch statistics over the vmap axis :data:`BATCH`).

Nothing here vmaps or jits. Ensembles are built by :func:`init_params` vmapped over keys,
and applied by :func:`apply` vmapped over stacked variables (see ``train.py``).

References:
    Mohan, Kadkhodaie, Simoncelli, Fernandez-Granda, "Robust and interpretable blind image
    denoising via bias-free convolutional neural networks", ICLR 2020.
    Kadkhodaie, Guth, Simoncelli, Mallat, "Generalization in diffusion models arises from
    geometry-adaptive harmonic representations", ICLR 2024.
    Ronneberger, Fischer, Brox, "U-Net: convolutional networks for biomedical image
    segmentation", MICCAI 2015.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from ...specs import ConvDenoiser

BATCH = "batch"  # the vmap axis of a training batch, over which the UNet's norms take statistics
MOMENTUM = 0.1  # weight of a batch in the running statistics (as torch's BatchNorm)
EPS = 1e-5  # added to the mean square before the norm's division


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


def _inputs(net, y: jax.Array, sigma) -> tuple[jax.Array, jax.Array | None]:
    """(y as [H, W, 1], the noise-level features of a conditional network or None)."""
    x = y[..., None] if y.ndim == 2 else y
    if not len(net.gains):
        return x, None
    if sigma is None:
        raise ValueError(f"a conditional {type(net).__name__} needs sigma")
    return x, sigma_features(jnp.asarray(sigma, y.dtype), *net.sigma_range, net.n_feat)


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

    def stat_shapes(self) -> list[tuple[int]]:
        """No normalisation, no running statistics."""
        return []

    def __call__(self, y: jax.Array, sigma: jax.Array | float | None = None, stats=(), batch_axis=None):
        """D(y, sigma) for one image y [H, W] or [H, W, 1] and a scalar noise level sigma.

        ``stats`` and ``batch_axis`` are the UNet's (the BF-CNN has no normalisation); with a
        ``batch_axis`` it returns ``(D(y), [])`` like the UNet."""
        x, feat = _inputs(self, y, sigma)
        hdn = x
        for li in range(len(self.kernels) - 1):
            hdn = conv3x3(hdn, self.kernels[li][...], self.padding)
            if feat is not None:
                hdn = hdn * jnp.exp(feat @ self.gains[li][...])[None, None, :]
            hdn = jax.nn.relu(hdn)
        resid = conv3x3(hdn, self.kernels[-1][...], self.padding)
        out = y - resid.reshape(y.shape)
        return out if batch_axis is None else (out, [])


def pool2(x: jax.Array) -> jax.Array:
    """2x2 average pooling of [H, W, C] (H, W even) -> [H/2, W/2, C]: linear, bias-free."""
    h, w, c = x.shape
    return x.reshape(h // 2, 2, w // 2, 2, c).mean(axis=(1, 3))


def up2(x: jax.Array, w: jax.Array) -> jax.Array:
    """Bias-free 2x2 transposed convolution with stride 2: [H, W, C] -> [2H, 2W, O].

    Each input pixel spreads into its own 2x2 output block, so it is one matmul by the
    kernel ``w`` [C, 4 O] and a depth-to-space reshape."""
    h, wd, _ = x.shape
    o = w.shape[-1] // 4
    y = jnp.matmul(x, w, precision="highest").reshape(h, wd, 2, 2, o)
    return y.transpose(0, 2, 1, 3, 4).reshape(2 * h, 2 * wd, o)


class UNet(nnx.Module):
    """Bias-free UNet (Kadkhodaie et al. 2024, after Ronneberger et al.): ``blocks`` levels.

    Level b (0 <= b < blocks) has ``width * 2**b`` channels. The encoder applies two 3x3
    layers per level and keeps their output for the skip connection, then halves the image
    (2x2 average pooling); the middle applies two layers at ``width * 2**blocks`` channels
    on the coarsest image; the decoder doubles the image by a 2x2 transposed convolution,
    concatenates the skip and applies two layers. A final 3x3 convolution gives the
    residual. Every layer is ``conv3x3 -> bias-free norm -> (gain) -> ReLU``.

    The bias-free normalisation (Mohan et al. 2020) divides each channel by its root mean
    square and multiplies it by a learned scale; nothing is subtracted, nothing added. In
    training the mean square is over the batch and the pixels (a ``pmean`` over
    ``batch_axis``), and ``__call__`` returns it so the training loop can keep running
    averages; at evaluation those running averages are fixed scales, so ``D(a y) = a D(y)``
    exactly. (Mohan et al. divide by the batch's standard deviation about its mean; the
    root mean square is the bias-free choice that needs no mean.)

    Args:
        blocks: encoder-decoder levels (the image side must be divisible by ``2**blocks``).
        width: channels at the finest level.
        padding, conditional, sigma_range, dtype, rngs: as :class:`BFCNN`.
    """

    n_feat = 8

    def __init__(self, blocks: int, width: int, *, padding: str, conditional: bool, sigma_range, dtype,
                 rngs: nnx.Rngs):
        chans = [width * 2**b for b in range(blocks + 1)]
        layers = []  # (in, out) of every normalised 3x3 layer, in call order
        for b in range(blocks):
            layers += [(1 if b == 0 else chans[b - 1], chans[b]), (chans[b], chans[b])]
        layers += [(chans[blocks - 1], chans[blocks]), (chans[blocks], chans[blocks])]
        for b in reversed(range(blocks)):
            layers += [(2 * chans[b], chans[b]), (chans[b], chans[b])]

        def normal(shape, std):
            return nnx.Param(std * jax.random.normal(rngs.params(), shape, dtype))

        self.kernels = nnx.List([normal((3, 3, ci, co), math.sqrt(2.0 / (9 * ci))) for ci, co in layers])
        self.scales = nnx.List([nnx.Param(jnp.ones((co,), dtype)) for _, co in layers])
        self.ups = nnx.List([normal((chans[b + 1], 4 * chans[b]), math.sqrt(1.0 / chans[b + 1]))
                             for b in reversed(range(blocks))])
        # the last layer starts small so that D starts near the identity
        self.out = normal((3, 3, width, 1), 0.1 * math.sqrt(1.0 / (9 * width)))
        self.gains = nnx.List([nnx.Param(jnp.zeros((self.n_feat, co), dtype)) for _, co in layers]
                              if conditional else [])
        self.blocks = blocks
        self.padding = padding
        self.sigma_range = tuple(sigma_range)

    def stat_shapes(self) -> list[tuple[int]]:
        """Shapes of the running mean squares, one [channels] per normalised layer."""
        return [(k.shape[-1],) for k in self.kernels]

    def __call__(self, y: jax.Array, sigma: jax.Array | float | None = None, stats=(), batch_axis=None):
        """D(y, sigma) for one image y [H, W] or [H, W, 1].

        Args:
            stats: the running mean squares (the second half of ``init_params``), used when
                ``batch_axis`` is None.
            batch_axis: in training, the vmap axis name of the batch: the norms use the batch's
                mean squares, and the call returns ``(D(y), mean squares)``.
        """
        x, feat = _inputs(self, y, sigma)
        seen = []

        def layer(i, h):
            h = conv3x3(h, self.kernels[i][...], self.padding)
            if batch_axis is None:
                ms = stats[i]
            else:
                ms = jax.lax.pmean(jnp.mean(h * h, axis=(0, 1)), batch_axis)
                seen.append(ms)
            h = h * (self.scales[i][...] * jax.lax.rsqrt(ms + EPS))[None, None, :]
            if feat is not None:
                h = h * jnp.exp(feat @ self.gains[i][...])[None, None, :]
            return jax.nn.relu(h)

        i, skips, h = 0, [], x
        for _ in range(self.blocks):
            h = layer(i + 1, layer(i, h))
            i += 2
            skips.append(h)
            h = pool2(h)
        h = layer(i + 1, layer(i, h))
        i += 2
        for up, skip in zip(self.ups, reversed(skips)):
            h = jnp.concatenate([skip, up2(h, up[...])], axis=-1)
            h = layer(i + 1, layer(i, h))
            i += 2
        resid = conv3x3(h, self.out[...], self.padding)
        out = y - resid.reshape(y.shape)
        return out if batch_axis is None else (out, seen)


def build(spec: ConvDenoiser, key: jax.Array, dtype) -> BFCNN | UNet:
    """A freshly initialised network for ``spec`` (parameters in ``dtype``)."""
    net = UNet if spec.network == "unet" else BFCNN
    return net(
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


def param_count(spec: ConvDenoiser) -> int:
    """Trained parameters of one model (read off its abstract state: nothing is allocated)."""
    return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(nnx.eval_shape(
        lambda: build(spec, jax.random.key(0), jnp.float32)))))


def init_params(key: jax.Array, spec: ConvDenoiser, dtype) -> tuple[nnx.State, list]:
    """Variables ``(params, stats)`` of one model: pytrees of arrays; vmap over keys for an ensemble.

    ``stats``: the UNet's running mean squares, ones [channels] per normalised layer ([] for
    the BF-CNN)."""
    net = build(spec, key, dtype)
    return nnx.split(net)[1], [jnp.ones(s, dtype) for s in net.stat_shapes()]


def apply(graph, variables, y: jax.Array, sigma=None) -> jax.Array:
    """D(y) for one image at evaluation (pure; merge happens at trace time)."""
    params, stats = variables
    return nnx.merge(graph, params)(y, sigma, stats)


def apply_train(graph, variables, y: jax.Array, sigma) -> tuple[jax.Array, list]:
    """``(D(y), batch mean squares)`` for one image of a training batch: vmap over the batch
    with ``axis_name=BATCH``."""
    params, _ = variables
    return nnx.merge(graph, params)(y, sigma, batch_axis=BATCH)


def update_stats(stats: list, seen: list) -> list:
    """Running averages after one batch: ``(1 - MOMENTUM) stats + MOMENTUM seen``."""
    return [(1.0 - MOMENTUM) * s + MOMENTUM * jax.lax.stop_gradient(b) for s, b in zip(stats, seen)]


def conv_macs(spec: ConvDenoiser, size: tuple[int, int]) -> int:
    """Multiply-adds of the network's convolutions on one image of ``size`` (H, W): what a
    forward pass costs, the norms, gains and ReLUs aside (O(activations))."""
    h, w = size
    if spec.network == "bfcnn":
        chans = [1] + [spec.width] * (spec.depth - 1) + [1]
        return sum(h * w * 9 * ci * co for ci, co in zip(chans[:-1], chans[1:]))
    c = [spec.width * 2**b for b in range(spec.depth + 1)]
    macs = 0
    for b in range(spec.depth):
        px = (h >> b) * (w >> b)
        macs += px * 9 * ((1 if b == 0 else c[b - 1]) * c[b] + c[b] * c[b])  # encoder
        macs += px * 9 * (2 * c[b] * c[b] + c[b] * c[b])  # decoder
        macs += (px // 4) * c[b + 1] * 4 * c[b]  # transposed convolution
    px = (h >> spec.depth) * (w >> spec.depth)
    macs += px * 9 * (c[-2] * c[-1] + c[-1] * c[-1])  # middle
    return macs + h * w * 9 * spec.width


__all__ = ["BFCNN", "UNet", "BATCH", "conv3x3", "pool2", "up2", "sigma_features", "build", "graphdef",
           "param_count", "init_params", "apply", "apply_train", "update_stats", "conv_macs"]
