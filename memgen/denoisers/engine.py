"""The denoiser engine: train, sample and score whole ensembles over (gamma, lam, seed, split).

Every grid point ``(gamma, lam, seed)`` is a pair of models (split A, B) trained on disjoint
halves of one per-seed draw of ``2 n_max`` images; a model at load gamma trains on the first
``n = round(gamma d)`` rows of its half (so training sets are nested in n). Points are cut
into chunks and run by ``grid.sharded_map``, the batching composition of the linear engine:
``jit(shard_map(lax.map(vmap(pair))))`` with a fixed micro-batch of ``batch`` pairs (2 batch
models trained at once) per device, so every model sees the same arithmetic whatever the
chunk size, device count or resume history. ``memgen.scan`` stores the chunks and resumes.
Keys come from ``fold_in`` of grid coordinates:

* data of seed s:         ``fold_in(fold_in(root, DATA), s)`` (test set: stream TEST)
* model (g, l, s, split): ``fold_in(...fold_in(fold_in(root, MODEL), g), l), s), split)``
* sampler noise:          ``fold_in(fold_in(root, SAMPLE), s)``: shared by both members of a
  pair (and across gamma, lam: common random numbers).
"""

from __future__ import annotations

import functools
import json
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from memgen.config import Grid, _fail, n_samples
from memgen.grid import Chunk, _blas_threads_for_xla, sharded_map, split, wait

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
        dict of samples [S, d], m, m_heldout, Q, loss (scalars), mse, mse_wiener,
        mse_empirical [n_sigma].
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
        "m_heldout": _metrics.memorisation(xt, xtr, n),
        "Q": _metrics.latent_recovery(gen, pop_u[:, :k]),
        "loss": jnp.mean(losses[-tail:]),
        "mse": jnp.stack(net),
        "mse_wiener": jnp.stack(wie),
        "mse_empirical": jnp.stack(emp),
    }


def pair(g, l, s, n, lam, root, pools, tests, pop_u, pop_s, *, spec: ConvDenoiser, k: int):
    """ONE grid point (gamma index g, lam index l, seed s): a pair of models A, B.

    Both members train on their own half of seed s's draw (``pools[s, 0]``, ``pools[s, 1]``),
    are sampled from the same noise and scored on the same test images.

    Args:
        g, l, s: grid indices [] (uint32): they fix the keys (module doc).
        n: training-set size [] (int); lam: weight decay [].
        root: root key; pools [S, 2, n_max, H, W]; tests [S, T, H, W]; pop_u [d, d]; pop_s [d].
        spec, k: static.

    Returns:
        dict: m, m_heldout, q, Q, loss [] and mse, mse_wiener, mse_empirical [n_sigma] (mean
        of A and B; q between them, computed on the device in the scan's dtype).
    """
    k_pair = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(root, MODEL), g), l), s)
    k_models = jax.vmap(lambda a: jax.random.fold_in(k_pair, a))(jnp.arange(2, dtype=jnp.uint32))
    k_sample = jax.random.fold_in(jax.random.fold_in(root, SAMPLE), s)
    k_noise = jax.random.fold_in(jax.random.fold_in(root, TEST_NOISE), s)
    fn = functools.partial(point, spec=spec, k=k)
    per = jax.vmap(fn, in_axes=(0, None, None, 0, None, None, None, None, None))(
        k_models, k_sample, k_noise, pools[s], n, lam, tests[s], pop_u, pop_s)
    gen = per.pop("samples")
    out = {key: jnp.mean(v, axis=0) for key, v in per.items()}
    out["q"] = _metrics.convergence(gen[0], gen[1])
    return out


def scan_denoisers(data, model: ConvDenoiser, grid: Grid, *, dtype=None, **kw) -> xr.Dataset:
    """``memgen.scan`` for denoisers with an explicit ``dtype`` (default: JAX's default float).

    Keyword arguments (out, memory, chunk, batch, progress, overwrite, resume) are
    ``memgen.scan``'s; the result is the same Dataset.
    """
    from memgen import engine

    check(data, model, grid)
    engine.check_run_options(kw.get("chunk"), kw.get("batch", 8), kw.get("overwrite", False), kw.get("resume", False))
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    opts = dict(out=None, memory=None, chunk=None, batch=8, progress=True, overwrite=False, resume=False)
    unknown = set(kw) - set(opts)
    if unknown:
        raise TypeError(f"scan_denoisers got unexpected keyword(s) {sorted(unknown)}")
    opts.update(kw)
    if opts["memory"] is not None:
        opts["memory"] = engine.parse_memory(opts["memory"])
    return engine._execute(data, model, grid, dtype, **opts)


def variables(model: ConvDenoiser) -> dict[str, tuple[int, ...]]:
    """Stored variable -> trailing shape per grid point (the store's order)."""
    sig = (len(model.mse_sigmas),)
    return {"m": (), "m_heldout": (), "q": (), "Q": (), "loss": (), "mse": sig, "mse_wiener": sig,
            "mse_empirical": sig}


DESCRIPTIONS = {
    "m": "E max_mu |cos(x, x_mu)| over the model's training set (mean of A, B)",
    "m_heldout": "m of held-out data images instead of samples: what a model that samples the true "
                 "distribution scores (the nearest-neighbour baseline of m; it grows with n)",
    "q": "E cos(x_A, x_B), pair sampled from the same noise",
    "Q": "(1/k)||Vhat_k^T V_k||_F^2, Vhat from generated samples (mean of A, B)",
    "loss": "final training loss (mean of the last 10% of steps)",
    "mse": "denoising MSE per pixel on held-out images",
    "mse_wiener": "MSE of the population Wiener filter Sigma (Sigma + sigma^2)^-1",
    "mse_empirical": "MSE of the memorising denoiser C (C + sigma^2)^-1, C of the training set",
}


def model_bytes(data, model: ConvDenoiser, n_max: int, itemsize: int) -> int:
    """Rough device memory of one model in flight (activations kept for backprop dominate)."""
    d = data.d
    act = model.batch * d * model.width * 9 * model.depth * 4  # patches + activations, fwd + bwd
    smp = (model.samples + model.test) * d * model.width * 9 * 2
    data_copy = (n_max + model.test) * d  # its half of the pool and the test set, gathered per pair
    return itemsize * (act + smp + data_copy + d * d) + 4 * (9 * model.width**2 * model.depth)


def to_dataset(flat: dict[str, np.ndarray], spec: dict, grid: Grid, data, model: ConvDenoiser) -> xr.Dataset:
    """Flat per-point arrays [G L S, ...] -> Dataset with dims (gamma, lam, seed[, sigma])."""
    from memgen import store as store_mod

    G, L, S = len(grid.gamma), len(grid.lam), grid.seeds
    dims = {(): ("gamma", "lam", "seed"), (len(model.mse_sigmas),): ("gamma", "lam", "seed", "sigma")}
    ds = xr.Dataset(
        {key: (dims[shape], flat[key].reshape(G, L, S, *shape)) for key, shape in variables(model).items()},
        coords={"gamma": np.asarray(grid.gamma), "lam": np.asarray(grid.lam), "seed": np.arange(S),
                "sigma": np.asarray(model.mse_sigmas),
                "n": ("gamma", np.asarray([n_samples(g, data.d) for g in grid.gamma], dtype=np.int64))},
        attrs={store_mod.KIND_ATTR: "scan", store_mod.SPEC_ATTR: json.dumps(spec), "memgen_engine": "denoisers",
               **store_mod._environment()},
    )
    for name, desc in DESCRIPTIONS.items():
        ds[name].attrs["description"] = desc
    return ds


@functools.lru_cache(maxsize=16)
def _compiled(model: ConvDenoiser, k: int, batch: int, devices: tuple) -> Callable:
    return sharded_map(functools.partial(pair, spec=model, k=k), batch=batch, devices=devices, mapped=5, shared=5)


class Runner:
    """Draws every seed's data once, then trains, samples and scores chunks of pairs."""

    def __init__(self, data, model: ConvDenoiser, grid: Grid, dtype):
        self.data, self.model, self.grid, self.dtype = data, model, grid, jnp.dtype(dtype)
        self.shape = (len(grid.gamma), len(grid.lam), grid.seeds)
        self.ns = np.asarray([n_samples(g, data.d) for g in grid.gamma])  # canonical int: x64 or not
        self.n_max = int(self.ns.max())
        self.root = jax.random.key(grid.seed)
        self.src = _Source(data, 2 * self.n_max, model.test, self.dtype)
        self._shared = None

    def shared_bytes(self) -> int:
        """Device bytes of what every device holds: all seeds' pools and tests, eigenpairs."""
        d = self.data.d
        return self.dtype.itemsize * (self.grid.seeds * (2 * self.n_max + self.model.test) * d + d * d + d)

    def _inputs_shared(self):
        if self._shared is None:  # drawn on first use: planning stays compute-free
            draws = [self.src.draw(self.root, s) for s in range(self.grid.seeds)]
            pools = np.stack([p.reshape(2, self.n_max, *self.data.size) for p, _ in draws])
            tests = np.stack([t for _, t in draws])
            mesh = jax.sharding.Mesh(np.array(jax.devices()), ("points",))
            everywhere = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
            self._shared = jax.device_put(  # copied to every device once, not per chunk
                (self.root, pools, tests, self.src.u.astype(self.dtype), self.src.s.astype(self.dtype)), everywhere)
        return self._shared

    def run(self, chunk: Chunk) -> dict[str, np.ndarray]:
        """Runs one chunk of pairs; host arrays with the padding removed, checked finite."""
        idx = np.concatenate([chunk.index, np.full(chunk.size - len(chunk.index), chunk.index[-1])])
        g, l, s = np.unravel_index(idx, self.shape)
        per = (g.astype(np.uint32), l.astype(np.uint32), s.astype(np.uint32), self.ns[g],
               np.asarray(self.grid.lam, self.dtype)[l])
        with jax.default_matmul_precision("highest"), _blas_threads_for_xla():
            out = wait(_compiled(self.model, self.data.k, chunk.batch, tuple(jax.devices()))(*per, *self._inputs_shared()))
        out = {key: np.asarray(v)[: len(chunk.index)] for key, v in jax.device_get(out).items()}
        for key, v in out.items():
            bad = ~np.isfinite(v.reshape(len(chunk.index), -1)).all(axis=1)
            if bad.any():
                gi, li, si = np.unravel_index(chunk.index[int(np.argmax(bad))], self.shape)
                raise FloatingPointError(
                    f"non-finite {key} at gamma={self.grid.gamma[gi]}, lam={self.grid.lam[li]}, seed={si}"
                    " (rerun with JAX_DEBUG_NANS=1 to locate it)")
        return out


def check(data, model, grid: Grid) -> None:
    """Validates a denoiser scan before any compute (raises ValueError naming the parameter)."""
    if not isinstance(data, (ImageField, Images)):
        _fail("data", "an ImageField or Images spec", type(data).__name__)
    if not isinstance(model, ConvDenoiser):
        _fail("model", "a ConvDenoiser spec", type(model).__name__)
    if not isinstance(grid, Grid):
        _fail("grid", "a memgen.Grid", type(grid).__name__)
    if grid.beta is not None or grid.alpha is not None:
        _fail("Grid.beta/alpha", "unset for denoiser scans", (grid.beta, grid.alpha))
    d = data.d
    for g in grid.gamma:
        if n_samples(g, d) < 1:
            _fail("Grid.gamma", f">= {0.5 / d:.3g} so that n = round(gamma*d) >= 1 at d={d}", g)
    if model.samples < data.k:
        _fail("ConvDenoiser.samples", f">= k={data.k} (Q needs a rank-k sample covariance)", model.samples)


def plan(runner: Runner, *, batch: int, memory: int | None, chunk: int | None,
         done: np.ndarray | None, devices: int) -> list[Chunk]:
    """Chunks of pairs still to compute; refuses (before compute) a micro-batch over ``memory``."""
    from memgen.grid import default_memory

    budget = default_memory() if memory is None else memory
    size = int(np.prod(runner.shape))
    b = int(min(batch, size))
    need = 2 * model_bytes(runner.data, runner.model, runner.n_max, runner.dtype.itemsize)
    fixed = runner.shared_bytes()
    if fixed + need > budget:
        raise ValueError(f"memory={budget / 2**30:.3g} GiB is too small: one pair of denoisers at d={runner.data.d} "
                         f"with n_max={runner.n_max} needs about {(fixed + need) / 2**30:.3g} GiB; raise --memory")
    if fixed + b * need > budget:
        raise ValueError(f"memory={budget / 2**30:.3g} GiB is too small for batch={b} pairs "
                         f"({(fixed + b * need) / 2**30:.3g} GiB); lower --batch to "
                         f"{max(1, (budget - fixed) // need)} or raise --memory")
    idx = np.arange(size) if done is None else np.flatnonzero(~done)
    return split(idx, n_pad=runner.n_max, batch=b, devices=devices, chunk=chunk, per_device=1)


__all__ = ["scan_denoisers", "point", "pair", "variables", "model_bytes", "to_dataset", "Runner", "check", "plan"]
