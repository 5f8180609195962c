"""The denoiser engine: train, sample and score whole ensembles over (gamma, lam, seed, split).

Every grid point ``(gamma, lam, seed)`` is a pair of models (split A, B) trained on disjoint
halves of one per-seed draw of ``2 n_max`` images; a model at load gamma trains on the first
``n = round(gamma d)`` rows of its half (so training sets are nested in n). ``DenoiserEngine``
is the engine ``memgen.run`` batches like any other: ``jit(shard_map(vmap(pair)))`` per micro-step
with a fixed micro-batch of ``batch`` pairs (2 batch models trained at once) per device, so
every model sees the same arithmetic whatever the chunk size, device count or resume history.
Keys come from ``fold_in`` of grid coordinates:

* data of seed s:         ``fold_in(fold_in(root, DATA), s)`` (test set: stream TEST)
* model (g, l, s, split): ``fold_in(...fold_in(fold_in(root, MODEL), g), l), s), split)``
* sampler noise:          ``fold_in(fold_in(root, SAMPLE), s)``: shared by both members of a
  pair (and across gamma, lam: common random numbers).
* planted spikes of seed s: ``fold_in(fold_in(fold_in(root, SPIKES), s), 0)`` (pool), ``1`` (test).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ... import observables, threefry
from ..protocol import point_count
from ...specs import ConvDenoiser, Grid, ImageField, Images, n_samples
from ...specs.checks import fail
from . import images as _images
from . import jacobian as _jacobian
from . import model as _model
from . import references
from . import sample as _sample
from . import train as _train

DATA, TEST, MODEL, SAMPLE, TEST_NOISE, SPIKES = range(6)
_REF_DRAWS = 4096


# ---------------------------------------------------------------- data per seed


def _decreasing_eigh(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of a covariance c [d, d]: values [d] decreasing (rounding below 0 clipped), vectors [d, d]."""
    s, u = np.linalg.eigh(c)
    return np.maximum(s[::-1], 0.0), u[:, ::-1]


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
                    fail(
                        "Grid.gamma",
                        f"small enough that 2 n_max + test <= {raw.shape[0]} images of {data.source!r}",
                        f"n_max={n_pool // 2}, test={n_test}",
                    )
                pool = self._pool = _images.standardise(raw)
            flat = pool.reshape(pool.shape[0], d)
            s, u = _decreasing_eigh(flat.T @ flat / flat.shape[0])
        if data.beta:  # the population with the planted spikes (dense, once: d <= a few thousand)
            v = self.spikes = _images.spike_directions(data.size, len(data.beta))
            s, u = _decreasing_eigh((u * s) @ u.T + (v * np.asarray(data.beta)) @ v.T)
        self.u, self.s = u, s
        self.latent = self.spikes if data.beta else u[:, : data.k]  # what Q scores

    def _synthetic(self, key, n):
        fn = _images.sample_disks if self.data.source == "disks" else _images.sample_calpha
        return fn(key, self.data.size, n, dtype=self.dtype)

    def draw(self, root, seed: int) -> tuple[np.ndarray, np.ndarray]:
        pool, test = self._draw(root, seed)
        if not self.data.beta:
            return pool, test
        k_spikes = jax.random.fold_in(jax.random.fold_in(root, SPIKES), seed)
        return tuple(_images.plant_spikes(jax.random.fold_in(k_spikes, i), x, self.spikes, self.data.beta)
                     for i, x in enumerate((pool, test)))

    def _draw(self, root, seed: int) -> tuple[np.ndarray, np.ndarray]:
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


def point(k_model, k_sample, k_noise, data, n, lam, test, pop_u, pop_s, latent, *, spec: ConvDenoiser, k: int):
    """Train, sample and score ONE model (single-example semantics; vmapped by the scan).

    Args:
        k_model: the model's key (init and SGD noise).
        k_sample: sampler key, shared by the members of a pair.
        k_noise: key of the test noise, shared by every model of a seed.
        data: the model's half of the draw [n_max, H, W]; it trains on the first n rows.
        n: training-set size (traced int); lam: weight decay (traced scalar).
        test: held-out images [T, H, W].
        pop_u, pop_s: population eigenpairs [d, d], [d] (decreasing).
        latent: the directions Q scores [d, k] (the top k of pop_u, or the planted spikes).
        spec: the denoiser spec; k: number of latent directions for Q.

    Returns:
        dict of samples, samples_linear [S, d] (the network's; the empirical Wiener denoiser's of
        the same n images, by the same sampler from the same noise), m, m_heldout, Q, Q_heldout
        (of the first min(S, T) held-out images), Q_jac, Q_jac_heldout (``jacobian``), loss
        (scalars), mse, mse_wiener, mse_empirical [n_sigma].
    """
    dt = data.dtype
    variables, losses = _train.train(k_model, data, n, lam, spec=spec)  # (params, stats)
    graph = _model.graphdef(spec, dt)
    h, w = data.shape[1:]
    z = jax.random.normal(jax.random.fold_in(k_sample, 0), (spec.samples, h, w), dt)
    k_gen = jax.random.fold_in(k_sample, 1)
    gen = _sample.generate(_sample.network(graph, variables), k_gen, z, spec).reshape(spec.samples, h * w)
    xtr = data.reshape(data.shape[0], h * w)
    emp_s, emp_u = references.empirical_eigen(xtr, n)
    # the linear model of the same data (the empirical Wiener denoiser), sampled the same way
    def linear(x, sig):
        return references.spectral_denoise(x.reshape(1, h * w), emp_u, emp_s, sig).reshape(h, w)

    gen_linear = _sample.generate(linear, k_gen, z, spec).reshape(spec.samples, h * w)
    xt = test.reshape(test.shape[0], h * w)
    e = jax.random.normal(k_noise, xt.shape, dt)
    net, wie, emp = [], [], []
    for sig in spec.mse_sigmas:
        y = xt + sig * e
        sig_t = jnp.asarray(sig, dt)
        den = jax.vmap(lambda yy: _model.apply(graph, variables, yy.reshape(h, w), sig_t).reshape(h * w))(y)
        net.append(references.mse(den, xt))
        wie.append(references.mse(references.spectral_denoise(y, pop_u, pop_s, jnp.asarray(sig, dt)), xt))
        emp.append(references.mse(references.spectral_denoise(y, emp_u, emp_s, jnp.asarray(sig, dt)), xt))
    # Q of the model itself: the top eigenvectors of its mean Jacobian at held-out inputs
    d, sig_j = h * w, jnp.asarray(spec.jacobian_sigma, dt)
    f = lambda yy: _model.apply(graph, variables, yy.reshape(h, w), sig_j).reshape(d)  # noqa: E731
    k_jac = jax.random.fold_in(k_sample, 2)  # shared by the pair, like z
    u_jac = _jacobian.top_subspace(_jacobian.mean_jacobian(f, xt + sig_j * e), k_jac, d, k, dt)
    u_wiener = _jacobian.top_subspace(_jacobian.wiener(pop_u, pop_s, sig_j), k_jac, d, k, dt)
    tail = max(1, spec.steps // 10)
    return {
        "samples": gen,
        "samples_linear": gen_linear,
        "m": observables.memorisation(gen, xtr, n)["m"],
        "m_heldout": observables.memorisation(xt, xtr, n)["m"],
        "Q": observables.subspace_overlap(observables.top_eigvecs(gen, k), latent),
        # the same procedure on true images: the Q a perfect model scores with this many samples
        "Q_heldout": observables.subspace_overlap(observables.top_eigvecs(xt[: spec.samples], k), latent),
        "Q_jac": observables.subspace_overlap(u_jac, latent),
        "Q_jac_heldout": observables.subspace_overlap(u_wiener, latent),
        "loss": jnp.mean(losses[-tail:]),
        "mse": jnp.stack(net),
        "mse_wiener": jnp.stack(wie),
        "mse_empirical": jnp.stack(emp),
    }


def pair_keys(root, g, l, s):
    """(k_models [2], k_sample, k_noise) of grid point (gamma g, lam l, seed s): the key layout of
    the module doc, the one place it is written."""
    k_pair = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(root, MODEL), g), l), s)
    k_models = jax.vmap(lambda a: jax.random.fold_in(k_pair, a))(jnp.arange(2, dtype=jnp.uint32))
    k_sample = jax.random.fold_in(jax.random.fold_in(root, SAMPLE), s)
    k_noise = jax.random.fold_in(jax.random.fold_in(root, TEST_NOISE), s)
    return k_models, k_sample, k_noise


def _both(k_models, k_sample, k_noise, halves, n, lam, test, pop_u, pop_s, latent, *, spec, k):
    """``point`` for both members of a pair (``halves`` [2, n_max, H, W])."""
    fn = functools.partial(point, spec=spec, k=k)
    return jax.vmap(fn, in_axes=(0, None, None, 0, None, None, None, None, None, None))(
        k_models, k_sample, k_noise, halves, n, lam, test, pop_u, pop_s, latent)


_both_jit = jax.jit(_both, static_argnames=("spec", "k"))


def pair(g, l, s, n, lam, root, pools, tests, pop_u, pop_s, latent, *, spec: ConvDenoiser, k: int):
    """ONE grid point (gamma index g, lam index l, seed s): a pair of models A, B.

    Both members train on their own half of seed s's draw (``pools[s, 0]``, ``pools[s, 1]``),
    are sampled from the same noise and scored on the same test images.

    Args:
        g, l, s: grid indices [] (uint32): they fix the keys (module doc).
        n: training-set size [] (int); lam: weight decay [].
        root: root key; pools [S, 2, n_max, H, W]; tests [S, T, H, W]; pop_u [d, d]; pop_s [d];
            latent [d, k].
        spec, k: static.

    Returns:
        dict: m, m_heldout, q, q_linear, Q, Q_heldout, Q_jac, Q_jac_heldout, loss [] and mse, mse_wiener,
        mse_empirical [n_sigma] (mean of A and B; q and q_linear between them, computed on the device in
        the scan's dtype).
    """
    per = _both(*pair_keys(root, g, l, s), pools[s], n, lam, tests[s], pop_u, pop_s, latent, spec=spec, k=k)
    gen, gen_linear = per.pop("samples"), per.pop("samples_linear")
    out = {key: jnp.mean(v, axis=0) for key, v in per.items()}
    out["q"] = observables.convergence(gen[0], gen[1])
    out["q_linear"] = observables.convergence(gen_linear[0], gen_linear[1])
    return out


def model_bytes(data, model: ConvDenoiser, n_max: int, itemsize: int) -> int:
    """Rough device memory of one model in flight (activations kept for backprop dominate)."""
    d = data.d
    # channels per pixel summed over the layers (a UNet's level b has 4**-b of the pixels at 2**b
    # times the channels, 5 layers per level with the skip)
    if model.network == "unet":
        chans = sum(5 * model.width * 2**b / 4**b for b in range(model.depth)) + 2 * model.width / 2**model.depth
    else:
        chans = model.width * model.depth
    act = int(model.batch * d * chans * 9 * 4)  # patches + activations, fwd + bwd
    smp = int((model.samples + model.test) * d * chans / model.depth * 9 * 2)
    data_copy = (n_max + model.test) * d  # its half of the pool and the test set, gathered per pair
    return itemsize * (act + smp + data_copy + d * d) + 4 * _model.param_count(model)


def check(data, model, grid: Grid) -> None:
    """Validates a denoiser scan before any compute (raises ValueError naming the parameter)."""
    if not isinstance(data, (ImageField, Images)):
        fail("data", "an ImageField or Images spec", type(data).__name__)
    if not isinstance(model, ConvDenoiser):
        fail("model", "a ConvDenoiser spec", type(model).__name__)
    if not isinstance(grid, Grid):
        fail("grid", "a memgen.Grid", type(grid).__name__)
    if grid.beta is not None or grid.alpha is not None:
        fail("Grid.beta/alpha", "unset for denoiser scans", (grid.beta, grid.alpha))
    grid.check(data)  # every gamma gives n >= 1 training image
    side = 2**model.depth
    if model.network == "unet" and any(v % side for v in data.size):
        fail("ConvDenoiser.depth", f"<= the halvings the image size {data.size[0]}x{data.size[1]} allows "
             f"(the UNet's {model.depth} levels need sides divisible by {side})", model.depth)
    if model.samples < data.rank:
        fail("ConvDenoiser.samples", f">= k={data.rank} (Q needs a rank-k sample covariance)", model.samples)


class DenoiserEngine:
    """``ConvDenoiser`` over ``ImageField`` or ``Images`` data (see ``engines.protocol.Engine``).

    A point is a pair of models at (gamma, lam, seed); every seed's draw is made once and
    replicated on every device (``shared``), so a chunk only ships grid indices.
    """

    name = "denoisers"
    point_name = "pair of denoisers"
    per_device = 1
    arithmetic = 1
    # One pair per device step: XLA's CPU code for a vmap over models (batched matmuls) ran
    # slower than one model at a time beyond tiny nets (bench_denoisers --micro: 16 models of
    # 5 layers, width 16, 8x8: 3.03 s at 16 per step, 1.43 s at 1; width 8, 3 layers: 0.14 s vs
    # 0.29 s), and 8 pairs padded a 10-pair grid to 16 on 2 devices.
    batch = 1
    values_per_point = 1

    def __init__(self, data, model: ConvDenoiser, grid: Grid, dtype):
        check(data, model, grid)
        self.data, self.model, self.grid, self.dtype = data, model, grid, jnp.dtype(dtype)
        self.ns = np.asarray([n_samples(g, data.d) for g in grid.gamma])  # canonical int: x64 or not
        self.n_max = int(self.ns.max())
        self.axes = (("gamma", grid.gamma), ("lam", grid.lam), ("seed", tuple(range(grid.seeds))))
        sig = ("sigma",)
        self.variables = {"m": (), "m_heldout": (), "q": (), "q_linear": (), "Q": (), "Q_heldout": (),
                          "Q_jac": (), "Q_jac_heldout": (), "loss": (), "mse": sig, "mse_wiener": sig,
                          "mse_empirical": sig}
        self.coords = {"gamma": np.asarray(grid.gamma), "lam": np.asarray(grid.lam), "seed": np.arange(grid.seeds),
                       "sigma": np.asarray(model.mse_sigmas),
                       "n": ("gamma", self.ns.astype(np.int64))}

    @functools.cached_property
    def source(self) -> _Source:
        """The per-seed data source (loads images, population eigenpairs): built on first use."""
        return _Source(self.data, 2 * self.n_max, self.model.test, self.dtype)

    def validate(self) -> None:
        self.source  # noqa: B018 - enough images for the grid? (raises ValueError)

    def buckets(self) -> dict[int, np.ndarray]:
        return {self.n_max: np.arange(point_count(self))}

    def describe(self, n_max: int) -> str:
        return f"d={self.data.d} with n_max={n_max}"

    def point_bytes(self, n_max: int, itemsize: int) -> int:
        return 2 * model_bytes(self.data, self.model, n_max, itemsize)

    def shared_bytes(self, itemsize: int) -> int:
        """All seeds' pools and tests, and the population eigenpairs."""
        d = self.data.d
        return itemsize * (self.grid.seeds * (2 * self.n_max + self.model.test) * d + d * d + d + d * self.data.rank)

    def inputs(self, index: np.ndarray):
        """(gamma index, lam index, seed index [k] uint32, n [k], lam [k])."""
        g, l, s = np.unravel_index(index, tuple(len(v) for _, v in self.axes))
        return (g.astype(np.uint32), l.astype(np.uint32), s.astype(np.uint32), self.ns[g],
                np.asarray(self.grid.lam, self.dtype)[l])

    def shared(self):
        """(root key, pools [S, 2, n_max, H, W], tests [S, T, H, W], pop_u [d, d], pop_s [d], latent [d, k])."""
        root = threefry.key(self.grid.seed)
        draws = [self.source.draw(root, s) for s in range(self.grid.seeds)]
        pools = np.stack([p.reshape(2, self.n_max, *self.data.size) for p, _ in draws])
        tests = np.stack([t for _, t in draws])
        src = self.source
        return root, pools, tests, src.u.astype(self.dtype), src.s.astype(self.dtype), src.latent.astype(self.dtype)

    def static(self):
        return self.model, self.data.rank

    def pair_samples(self, g: int, l: int, s: int) -> dict:
        """The scan's pair of models at grid indices (gamma ``g``, lam ``l``, seed ``s``), trained
        again from the same draw, keys and spec (one pair at a time, so equal to the scan's
        models up to the float rounding of its micro-batch), for pictures of what a scan made.

        Returns:
            dict of NumPy arrays: ``train`` [2, n, H, W] (each model's training images) and
            ``samples`` [2, S, H, W] (both models from the same noise).
        """
        root, pools, tests, pop_u, pop_s, latent = self.shared()
        n = int(self.ns[g])
        out = _both_jit(*pair_keys(root, g, l, s), pools[s], jnp.asarray(self.ns[g]),  # the dtype the scan gives n
                        jnp.asarray(self.grid.lam[l], self.dtype), tests[s], pop_u, pop_s, latent,
                        spec=self.model, k=self.data.rank)
        return {"train": pools[s][:, :n], "samples": np.asarray(out["samples"]).reshape(2, -1, *self.data.size)}

    @staticmethod
    def kernel(static, bucket):
        model, k = static
        fn = functools.partial(pair, spec=model, k=k)
        return lambda per, shared: fn(*per, *shared)


__all__ = ["DenoiserEngine", "point", "pair", "pair_keys", "model_bytes", "check"]
