"""The denoiser scan: train, sample and score whole ensembles over (gamma, lam, seed, split).

``scan_denoisers(data, model, grid)`` is the batching layer of the denoiser engine. Every
grid point ``(gamma, lam, seed)`` holds a pair of models (split A, B) trained on disjoint
halves of one per-seed draw of ``2 n_max`` images; a model at load gamma trains on the first
``n = round(gamma d)`` rows of its half (so training sets are nested in n). All
``G x L x S x 2`` models are flattened, cut into memory-sized chunks, and each chunk is
trained, sampled and scored by one ``jit(vmap(point))`` call (chunks are padded to one
shape, so the kernel compiles once). Keys come from ``fold_in`` of grid coordinates:

* data of seed s:         ``fold_in(fold_in(root, DATA), s)`` (test set: stream TEST)
* model (g, l, s, split): ``fold_in(...fold_in(fold_in(root, MODEL), g), l), s), split)``
* sampler noise:          ``fold_in(fold_in(root, SAMPLE), s)``: shared by both members of a
  pair (and across gamma, lam: common random numbers).

so results do not depend on the chunk size. q is computed on the host from the two members'
samples. The output is an ``xarray.Dataset`` with the contract shared with the linear engine.
"""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from memgen.config import Grid, _fail, n_samples, to_dict

from . import images as _images
from . import metrics as _metrics
from . import model as _model
from . import sample as _sample
from . import train as _train
from .specs import ConvDenoiser, ImageField, Images

DATA, TEST, MODEL, SAMPLE, TEST_NOISE = range(5)
_REF_DRAWS = 4096


# ---------------------------------------------------------------- data per seed


class _Source:
    """Per-seed draws (train pool [2 n_max, H, W], test [T, H, W]) and population eigenpairs."""

    def __init__(self, data, n_pool: int, n_test: int, dtype):
        self.data, self.n_pool, self.n_test, self.dtype = data, n_pool, n_test, dtype
        d = data.d
        if isinstance(data, ImageField):
            u, s = _images.field_eigen(data)
        else:
            if data.source in ("disks", "calpha"):
                ref = self._synthetic(jax.random.key(0), _REF_DRAWS)
                self._ref = np.asarray(ref, np.float64)
                pool = _images.standardise(self._ref)
            else:
                raw = _images.load_images(data.source, data.size)
                if raw.shape[0] < n_pool + n_test:
                    _fail(
                        "Grid.gamma",
                        f"small enough that 2 n_max + test <= {raw.shape[0]} images of {data.source!r}",
                        f"n_max={n_pool // 2}, test={n_test}",
                    )
                pool = self._pool = _images.standardise(raw)
            flat = pool.reshape(pool.shape[0], d)
            s, u = np.linalg.eigh(flat.T @ flat / flat.shape[0])
            s, u = np.maximum(s[::-1], 0.0), u[:, ::-1]
        self.u, self.s = u, s

    def _synthetic(self, key, n):
        fn = _images.sample_disks if self.data.source == "disks" else _images.sample_calpha
        return fn(key, self.data.size, n, dtype=self.dtype)

    def draw(self, root, seed: int) -> tuple[np.ndarray, np.ndarray]:
        k_data = jax.random.fold_in(jax.random.fold_in(root, DATA), seed)
        k_test = jax.random.fold_in(jax.random.fold_in(root, TEST), seed)
        if isinstance(self.data, ImageField):
            pool = _images.sample_field(k_data, self.data, self.n_pool, self.dtype)
            test = _images.sample_field(k_test, self.data, self.n_test, self.dtype)
            return np.asarray(pool), np.asarray(test)
        if self.data.source in ("disks", "calpha"):
            pool = _images.standardise(np.asarray(self._synthetic(k_data, self.n_pool), np.float64), self._ref)
            test = _images.standardise(np.asarray(self._synthetic(k_test, self.n_test), np.float64), self._ref)
            return pool.astype(self.dtype), test.astype(self.dtype)
        perm = np.asarray(jax.random.permutation(k_data, self._pool.shape[0]))
        x = self._pool[perm[: self.n_pool + self.n_test]].astype(self.dtype)
        return x[: self.n_pool], x[self.n_pool :]


# ---------------------------------------------------------------- one grid point


def point(k_model, k_sample, k_noise, data, n, lam, test, pop_u, pop_s, *, spec: ConvDenoiser, k: int):
    """Train, sample and score ONE model (single-example semantics; vmapped by the scan).

    Args:
        k_model: the model's key (init and SGD noise).
        k_sample: sampler key, shared by the members of a pair.
        k_noise: key of the test noise, shared by every model of a seed.
        data: the model's half of the draw [n_max, H, W]; it trains on the first n rows.
        n: training-set size (traced int); lam: weight decay (traced scalar).
        test: held-out images [T, H, W].
        pop_u, pop_s: population eigenpairs [d, d], [d] (decreasing).
        spec: the denoiser spec; k: number of latent directions for Q.

    Returns:
        dict of samples [S, d], m, Q, loss (scalars), mse, mse_wiener, mse_empirical [n_sigma].
    """
    dt = data.dtype
    params, losses = _train.train(k_model, data, n, lam, spec=spec)
    graph = _model.graphdef(spec, dt)
    h, w = data.shape[1:]
    z = jax.random.normal(jax.random.fold_in(k_sample, 0), (spec.samples, h, w), dt)
    gen = _sample.generate(graph, params, jax.random.fold_in(k_sample, 1), z, spec).reshape(spec.samples, h * w)
    xtr = data.reshape(data.shape[0], h * w)
    emp_s, emp_u = _metrics.empirical_eigen(xtr, n)
    xt = test.reshape(test.shape[0], h * w)
    e = jax.random.normal(k_noise, xt.shape, dt)
    net, wie, emp = [], [], []
    for sig in spec.mse_sigmas:
        y = xt + sig * e
        sig_t = jnp.asarray(sig, dt)
        den = jax.vmap(lambda yy: _model.apply(graph, params, yy.reshape(h, w), sig_t).reshape(h * w))(y)
        net.append(_metrics.mse(den, xt))
        wie.append(_metrics.mse(_metrics.spectral_denoise(y, pop_u, pop_s, jnp.asarray(sig, dt)), xt))
        emp.append(_metrics.mse(_metrics.spectral_denoise(y, emp_u, emp_s, jnp.asarray(sig, dt)), xt))
    tail = max(1, spec.steps // 10)
    return {
        "samples": gen,
        "m": _metrics.memorisation(gen, xtr, n),
        "Q": _metrics.latent_recovery(gen, pop_u[:, :k]),
        "loss": jnp.mean(losses[-tail:]),
        "mse": jnp.stack(net),
        "mse_wiener": jnp.stack(wie),
        "mse_empirical": jnp.stack(emp),
    }


@functools.partial(jax.jit, static_argnames=("spec", "k"))
def _chunk_kernel(k_model, k_sample, k_noise, data, n, lam, test, pop_u, pop_s, *, spec, k):
    fn = functools.partial(point, spec=spec, k=k)
    return jax.vmap(fn, in_axes=(0, 0, 0, 0, 0, 0, 0, None, None))(
        k_model, k_sample, k_noise, data, n, lam, test, pop_u, pop_s
    )


# ---------------------------------------------------------------- the scan


def model_bytes(data, model: ConvDenoiser, n_max: int, itemsize: int) -> int:
    """Rough device memory of one model in a chunk (activations kept for backprop dominate)."""
    d = data.d
    act = model.batch * d * model.width * 9 * model.depth * 4  # patches + activations, fwd + bwd
    smp = (model.samples + model.test) * d * model.width * 9 * 2
    return itemsize * (act + smp + (n_max + model.test) * d + d * d) + 4 * (9 * model.width**2 * model.depth)


def scan_denoisers(
    data: ImageField | Images,
    model: ConvDenoiser,
    grid: Grid,
    *,
    progress: bool = True,
    chunk: int | None = None,
    budget_bytes: int = 1 << 30,
    dtype=None,
) -> xr.Dataset:
    """Train and score a pair of denoisers at every (gamma, lam, seed) of ``grid``.

    Args:
        data: an :class:`ImageField` or :class:`Images` spec (d = H W).
        model: the denoiser spec.
        grid: ``memgen.config.Grid``: gamma -> n = round(gamma d), lam -> AdamW weight
            decay, seeds -> repetitions; ``beta``/``alpha`` sweeps are not supported.
        progress: show a tqdm bar over chunks.
        chunk: models per compiled call (default: as many as fit ``budget_bytes``).
        budget_bytes: device-memory budget for one chunk.
        dtype: float dtype (default: JAX's default float, float64 under x64).

    Returns:
        Dataset with dims (gamma, lam, seed, sigma), coordinate n(gamma), variables
        m, q, Q, loss (gamma, lam, seed) and mse, mse_wiener, mse_empirical
        (gamma, lam, seed, sigma); attrs memgen_kind = "scan" and memgen_spec (JSON).

    Raises:
        ValueError: invalid combination of specs (before any compute), or non-finite results
            (naming the grid coordinates).
    """
    if not isinstance(data, (ImageField, Images)):
        _fail("data", "an ImageField or Images spec", type(data).__name__)
    if not isinstance(model, ConvDenoiser):
        _fail("model", "a ConvDenoiser spec", type(model).__name__)
    if grid.beta is not None or grid.alpha is not None:
        _fail("Grid.beta/alpha", "unset for denoiser scans", (grid.beta, grid.alpha))
    d = data.d
    ns = [n_samples(g, d) for g in grid.gamma]
    for g, n in zip(grid.gamma, ns):
        if n < 1:
            _fail("Grid.gamma", f">= {0.5 / d:.3g} so that n = round(gamma*d) >= 1 at d={d}", g)
    if model.samples < data.k:
        _fail("ConvDenoiser.samples", f">= k={data.k} (Q needs a rank-k sample covariance)", model.samples)
    dtype = jnp.dtype(dtype) if dtype is not None else jnp.result_type(float)
    n_max = max(ns)
    src = _Source(data, 2 * n_max, model.test, dtype)
    root = jax.random.key(grid.seed)
    G, L, S = len(grid.gamma), len(grid.lam), grid.seeds
    draws = [src.draw(root, s) for s in range(S)]
    pools = np.stack([p.reshape(2, n_max, *data.size) for p, _ in draws])  # [S, 2, n_max, H, W]
    tests = np.stack([t for _, t in draws])  # [S, T, H, W]

    coords = [(g, l, s, a) for g in range(G) for l in range(L) for s in range(S) for a in range(2)]
    P = len(coords)
    size = chunk or max(1, budget_bytes // model_bytes(data, model, n_max, dtype.itemsize))
    size = min(size, P)
    k_model_root = jax.random.fold_in(root, MODEL)
    k_sample_root = jax.random.fold_in(root, SAMPLE)
    k_noise_root = jax.random.fold_in(root, TEST_NOISE)
    pop_u, pop_s = jnp.asarray(src.u, dtype), jnp.asarray(src.s, dtype)

    def keys_for(cs):
        km = [jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(k_model_root, g), l), s), a)
              for g, l, s, a in cs]
        ks = [jax.random.fold_in(k_sample_root, s) for _, _, s, _ in cs]
        kn = [jax.random.fold_in(k_noise_root, s) for _, _, s, _ in cs]
        return jnp.stack(km), jnp.stack(ks), jnp.stack(kn)

    out: dict[str, list] = {}
    starts = range(0, P, size)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=P, desc="denoisers", unit="model")
    for start in starts:
        cs = coords[start : start + size]
        cs_pad = cs + [cs[-1]] * (size - len(cs))
        km, ks, kn = keys_for(cs_pad)
        res = _chunk_kernel(
            km,
            ks,
            kn,
            jnp.asarray(np.stack([pools[s, a] for _, _, s, a in cs_pad])),
            jnp.asarray([ns[g] for g, _, _, _ in cs_pad]),
            jnp.asarray([grid.lam[l] for _, l, _, _ in cs_pad], dtype),
            jnp.asarray(np.stack([tests[s] for _, _, s, _ in cs_pad])),
            pop_u,
            pop_s,
            spec=model,
            k=data.k,
        )
        res = {key: np.asarray(v)[: len(cs)] for key, v in res.items()}
        for key, v in res.items():
            bad = ~np.isfinite(v.reshape(len(cs), -1)).all(axis=1)
            if bad.any():
                g, l, s, a = cs[int(np.argmax(bad))]
                raise ValueError(
                    f"non-finite {key} at gamma={grid.gamma[g]}, lam={grid.lam[l]}, seed={s}, split={'AB'[a]}"
                    " (rerun with JAX_DEBUG_NANS=1 to locate it)"
                )
            out.setdefault(key, []).append(v)
        if bar is not None:
            bar.update(len(cs))
    if bar is not None:
        bar.close()
    res = {key: np.concatenate(v).reshape(G, L, S, 2, *v[0].shape[1:]) for key, v in out.items()}
    gen = res["samples"].astype(np.float64)
    cos = np.sum(gen[..., 0, :, :] * gen[..., 1, :, :], -1) / (
        np.linalg.norm(gen[..., 0, :, :], axis=-1) * np.linalg.norm(gen[..., 1, :, :], axis=-1)
    )
    dims3, dims4 = ("gamma", "lam", "seed"), ("gamma", "lam", "seed", "sigma")
    ds = xr.Dataset(
        {
            "m": (dims3, res["m"].mean(axis=3)),
            "q": (dims3, cos.mean(axis=-1)),
            "Q": (dims3, res["Q"].mean(axis=3)),
            "loss": (dims3, res["loss"].mean(axis=3)),
            "mse": (dims4, res["mse"].mean(axis=3)),
            "mse_wiener": (dims4, res["mse_wiener"].mean(axis=3)),
            "mse_empirical": (dims4, res["mse_empirical"].mean(axis=3)),
        },
        coords={
            "gamma": np.asarray(grid.gamma),
            "lam": np.asarray(grid.lam),
            "seed": np.arange(S),
            "sigma": np.asarray(model.mse_sigmas),
            "n": ("gamma", np.asarray(ns, dtype=np.int64)),
        },
        attrs={
            "memgen_kind": "scan",
            "memgen_spec": json.dumps({"data": to_dict(data), "model": to_dict(model), "grid": to_dict(grid)}),
            "memgen_engine": "denoisers",
            "dtype": str(dtype),
        },
    )
    for name, desc in [
        ("m", "E max_mu |cos(x, x_mu)| over the model's training set (mean of A, B)"),
        ("q", "E cos(x_A, x_B), pair sampled from the same noise"),
        ("Q", "(1/k)||Vhat_k^T V_k||_F^2, Vhat from generated samples (mean of A, B)"),
        ("loss", "final training loss (mean of the last 10% of steps)"),
        ("mse", "denoising MSE per pixel on held-out images"),
        ("mse_wiener", "MSE of the population Wiener filter Sigma (Sigma + sigma^2)^-1"),
        ("mse_empirical", "MSE of the memorising denoiser C (C + sigma^2)^-1, C of the training set"),
    ]:
        ds[name].attrs["description"] = desc
    return ds


__all__ = ["scan_denoisers", "point", "model_bytes"]
