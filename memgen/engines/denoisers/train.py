"""Denoiser training: a pure AdamW step and a ``lax.scan`` over steps, for ONE model.

Loss (theory.md §5): ``E_{x, sigma, e} w(sigma) |D(x + sigma e) - x|^2 / d`` with ``x`` drawn with
replacement from the model's training set (the first ``n`` rows of ``data``; ``n`` is
traced, so a new load does not recompile), ``log sigma ~ U[log sigma_min, log sigma_max]``
``e ~ N(0, I)`` and ``w(sigma) = 1 + 1/sigma^2``. The weight decay ``lam`` of ``optax.adamw`` is a traced scalar.

Contract: :func:`train_step` and :func:`train` are pure functions of one model's
``(key, data, n, lam)``; an ensemble of K models vmaps :func:`train` over stacked keys, data,
n and lam (:func:`train_ensemble`: ``run.batching.sharded_map``, as the scan lays it out). At a fixed
micro-batch each model's result is a function of its own inputs alone, whatever the
chunking or device count. Step keys are ``fold_in(key, step)`` (a wide key tree, no chained
splits).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ... import threefry
from ...run.batching import gather, pad, sharded_map
from . import model as _model
from ...specs import ConvDenoiser


def optimizer(spec: ConvDenoiser, lam: jax.Array) -> optax.GradientTransformation:
    """AdamW with learning rate ``spec.lr`` and (traced) decoupled weight decay ``lam``."""
    return optax.adamw(learning_rate=spec.lr, weight_decay=lam)


def denoise_loss(params, stats, graph, key: jax.Array, x: jax.Array, spec: ConvDenoiser):
    """Weighted per-pixel denoising error of a batch x [B, H, W] at log-uniform noise levels.

    The error at level sigma is weighted by ``1 + 1 / sigma^2`` (Karras et al. 2022 with unit
    data variance): the relative error counts at small sigma, the absolute one at large sigma.
    The batch goes through the model in training mode (``model.apply_train``: the UNet's norms
    use the batch's statistics).

    Returns:
        (loss, the batch's mean squares per normalised layer: [] for the BF-CNN)
    """
    k_sig, k_e = jax.random.split(key)
    lo, hi = math.log(spec.sigma_min), math.log(spec.sigma_max)
    sigma = jnp.exp(jax.random.uniform(k_sig, (x.shape[0],), x.dtype, minval=lo, maxval=hi))
    y = x + sigma[:, None, None] * jax.random.normal(k_e, x.shape, x.dtype)
    one = functools.partial(_model.apply_train, graph, (params, stats))
    den, seen = jax.vmap(one, axis_name=_model.BATCH)(y, sigma)
    err = jnp.mean((den - x) ** 2, axis=(1, 2))
    # every image of the batch saw the same statistics (a pmean): keep one copy
    return jnp.mean(err * (1.0 + 1.0 / sigma**2)), [s[0] for s in seen]


def sample_batch(key: jax.Array, data: jax.Array, n: jax.Array, batch: int) -> jax.Array:
    """``batch`` rows drawn uniformly with replacement from the first ``n`` rows of data."""
    idx = jax.random.randint(key, (batch,), 0, n)
    return data[idx]


def train_step(variables, opt_state, key: jax.Array, data: jax.Array, n: jax.Array, lam: jax.Array, *,
               spec: ConvDenoiser):
    """One AdamW step on one model.

    Args:
        variables: ``(params, stats)`` (``model.init_params``); AdamW updates the params, the
            step's batch statistics update the running ``stats``.
        opt_state: AdamW state.
        key: this step's key.
        data: training pool [n_max, H, W]; the model sees rows ``[0, n)``.
        n: training-set size (traced int).
        lam: weight decay (traced scalar).
        spec: the denoiser spec (static).

    Returns:
        (variables, opt_state, loss)
    """
    params, stats = variables
    graph = _model.graphdef(spec, data.dtype)
    k_batch, k_noise = jax.random.split(key)
    x = sample_batch(k_batch, data, n, spec.batch)
    (loss, seen), grads = jax.value_and_grad(denoise_loss, has_aux=True)(params, stats, graph, k_noise, x, spec)
    lam = jnp.asarray(lam, data.dtype)
    # optax mixes Python floats and int32 step counts; allow that even under strict promotion.
    with jax.numpy_dtype_promotion("standard"):
        updates, opt_state = optimizer(spec, lam).update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), _model.update_stats(stats, seen)), opt_state, loss


def train(key: jax.Array, data: jax.Array, n: jax.Array, lam: jax.Array, *, spec: ConvDenoiser):
    """Initialise and train one model for ``spec.steps`` steps (``lax.scan``).

    Args:
        key: the model's key (any Threefry key: its draws are hashed by ``memgen.threefry``);
            ``split`` once into init and step keys, step t uses ``fold_in(k_steps, t)``.
        data: training pool [n_max, H, W] (dtype sets the parameter dtype).
        n: training-set size, 1 <= n <= n_max.
        lam: AdamW weight decay >= 0.
        spec: the denoiser spec (static).

    Returns:
        (variables ``(params, stats)``, losses [steps])
    """
    k_init, k_steps = jax.random.split(threefry.unrolled(key))
    variables = _model.init_params(k_init, spec, data.dtype)
    lam = jnp.asarray(lam, data.dtype)
    with jax.numpy_dtype_promotion("standard"):
        opt_state = optimizer(spec, lam).init(variables[0])

    def body(carry, t):
        p, s = carry
        p, s, loss = train_step(p, s, jax.random.fold_in(k_steps, t), data, n, lam, spec=spec)
        return (p, s), loss

    (variables, _), losses = jax.lax.scan(body, (variables, opt_state), jnp.arange(spec.steps))
    return variables, losses


@functools.partial(jax.jit, static_argnames="spec")
def train_one(key, data, n, lam, *, spec: ConvDenoiser):
    """``jit(train)``: one model (the baseline of the ensemble benchmark)."""
    return train(key, data, n, lam, spec=spec)


@functools.lru_cache(maxsize=16)
def _ensemble(spec: ConvDenoiser, batch: int, devices: tuple):
    one = functools.partial(train, spec=spec)
    return sharded_map(lambda per, _: one(*per), batch=batch, devices=devices)


def train_ensemble(keys, data, n, lam, *, spec: ConvDenoiser, batch: int | None = None):
    """K models at once, laid out as the scan trains them (``run.batching.sharded_map``).

    The K models are sharded over every local device and each device trains its share in
    micro-batches of ``batch`` models (default: its share of K, at most 16) with one vmapped step. K is
    padded to a whole number of micro-batches on every device by repeating the last model.
    The micro-batch, not the device count, fixes the arithmetic: results are identical on any
    number of devices.

    Args:
        keys [K], data [K, n_max, H, W], n [K], lam [K]: per-model inputs of :func:`train`.
        batch: models vmapped at once per device (>= 1).

    Returns:
        (variables ``(params, stats)`` stacked on a leading K axis, losses [K, steps]), NumPy arrays

    Raises:
        ValueError: K = 0 or batch < 1.
    """
    devices = tuple(jax.local_devices())  # this process's (many hosts: each trains its own)
    K = keys.shape[0]
    if K < 1:
        raise ValueError("train_ensemble: keys must hold at least one model (K >= 1), got K=0")
    b = min(-(-K // len(devices)), 16) if batch is None else batch  # no padding when K fills the devices
    if isinstance(b, bool) or not isinstance(b, int) or b < 1:
        raise ValueError(f"train_ensemble: batch must be an integer >= 1, got {batch!r}")
    size = -(-K // (b * len(devices))) * b * len(devices)
    rows = pad(np.arange(K), size)  # whole micro-batches on every device, repeating the last model
    out = gather(_ensemble(spec, b, devices)(tuple(jnp.asarray(a)[rows] for a in (keys, data, n, lam)), ()))
    return jax.tree.map(lambda a: a[:K], out)


__all__ = ["optimizer", "denoise_loss", "sample_batch", "train_step", "train", "train_one", "train_ensemble"]
