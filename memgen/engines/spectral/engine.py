"""The spectral engine: every model whose sample is x = G(C) z, on a grid.

Two model kinds share it: ``Linear``, the covariance-square-root generator
``x = (C + lam I)^(1/2) z``, and ``LinearDiffusion``, a linear denoiser with ridge lam sampled
by a real diffusion sampler (``gains``). A grid point is (extra, gamma, seed), where
``extra`` indexes a swept beta or alpha; the lam axis is not a point axis but a trailing
vector served from one eigendecomposition per dataset (theory.md §2). Each point fits a *pair* of models on disjoint training sets (two
independent draws), stacked on an axis of size 2 so that one ``eigh`` call serves both.

Keys: the root is ``key(grid.seed)``; seed index ``s`` gets ``fold_in(root, s)`` and from it,
by ``fold_in`` with fixed tags, the population, the two training sets (row ``i`` from
``fold_in(k_half, i)``), the shared noise z and (ddpm only) the key of the sampler's step
noises, noise j from ``fold_in(k_steps, j)``. (The step noises get their own tag rather than
``fold_in(k_z, j)``: with threefry, ``fold_in(k, j)`` is the very block that makes the j-th
word drawn from k (that word is the XOR of its two key words), so keys derived from k_z would
reuse the bits of z.) Randomness is a function of where a point sits, never of chunking or
device count, and every gamma of one seed sees nested prefixes of the same draw (common random
numbers across the whole grid). The two models of a pair share every noise vector.

Data: Spiked and PowerLaw (zero mean), and Isotropic ``N(mean 1, std^2 I)``, whose
divergences are computed in units of std around the true mean (they are invariant to that
change of variables) with the mean difference ``dmu``; its Q scores the mean direction
``1/sqrt(d)``. A centred ``LinearDiffusion`` generates a law with a mean too.

Static shapes: training sets are padded to ``n_pad`` rows (``pad_rows``), so every load of
one padding bucket shares a compilation.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ... import data as data_mod
from ... import observables
from ...specs import Grid, Isotropic, Linear, LinearDiffusion, PowerLaw, Spiked, n_samples
from ...run.plan import buckets_by_load, pad_groups
from ..protocol import spec_kernel
from . import fit as fit_mod
from .gains import noises, spectral, start_scale

# Stored variable -> trailing dims (the order of this table is the store's order).
VARIABLES: dict[str, tuple[str, ...]] = {
    "m": ("lam",),
    "q": ("lam",),
    "w2": ("lam",),
    "m_kad": ("lam",),
    "mem_frac": ("lam",),
    "kl": ("lam",),
    "kl_rev": ("lam",),
    "h2": ("lam",),
    "Q": (),
    "top_eig": (),
}

_TAG_POP, _TAG_A, _TAG_B, _TAG_Z, _TAG_STEPS = 0, 1, 2, 3, 4


# ------------------------------------------------------------------ the point kernel


def _model(key_rows, pop, n, lam, z, n_pad: int, isotropic: bool, unit: float, model):
    """One model of a pair: fit on its own training set, generate, measure.

    ``unit``: the data's scale (Isotropic's std, else 1), static: w2 and the divergences are
    computed in units of it around the true mean.
    """
    X = data_mod.sample(key_rows, pop, n_pad)
    centre = getattr(model, "centre", False)
    mu = fit_mod.row_mean(X, n) if centre else None
    fit = fit_mod.fit(X, n, mu)
    sp = spectral(fit.evals, lam, model)
    x = fit_mod.sample(fit, sp.G, sp.G0, z)
    mean = None  # the law's mean [L, d]: (I - g(C)) mu, g = G_0 / s the start's gain
    if centre:
        s = start_scale(model)
        mean = mu[None, :] - fit_mod.sample(fit, sp.G[0] / s, sp.G0[0] / s, mu[None, :])[:, 0]
        x = x + mean[:, None, :]
    out = observables.memorisation(x, X, n)
    excess, var0, sigma = sp.excess, sp.var0, pop.sigma
    if unit != 1:
        excess, var0, sigma = excess / unit**2, var0 / unit**2, sigma / unit**2
    out["w2"] = unit**2 * observables.bulk_w2(excess, var0, fit.evecs, sigma, isotropic)
    dmu = None  # the law's mean minus the truth's [L, d], in units of the data's scale
    if mean is not None or pop.mean is not None:
        dmu = (0.0 if mean is None else mean) - (0.0 if pop.mean is None else pop.mean[None, :])
        dmu = jnp.broadcast_to(dmu, (lam.shape[0], X.shape[1])) / unit
    out.update(observables.gaussian_divergences(excess, var0, fit.evecs, sigma, pop.spikes, pop.beta, isotropic, dmu))
    out["Q"] = observables.subspace_overlap(fit_mod.top_evecs(fit, pop.latent.shape[1]), pop.latent)
    out["top_eig"] = fit.evals[-1]
    return out, x


def noise(root: jax.Array, seed_idx, k_z: jax.Array, model, shape: tuple[int, int], dtype) -> jax.Array:
    """The noise vectors of a seed [J, S, d] (``J = noises(model)``), shared by both models of a pair.

    ``z_0`` is drawn from ``k_z`` (as for every deterministic model); ddpm's step noise j >= 1
    from ``fold_in(k_steps, j)``, ``k_steps = fold_in(fold_in(root, seed_idx), 4)``.
    """
    z0 = data_mod.normal(k_z, shape, dtype)[None]
    J = noises(model)
    if J == 1:
        return z0
    k_steps = jax.random.fold_in(jax.random.fold_in(root, seed_idx), _TAG_STEPS)
    rest = jax.vmap(lambda j: data_mod.normal(jax.random.fold_in(k_steps, j), shape, dtype))(
        jnp.arange(1, J, dtype=jnp.uint32))
    return jnp.concatenate([z0, rest])


def point_keys(root: jax.Array, seed_idx) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(k_pop, k_a, k_b, k_z) of a seed: the one documented key layout (see module doc)."""
    k_seed = jax.random.fold_in(root, seed_idx)
    return tuple(jax.random.fold_in(k_seed, t) for t in (_TAG_POP, _TAG_A, _TAG_B, _TAG_Z))


def point(seed_idx, n, beta, alpha, lam, root, *, spec, model, n_pad: int, dtype):
    """All order parameters of one grid point (a pair of models), every lam at once.

    Args:
        seed_idx: seed index [] (uint32).
        n: training-set size of each model [] (int, <= n_pad).
        beta: spike strengths [r] (r = 0 for Isotropic); alpha: power-law exponent [].
        lam: regularisations [L].
        root: the root PRNG key.
        spec, model, n_pad, dtype: static (the data and model specs).

    Returns:
        dict of arrays: lam-dependent variables [L], the others [] (see ``VARIABLES``).
    """
    with jax.named_scope("spectral_point"):
        k_pop, k_a, k_b, k_z = point_keys(root, seed_idx)
        pop = data_mod.population(k_pop, spec, beta, alpha, dtype)
        z = noise(root, seed_idx, k_z, model, (model.samples, spec.d), dtype)
        halves = jnp.stack([k_a, k_b])
        unit = spec.std if isinstance(spec, Isotropic) else 1.0
        one = partial(_model, n_pad=n_pad, isotropic=not isinstance(spec, PowerLaw), unit=unit, model=model)
        per, x = jax.vmap(one, in_axes=(0, None, None, None, None))(halves, pop, n, lam, z)
        out = {k: jnp.mean(v, axis=0) for k, v in per.items()}  # average the two models
        out["q"] = observables.convergence(x[0], x[1])
        return out


# ------------------------------------------------------------- shapes and memory


def pad_rows(n: int, d: int) -> int:
    """The smallest static training-set size for n real rows (the planner may pad further).

    A ladder keeps the candidate shapes few (and shared between scans, so the persistent
    compilation cache hits): below d, steps of sqrt(2) rounded up to 8 (Gram route, ``eigh``
    cost n_pad^3); from d up, steps of 2 (covariance route, where n_pad only scales the cheap
    ``n_pad d^2`` covariance).
    """
    if n >= d:
        return d * 2 ** math.ceil(math.log2(n / d) - 1e-12)
    k = math.floor(2 * math.log2(n / d) + 1e-12)  # n <= d 2^(k/2+1/2)
    for step in (k, k + 1):
        cand = min(d, int(math.ceil(d * 2 ** (step / 2) / 8) * 8))
        if cand >= n:
            return cand
    return d


def model_flops(n_pad: int, d: int, n_lam: int, samples: int, noises: int = 1, dense: bool = False) -> float:
    """Rough flops of one model at ``n_pad`` rows: what the bucket planner weighs (``plan.pad_groups``)."""
    r = min(n_pad, d)
    fit = 9.0 * r**3 + (2.0 * n_pad * d * d if n_pad >= d else 4.0 * n_pad * n_pad * d)  # eigh; C or Gram and U
    generate = 2.0 * noises * samples * d * r + 2.0 * n_lam * samples * d * (r + n_pad)  # z U, x, distances
    return fit + generate + (9.0 * n_lam * d**3 if dense else 0.0)  # dense bulk: eigvalsh per lam


def point_bytes(spec, n_pad: int, n_lam: int, samples: int, itemsize: int, noises: int = 1,
                mean: bool = False) -> int:
    """Estimated peak bytes of one point (both models), the chunk-size model.

    ``noises``: J noise vectors per sample (ddpm: steps), held once for the pair, each
    projected on U per model; ``mean``: the law has a mean (Isotropic data or a centred model).
    """
    d, r = spec.d, min(n_pad, spec.d)
    dense = isinstance(spec, PowerLaw)
    per_model = (
        2 * n_pad * d  # X and its masked copy
        + 3 * r * r + 2 * d * r  # covariance/Gram, eigh workspace, eigenvectors
        + 3 * n_lam * samples * d  # generated samples, centred copies
        + 4 * n_lam * samples * n_pad  # cosines, correlations, distances
        + (6 * n_lam * d * d if dense else 0)  # W2 and Hellinger: eigvalsh per lam
        + noises * samples * r + 3 * noises * n_lam * (r + 1)  # projections of the noises; gain stack
        + ((2 + (3 * d if dense else 0)) * n_lam * d if mean else 0)  # mean, dmu; a dense eigh per lam
    )
    return (2 * per_model + noises * samples * d) * itemsize


# ------------------------------------------------------------------------ the engine


class SpectralEngine:
    """``Linear`` or ``LinearDiffusion`` over Spiked, PowerLaw or Isotropic data (an ``Engine``)."""

    per_device = 4
    batch = 8
    variables = VARIABLES

    def __init__(self, data, model: Linear | LinearDiffusion, grid: Grid, dtype):
        kind = type(model).__name__
        if not isinstance(data, (Spiked, PowerLaw, Isotropic)):
            raise ValueError(f"data must be Spiked, PowerLaw or Isotropic for the {kind} model, got "
                             f"{type(data).__name__}")
        if isinstance(model, LinearDiffusion) and model.flow_time is not None and any(grid.lam):
            raise ValueError(f"Grid.lam must be 0 with LinearDiffusion.flow_time (gradient flow has no ridge "
                             f"here), got {list(grid.lam)}")
        self.name = "linear" if isinstance(model, Linear) else "linear_diffusion"
        self.point_name = f"point (a pair of {'linear models' if isinstance(model, Linear) else 'linear diffusions'})"
        if not isinstance(grid, Grid):
            raise ValueError(f"grid must be a memgen.Grid, got {type(grid).__name__}")
        grid.check(data)
        if isinstance(data, Isotropic) and grid.beta is not None:
            raise ValueError(f"Grid.beta must be unset for Isotropic data (it has no spikes), "
                             f"got {list(grid.beta)}")
        self.data, self.model, self.grid, self.dtype = data, model, grid, jnp.dtype(dtype)
        self.values_per_point = len(grid.lam)  # every lam from one eigendecomposition
        if grid.beta is not None:
            self.extra = ("beta", grid.beta)
        elif grid.alpha is not None:
            self.extra = ("alpha", grid.alpha)
        else:
            self.extra = None
        self.axes = ((self.extra,) if self.extra else ()) + (("gamma", grid.gamma), ("seed", tuple(range(grid.seeds))))
        self.ns = np.array([n_samples(g, data.d) for g in grid.gamma], np.int32)  # per gamma
        extra_points = len(self.extra[1]) if self.extra else 1
        self.pads = pad_groups(  # n -> n_pad, a function of the spec alone
            self.ns, 2 * grid.seeds * extra_points, partial(pad_rows, d=data.d),
            partial(model_flops, d=data.d, n_lam=len(grid.lam), samples=model.samples, noises=noises(model),
                    dense=isinstance(data, PowerLaw)))
        self.coords = {"gamma": list(grid.gamma), "lam": list(grid.lam), "seed": np.arange(grid.seeds),
                       "n": ("gamma", self.ns.tolist())}
        if self.extra:
            self.coords[self.extra[0]] = list(self.extra[1])

    def validate(self) -> None:
        pass

    def _shape(self) -> tuple[int, ...]:
        return tuple(len(v) for _, v in self.axes)

    def buckets(self) -> dict[int, np.ndarray]:
        flat = np.arange(math.prod(self._shape())).reshape(-1, len(self.grid.gamma), self.grid.seeds)
        return buckets_by_load(self.ns, self.pads, flat, axis=1)

    def describe(self, n_pad: int) -> str:
        return f"d={self.data.d}, n_pad={n_pad}"

    def point_bytes(self, n_pad: int, itemsize: int) -> int:
        mean = isinstance(self.data, Isotropic) or getattr(self.model, "centre", False)
        return point_bytes(self.data, n_pad, len(self.grid.lam), self.model.samples, itemsize,
                           noises(self.model), mean)

    def shared_bytes(self, itemsize: int) -> int:
        return itemsize * len(self.grid.lam)

    def inputs(self, index: np.ndarray):
        """(seed index [k] uint32, n [k] int32, beta [k, r], alpha [k])."""
        place = np.unravel_index(index, self._shape())
        e, g, s = (place if self.extra else (np.zeros_like(index), *place))
        n = self.ns[g]
        spikes = getattr(self.data, "beta", ())  # Isotropic: none
        beta = np.broadcast_to(np.asarray(spikes, self.dtype), (len(index), len(spikes))).copy()
        alpha = np.full(len(index), getattr(self.data, "alpha", 0.0), self.dtype)
        if self.extra is not None:
            vals = np.asarray(self.extra[1], self.dtype)[e]
            if self.extra[0] == "beta":
                beta[:] = vals[:, None]
            else:
                alpha[:] = vals
        return s.astype(np.uint32), n, beta, alpha

    def shared(self):
        """(lam [L], root key)."""
        return np.asarray(self.grid.lam, self.dtype), jax.random.key(self.grid.seed)

    def static(self):
        return self.data, self.model, self.dtype.name

    @staticmethod
    def kernel(static, n_pad: int):
        return spec_kernel(point, static, n_pad=n_pad)
