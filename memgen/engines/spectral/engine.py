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
one padding bucket shares a compilation. The eigh route computes a *unit* per kernel call:
every load of one bucket for one (extra, seed) (``loads``), from one draw, with the moments
kept across its loads; the Krylov route computes one point per call (``point``), since at
its sizes a training set is the memory. A small load of a large bucket may fit on its own
Gram matrix (a fit branch, ``fit.branched``), where the planner finds that the eigh time it
saves outweighs compiling it (``sizes.fit_widths``).
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ... import data as data_mod
from ... import observables, threefry
from ... import specs as specs_mod
from ...specs import Grid, Isotropic, Linear, LinearDiffusion, PowerLaw, Spiked, n_samples
from ...run.plan import buckets_by_load, pad_groups
from ..protocol import spec_kernel
from . import fit as fit_mod
from . import krylov
from .gains import noises, spectral, start_scale
from .sizes import fit_widths, krylov_point_bytes, model_flops, pad_rows, point_bytes

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

# The Krylov route stores no divergences (they need log-determinants and inverse traces of C +
# lam, which a few Krylov spaces do not give to the accuracy the rest has) and the standard
# error of its stochastic w2.
KRYLOV_VARIABLES: dict[str, tuple[str, ...]] = {
    **{k: v for k, v in VARIABLES.items() if k not in ("kl", "kl_rev", "h2")}, "w2_err": ("lam",)}

KRYLOV_OVERSAMPLE = 4  # block Lanczos starts from k + 4 vectors for the top k

# ``Linear(method="auto")`` takes the Krylov route from this dimension up (where a d x d eigh
# costs minutes on a CPU), when every grid point can converge (``krylov.depth``).
KRYLOV_FROM_D = 8192

_TAG_POP, _TAG_A, _TAG_B, _TAG_Z, _TAG_STEPS, _TAG_KRYLOV = 0, 1, 2, 3, 4, 5

# The eigh route walks the training rows this many at a time for the nearest-sample statistics,
# up to the last real row (``observables.memorisation``): a load merged into a larger padding
# bucket then pays for its own rows, not the bucket's.
MEMORISATION_BLOCK = 128


# ------------------------------------------------------------------ the point kernel


def _model(X, cov, gram, pop, n, lam, z, branch, isotropic: bool, unit: float, model, widths: tuple[int, ...] = ()):
    """One model of a pair: fit on the first ``n`` rows of its training set X [n_pad, d],
    generate, measure.

    ``cov``, ``gram``: the training set's moments when the caller keeps them (``loads``), else
    None (see ``fit.fit``). ``widths``, ``branch``: the fit's size (``fit.branched``). ``unit``: the
    data's scale (Isotropic's std, else 1), static: w2 and the divergences are computed in
    units of it around the true mean.
    """
    centre = getattr(model, "centre", False)
    mu = fit_mod.row_mean(X, n) if centre else None
    fit = fit_mod.branched(X, n, mu, cov, gram, widths, branch)
    sp = spectral(fit.evals, lam, model)
    x = fit_mod.sample(fit, sp.G, sp.G0, z)
    mean = None  # the law's mean [L, d]: (I - g(C)) mu, g = G_0 / s the start's gain
    if centre:
        s = start_scale(model)
        mean = mu[None, :] - fit_mod.sample(fit, sp.G[0] / s, sp.G0[0] / s, mu[None, :])[:, 0]
        x = x + mean[:, None, :]
    out = observables.memorisation(x, X, n, block=MEMORISATION_BLOCK)  # a bucket's small loads: their own rows
    excess, var0, sigma = sp.excess, sp.var0, pop.sigma
    if unit != 1:
        excess, var0, sigma = excess / unit**2, var0 / unit**2, sigma / unit**2
    out["w2"] = unit**2 * observables.bulk_w2(excess, var0, fit.evecs, sigma, isotropic)
    dmu = None  # the law's mean minus the truth's [L, d], in units of the data's scale
    if mean is not None or pop.mean is not None:
        dmu = (0.0 if mean is None else mean) - (0.0 if pop.mean is None else pop.mean[None, :])
        dmu = jnp.broadcast_to(dmu, (lam.shape[0], X.shape[1])) / unit
    out.update(observables.gaussian_divergences(excess, var0, fit.evecs, sigma, pop.spikes, pop.beta, isotropic, dmu,
                                                widened=bool(widths)))
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


def loads(seed_idx, beta, alpha, ns, lam, root, *, spec, model, n_pad: int, dtype, fits: tuple[int, ...] = ()):
    """All order parameters of the loads of one padding bucket for one (extra, seed): a unit.

    The training sets of a seed are nested prefixes of one draw (``data.sample``), so they are
    drawn once, at ``n_pad`` rows, and their moments are kept across the loads (one
    ``lax.scan``, n traced): on the covariance route (``n_pad >= d``) a running ``sum x x^T``,
    extended by the rows each load adds (``fit.accumulate``); on the Gram route one Gram matrix,
    masked per load. The population and the noise are drawn once too. A centred model
    (``LinearDiffusion.centre``) forms each load's centred covariance from the rows (a running
    sum minus ``n mu mu^T`` would cancel catastrophically for data with a large mean).

    Args:
        seed_idx: seed index [] (uint32); beta: spike strengths [r] (r = 0 for Isotropic);
            alpha: power-law exponent [].
        ns: the training-set sizes of the loads [G] (int), ascending, each <= n_pad.
        lam: regularisations [L]; root: the root PRNG key.
        spec, model, n_pad, dtype: static (the data and model specs, the padded size).
        fits: static, one per load: the Gram size of its own fit, or 0 for the bucket's
            (``SpectralEngine.fits``; empty: every load the bucket's).

    Returns:
        dict of arrays [G, ...]: lam-dependent variables [G, L], the others [G] (``VARIABLES``).
    """
    with jax.named_scope("spectral_loads"):
        k_pop, k_a, k_b, k_z = point_keys(root, seed_idx)
        pop = data_mod.population(k_pop, spec, beta, alpha, dtype)
        z = noise(root, seed_idx, k_z, model, (model.samples, spec.d), dtype)
        unit = spec.std if isinstance(spec, Isotropic) else 1.0
        widths = tuple(sorted(set(fits) - {0}))
        branch = jnp.asarray([0 if m == 0 else 1 + widths.index(m) for m in fits] or [0] * ns.shape[0], jnp.int32)
        one = partial(_model, isotropic=not isinstance(spec, PowerLaw), unit=unit, model=model, widths=widths)
        X = jax.vmap(lambda k: data_mod.sample(k, pop, n_pad))(jnp.stack([k_a, k_b]))  # [2, n_pad, d]
        moments = not getattr(model, "centre", False)
        gram = jnp.einsum("hid,hjd->hij", X, X) if moments and n_pad < spec.d else None
        S = jnp.zeros((2, spec.d, spec.d), dtype) if moments and n_pad >= spec.d else None

        def body(carry, load):
            (S, prev), (n, b) = carry, load
            if S is not None:
                S = jax.vmap(fit_mod.accumulate, in_axes=(0, 0, None, None))(S, X, prev, n)
            per, x = jax.vmap(one, in_axes=(0, 0, 0, None, None, None, None, None))(X, S, gram, pop, n, lam, z, b)
            out = {k: jnp.mean(v, axis=0) for k, v in per.items()}  # average the two models
            out["q"] = observables.convergence(x[0], x[1])
            return (S, n), out

        return jax.lax.scan(body, (S, jnp.zeros((), ns.dtype)), (ns, branch))[1]


def point(seed_idx, n, beta, alpha, lam, root, *, spec, model, n_pad: int, dtype, depth: int | None = None):
    """All order parameters of one grid point (a pair of models), every lam at once.

    Args:
        seed_idx: seed index [] (uint32).
        n: training-set size of each model [] (int, <= n_pad).
        beta: spike strengths [r] (r = 0 for Isotropic); alpha: power-law exponent [].
        lam: regularisations [L].
        root: the root PRNG key.
        spec, model, n_pad, dtype: static (the data and model specs).
        depth: static Lanczos depth of the Krylov route (``Linear(method="krylov")``), else None.

    Returns:
        dict of arrays: lam-dependent variables [L], the others [] (see ``VARIABLES``).
    """
    if depth is None:  # the eigh route: a unit of one load
        out = loads(seed_idx, beta, alpha, jnp.asarray(n)[None], lam, root, spec=spec, model=model, n_pad=n_pad,
                    dtype=dtype)
        return {k: v[0] for k, v in out.items()}
    with jax.named_scope("spectral_point"):
        k_pop, k_a, k_b, k_z = point_keys(root, seed_idx)
        pop = data_mod.population(k_pop, spec, beta, alpha, dtype)
        z = noise(root, seed_idx, k_z, model, (model.samples, spec.d), dtype)
        unit = spec.std if isinstance(spec, Isotropic) else 1.0
        # one random start block for both models' top eigenpairs
        k_start = jax.random.fold_in(jax.random.fold_in(root, seed_idx), _TAG_KRYLOV)
        start = data_mod.normal(k_start, (pop.latent.shape[1] + KRYLOV_OVERSAMPLE, spec.d), dtype)
        # one model at a time: the route is for large d, where a training set is the memory
        one = partial(krylov.model, pop=pop, n=n, lam=lam, z=z, start=start, n_pad=n_pad, unit=unit,
                      depth=depth)
        per, x = jax.lax.map(one, jnp.stack([k_a, k_b]))
        out = {k: jnp.mean(v, axis=0) for k, v in per.items()}  # average the two models
        out["q"] = observables.convergence(x[0], x[1])
        return out


# ------------------------------------------------------------------------ the engine


class SpectralEngine:
    """``Linear`` or ``LinearDiffusion`` over Spiked, PowerLaw or Isotropic data (an ``Engine``)."""

    per_device = 4
    batch = 8
    variables = VARIABLES
    # Revision 2 (2026-12-02): the eigh route computes units (``loads``). Revision 3 (the same
    # evening): the eigh route's memorisation in row blocks (``MEMORISATION_BLOCK``); the Krylov
    # route applies C to columns (``krylov.operator``) and stops exhausted spaces (its kernels
    # changed three times under revision 2 that day, so both routes move on). Revision 4
    # (2026-12-02, late): fit branches (``fit.branched``), and a scan body that XLA fuses differently even
    # without them (float32 results moved by an ulp or so).
    arithmetic = 4

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
        self.data, self.grid, self.dtype = data, grid, jnp.dtype(dtype)
        self.model, self.depths = self._route(model)
        if self.depths is None:  # the eigh route: units of a bucket's loads of a seed (``loads``)
            self.per_device = 1
        self.values_per_point = len(grid.lam)  # every lam from one eigendecomposition
        if grid.beta is not None:
            self.extra = ("beta", grid.beta)
        elif grid.alpha is not None:
            self.extra = ("alpha", grid.alpha)
        else:
            self.extra = None
        self.axes = ((self.extra,) if self.extra else ()) + (("gamma", grid.gamma), ("seed", tuple(range(grid.seeds))))
        self.ns = np.array([n_samples(g, data.d) for g in grid.gamma], np.int32)  # per gamma
        models = 2 * grid.seeds * (len(self.extra[1]) if self.extra else 1)  # per load
        if self.depths is None:
            cost = partial(model_flops, d=data.d, n_lam=len(grid.lam), samples=model.samples, noises=noises(model),
                           dense=isinstance(data, PowerLaw))
        else:
            cost = partial(krylov.flops, d=data.d, samples=model.samples, m=max(self.depths), block=self._block())
        self.pads = pad_groups(  # n -> n_pad, a function of the spec alone
            self.ns, models, partial(pad_rows, d=data.d), cost)
        self.fits = {} if self.depths is not None else fit_widths(self.ns, self.pads, data.d, models)
        if self.depths is not None:  # a bucket's depth: the deepest of its loads
            self.variables = KRYLOV_VARIABLES
            self.depth_of = {}
            for n, m in zip(self.ns, self.depths):
                pad = int(self.pads[int(n)])
                self.depth_of[pad] = max(m, self.depth_of.get(pad, 0))
        self.coords = {"gamma": list(grid.gamma), "lam": list(grid.lam), "seed": np.arange(grid.seeds),
                       "n": ("gamma", self.ns.tolist())}
        if self.extra:
            self.coords[self.extra[0]] = list(self.extra[1])

    def _route(self, model) -> tuple:
        """(the model with its method resolved, the Lanczos depth per load or None for the eigh
        route); ``Linear.method``. Refuses, by name, what the Krylov route cannot do."""
        if not isinstance(model, Linear) or model.method == "eigh":
            return model, None
        if model.method == "auto" and self.data.d < KRYLOV_FROM_D:
            return specs_mod.replace(model, method="eigh"), None
        depths, why = self._krylov_depths(model)
        if model.method == "auto":
            return specs_mod.replace(model, method="eigh" if why else "krylov"), None if why else depths
        if why is not None:
            raise ValueError(f"Linear.method: 'krylov' needs {why}")
        return model, depths

    def _krylov_depths(self, model) -> tuple[list[int] | None, str | None]:
        """(the Lanczos depth of each load, None) or (None, why the Krylov route cannot run this grid)."""
        data, grid = self.data, self.grid
        if isinstance(data, PowerLaw):
            return None, ("Spiked or Isotropic data (its depth rule knows the Marchenko-Pastur edges of a flat "
                          "bulk; a power-law spectrum reaches down to d^-alpha)")
        if model.samples < 2:
            return None, f"Linear.samples >= 2 (w2's error is estimated over the samples), got {model.samples}"
        scale = data.std**2 if isinstance(data, Isotropic) else 1.0
        depths = []
        for g in grid.gamma:
            n = n_samples(g, data.d)
            per = [krylov.depth(n / data.d, lam, scale, self._latent_count()) for lam in grid.lam]
            bad = [lam for lam, m in zip(grid.lam, per) if m is None]
            if bad:
                return None, (f"every grid point to converge: at gamma={g} (n={n}, d={data.d}) lam={bad[0]} needs a "
                              f"Lanczos depth over {krylov.MAX_DEPTH} (C's spectrum reaches the square root's branch "
                              f"point at 0 near n = d); raise lam there or use method='eigh'")
            depths.append(max(per))
        return depths, None

    def _latent_count(self) -> int:
        """Directions Q scores: the spikes, or Isotropic data's mean (C's outliers, for the Krylov route)."""
        return 1 if isinstance(self.data, Isotropic) else self.data.rank

    def _block(self) -> int:
        """Start vectors of the block Lanczos for the top eigenpairs."""
        return self._latent_count() + KRYLOV_OVERSAMPLE

    def validate(self) -> None:
        pass

    def _shape(self) -> tuple[int, ...]:
        return tuple(len(v) for _, v in self.axes)

    def buckets(self) -> dict[int, np.ndarray]:
        """n_pad -> its points (the Krylov route), or its units [extra x seed, loads] (the eigh
        route: each the bucket's loads of one (extra, seed), in ascending n; ``loads``)."""
        flat = np.arange(math.prod(self._shape())).reshape(-1, len(self.grid.gamma), self.grid.seeds)
        if self.depths is not None:
            return buckets_by_load(self.ns, self.pads, flat, axis=1)
        order = np.argsort(self.ns, kind="stable")
        out = {}
        for n_pad in sorted(set(self.pads.values())):
            g = [i for i in order if self.pads[int(self.ns[i])] == n_pad]
            out[n_pad] = flat[:, g, :].transpose(0, 2, 1).reshape(-1, len(g))
        return out

    def describe(self, n_pad: int) -> str:
        route = "" if self.depths is None else f", Krylov depth {self.depth_of[n_pad]}"
        return f"d={self.data.d}, n_pad={n_pad}{route}"

    def point_bytes(self, n_pad: int, itemsize: int) -> int:
        """Bytes of one point (Krylov route) or one unit (eigh route: one point at n_pad, plus
        the moments kept beside it, running sums of x x^T or the Gram matrices, and the loads'
        outputs)."""
        if self.depths is not None:
            return krylov_point_bytes(self.data.d, n_pad, len(self.grid.lam), self.model.samples,
                                      self.depth_of[n_pad], self._block(), itemsize)
        d = self.data.d
        mean = isinstance(self.data, Isotropic) or getattr(self.model, "centre", False)
        one = point_bytes(self.data, n_pad, len(self.grid.lam), self.model.samples, itemsize, noises(self.model), mean)
        kept = 2 * d * d if n_pad >= d else 2 * n_pad * n_pad
        return one + (kept + 16 * len(self.grid.gamma) * len(self.grid.lam)) * itemsize

    def shared_bytes(self, itemsize: int) -> int:
        return itemsize * len(self.grid.lam)

    def inputs(self, index: np.ndarray):
        """Points [k] (the Krylov route): (seed index [k] uint32, n [k] int32, beta [k, r], alpha [k]);
        units [k, G] (the eigh route): (seed index [k], beta [k, r], alpha [k], n [k, G])."""
        if index.ndim == 2:  # a unit's points share their (extra, seed): take them from its first
            s, n, beta, alpha = self._point_inputs(index.ravel())
            first = slice(None, None, index.shape[1])
            return s[first], beta[first], alpha[first], n.reshape(index.shape)
        return self._point_inputs(index)

    def _point_inputs(self, index: np.ndarray):
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
        return np.asarray(self.grid.lam, self.dtype), threefry.key(self.grid.seed)

    def static(self):
        depths = None if self.depths is None else tuple(sorted(self.depth_of.items()))
        return self.data, self.model, self.dtype.name, depths, tuple(sorted(self.fits.items()))

    @staticmethod
    def kernel(static, n_pad: int):
        *static, depths, fits = static
        if depths is None:
            return spec_kernel(loads, tuple(static), n_pad=n_pad, fits=dict(fits).get(n_pad, ()))
        return spec_kernel(point, tuple(static), n_pad=n_pad, depth=dict(depths)[n_pad])
