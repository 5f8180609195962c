"""The one-step engine: Halder's model over a (gamma, seed) grid.

A grid point is (gamma, seed): a *pair* of one-step models fitted on disjoint training sets
of n = round(gamma d) points each (stacked on an axis of size 2), sampled from the same z.
The model has no regularisation: the grid's lam must be (0,).

Keys: seed index ``s`` gets ``fold_in(key(grid.seed), s)`` and from it, by ``fold_in`` with
fixed tags, the two training sets and their forward noise (nested rows, ``data.standard_rows``),
the shared noise z and the fresh set of Halder's relative distance. Randomness is a function of
where a point sits, never of chunking or device count.

Units: the data is ``mean + std g``; divergences and the relative distance are computed in
units of std around the true mean (they are invariant to that change of variables), so the
KDE sums never see the mean's large norm.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ... import data as data_mod
from ... import observables, threefry
from ...specs import Grid, Isotropic, OneStep, n_samples
from ..protocol import spec_kernel
from ...run.plan import buckets_by_load, pad_groups
from ..spectral.sizes import pad_rows
from . import model as onestep

VARIABLES: dict[str, tuple[str, ...]] = {
    "m": (), "q": (), "m_kad": (), "mem_frac": (), "kl": (), "kl_rev": (), "h2": (), "delta": (), "p_delta": (),
}

_TAG_A, _TAG_B, _TAG_NA, _TAG_NB, _TAG_Z, _TAG_FRESH = range(6)


def point_keys(root: jax.Array, seed_idx) -> tuple[jax.Array, ...]:
    """(k_a, k_b, k_noise_a, k_noise_b, k_z, k_fresh) of a seed: the one documented key layout."""
    k_seed = jax.random.fold_in(root, seed_idx)
    return tuple(jax.random.fold_in(k_seed, t) for t in range(6))


def _bandwidth2(n, d: int, dtype):
    """Halder's KDE bandwidth squared in std units: ``n^(-2/d)``."""
    return jnp.exp(-2.0 / d * jnp.log(jnp.asarray(n, dtype)))


def fresh_pairs(seed_idx, root, *, spec: Isotropic, model: OneStep, dtype):
    """``kde_pairs`` of a seed's fresh set (std units): the model-free term of Delta, once per seed."""
    fresh = data_mod.standard_rows(point_keys(root, seed_idx)[5], model.fresh, spec.d, dtype)
    return observables.kde_pairs(fresh, model.fresh, _bandwidth2(model.fresh, spec.d, dtype))


def _model(keys, n, z, fresh, a_fresh, *, spec: Isotropic, model: OneStep, n_pad: int):
    """One model of a pair: draw, noise, fit, sample, measure."""
    k_rows, k_noise = keys
    dt = z.dtype
    g0 = data_mod.standard_rows(k_rows, n_pad, spec.d, dt)  # std units around the mean
    X0 = spec.mean + spec.std * g0
    XT = onestep.forward(X0, data_mod.standard_rows(k_noise, n_pad, spec.d, dt), model.horizon)
    law = onestep.fit(X0, XT, n, model.horizon)
    x = onestep.sample(law, z)
    out = observables.memorisation(x[None], X0, n)
    out = {k: v[0] for k, v in out.items()}
    dmu = (law.mu - spec.mean) / spec.std
    var = law.var / spec.std**2
    div = observables.gaussian_divergences(var[None], jnp.zeros(1, dt), law.evecs, jnp.ones(spec.d, dt),
                                           jnp.zeros((spec.d, 0), dt), jnp.zeros(0, dt), True, dmu=dmu)
    out.update({k: v[0] for k, v in div.items()})
    eps_t, eps_f = _bandwidth2(n, spec.d, dt), _bandwidth2(model.fresh, spec.d, dt)
    train = (observables.kde_pairs(g0, n, eps_t), observables.kde_cross(g0, n, dmu, law.evecs, var, eps_t))
    b_fresh = observables.kde_cross(fresh, model.fresh, dmu, law.evecs, var, eps_f)
    out["delta"] = observables.relative_distance(train, (a_fresh, b_fresh))
    out["p_delta"] = (out["delta"] > 0).astype(dt)
    return out, x


def point(seed_idx, n, root, a_fresh, *, spec: Isotropic, model: OneStep, n_pad: int, dtype):
    """All order parameters of one grid point (a pair of one-step models).

    Args:
        seed_idx: seed index [] (uint32); n: training points per model [] (int, <= n_pad).
        root: the root PRNG key; a_fresh: ``fresh_pairs`` of every seed [seeds].
        spec, model, n_pad, dtype: static.

    Returns:
        dict of scalars (``VARIABLES``): pair means; ``q`` between the two models.
    """
    with jax.named_scope("onestep_point"):
        k_a, k_b, k_na, k_nb, k_z, k_fresh = point_keys(root, seed_idx)
        z = data_mod.normal(k_z, (model.samples, spec.d), dtype)
        fresh = data_mod.standard_rows(k_fresh, model.fresh, spec.d, dtype)
        keys = (jnp.stack([k_a, k_b]), jnp.stack([k_na, k_nb]))
        one = partial(_model, spec=spec, model=model, n_pad=n_pad)
        per, x = jax.vmap(one, in_axes=(0, None, None, None, None))(keys, n, z, fresh, a_fresh[seed_idx])
        out = {k: jnp.mean(v, axis=0) for k, v in per.items()}
        out["q"] = observables.convergence(x[0], x[1])
        return out


def model_flops(n_pad: int, d: int, samples: int, fresh: int) -> float:
    """Rough flops of one model at ``n_pad`` rows: what the bucket planner weighs."""
    r = min(n_pad, d)
    fit = 9.0 * (r**3 + d**3) + 6.0 * n_pad * d * max(n_pad, d)  # the OLS eigh, B B^T; products
    kde = 2.0 * (n_pad * n_pad + fresh * d + samples * n_pad) * d  # train pairs and cross terms, distances
    return fit + kde


class OneStepEngine:
    """``OneStep`` over ``Isotropic`` data (see ``engines.protocol.Engine``)."""

    name = "onestep"
    point_name = "point (a pair of one-step models)"
    per_device = 2
    arithmetic = 1
    batch = 8
    variables = VARIABLES
    values_per_point = 1

    def __init__(self, data, model: OneStep, grid: Grid, dtype):
        if not isinstance(data, Isotropic):
            raise ValueError(f"data must be Isotropic for the OneStep model, got {type(data).__name__}")
        if not isinstance(grid, Grid):
            raise ValueError(f"grid must be a memgen.Grid, got {type(grid).__name__}")
        if grid.lam != (0.0,):
            raise ValueError(f"Grid.lam must be [0] for the OneStep model (it has no regularisation), "
                             f"got {list(grid.lam)}")
        for name in ("beta", "alpha"):
            if getattr(grid, name) is not None:
                raise ValueError(f"Grid.{name} must be unset for Isotropic data, got {list(getattr(grid, name))}")
        for g in grid.gamma:
            if n_samples(g, data.d) < 2:
                raise ValueError(f"Grid.gamma must be >= {1.5 / data.d:.3g} so that n = round(gamma*d) >= 2 "
                                 f"(OLS with intercept) at d={data.d}, got {g}")
        self.data, self.model, self.grid, self.dtype = data, model, grid, jnp.dtype(dtype)
        self.axes = (("gamma", grid.gamma), ("seed", tuple(range(grid.seeds))))
        self.ns = np.array([n_samples(g, data.d) for g in grid.gamma], np.int32)
        self.pads = pad_groups(self.ns, 2 * grid.seeds, partial(pad_rows, d=data.d),
                               partial(model_flops, d=data.d, samples=model.samples, fresh=model.fresh))
        self.coords = {"gamma": list(grid.gamma), "seed": np.arange(grid.seeds), "n": ("gamma", self.ns.tolist())}

    def validate(self) -> None:
        pass

    def buckets(self) -> dict[int, np.ndarray]:
        flat = np.arange(len(self.grid.gamma) * self.grid.seeds).reshape(len(self.grid.gamma), self.grid.seeds)
        return buckets_by_load(self.ns, self.pads, flat, axis=0)

    def describe(self, n_pad: int) -> str:
        return f"d={self.data.d}, n_pad={n_pad}, fresh={self.model.fresh}"

    def point_bytes(self, n_pad: int, itemsize: int) -> int:
        d, m, s = self.data.d, self.model.fresh, self.model.samples
        per_model = (5 * n_pad * d + 6 * d * d + 3 * max(n_pad, d) ** 2 + 3 * n_pad * n_pad  # fit, law, pairs
                     + 3 * s * d + 4 * s * n_pad + 2 * m * d + 3 * min(m, 1024) * m)  # samples, fresh set
        return 2 * per_model * itemsize

    def shared_bytes(self, itemsize: int) -> int:
        return itemsize * self.grid.seeds

    def inputs(self, index: np.ndarray):
        """(seed index [k] uint32, n [k] int32)."""
        g, s = np.unravel_index(index, (len(self.grid.gamma), self.grid.seeds))
        return s.astype(np.uint32), self.ns[g]

    def shared(self):
        """(root key, the fresh set's pair term of every seed [seeds]), computed once per run."""
        root = threefry.key(self.grid.seed)
        fn = jax.jit(lambda seeds: jax.lax.map(
            partial(fresh_pairs, root=root, spec=self.data, model=self.model, dtype=self.dtype), seeds))
        return root, np.asarray(fn(jnp.arange(self.grid.seeds, dtype=jnp.uint32)))

    def static(self):
        return self.data, self.model, self.dtype.name

    @staticmethod
    def kernel(static, n_pad: int):
        return spec_kernel(point, static, n_pad=n_pad)


__all__ = ["OneStepEngine", "point", "point_keys", "fresh_pairs", "VARIABLES"]
