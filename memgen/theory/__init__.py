"""Exact asymptotic theory of the linear generator, as an ``xarray.Dataset``.

``theory(data, grid)`` evaluates, on the grid's (gamma, lam) points, the same variables the
simulation store holds (``q``, ``w2``, ``m``, ``Q``, ``top_eig``), with the same dims minus
``seed``. It is the one batching layer of this sub-package: it jits the spiked closed forms
over the whole (gamma, lam) mesh and ``lax.map``s the power-law solvers; the modules below
are pure, broadcasting kernels. ``theory`` always computes in float64 (inside
``jax.enable_x64``), whatever the program's x64 flag: the solvers are cheap, and float32 is
not enough for them (gamma = 1, lam = 0 of a power law did not converge).

* Spiked: ``mp`` (Marchenko–Pastur quadrature), ``spiked`` (q, W2, BBP), ``memorisation``.
* PowerLaw: ``powerlaw`` (Silverstein deterministic equivalents at the actual finite d).
* LinearDiffusion (and KL for the linear generator): ``diffusion`` (renormalised noise;
  MP integrals of any spectral gain or gain stack; spiked data only so far).

See docs/theory.md for the formulas, their assumptions and the tests that check them.
"""

from __future__ import annotations

import json
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .. import specs

from ..engines.spectral import gains
from . import anisotropic, diffusion, memorisation, mp, onestep, powerlaw, spiked
from .memorisation import memorisation as memorisation_fixed_n
from .memorisation import memorisation_proportional
from .mp import mp_density, mp_edges, mp_expect
from .spiked import bbp_overlap, bulk_w2, convergence, latent_overlap, outlier_eigenvalue, top_eigenvalue

VARIABLES = ("q", "w2", "m", "kl", "kl_rev", "Q", "top_eig")  # in table order; each where a theory exists
TABLE_FORMATS = ("csv", "json", "table")


_F64 = jnp.float64

# Variables with no reliable theory in a regime (docs/theory.md): returned as NaN + a note.
POWERLAW_M_NOTE = (
    "no reliable theory for power-law m at alpha > 0 (docs/theory.md, Memorisation / "
    "Theory vs simulation: the proportional-load law assumes independent overlaps, which "
    "fails for power-law spectra, e.g. 0.57 vs simulated 0.41 at alpha = 1, > 1 at alpha = 2); NaN"
)


def _x64():
    """Context in which JAX computes in float64, whatever the global ``jax_enable_x64``."""
    ctx = getattr(jax, "enable_x64", None)
    if ctx is None:  # pragma: no cover  (older jax)
        from jax.experimental import enable_x64 as ctx
    return ctx(True)


def _no_theory(data) -> str:
    return (
        f"theory: no asymptotic theory for {type(data).__name__} data "
        "(theory exists for Spiked and PowerLaw, and for Isotropic with the OneStep model)"
    )


def available(data, model=None) -> bool:
    """Whether ``theory`` has an asymptotic theory for this data and model."""
    model = specs.Linear() if model is None else model
    if isinstance(model, specs.Linear):
        return isinstance(data, (specs.Spiked, specs.PowerLaw))
    if isinstance(model, specs.OneStep):
        return isinstance(data, specs.Isotropic)
    return isinstance(model, specs.LinearDiffusion) and isinstance(data, (specs.Spiked, specs.PowerLaw))


def _validate(data, grid, model) -> None:
    """All input checks, before any compute: ``ValueError`` naming the parameter and range."""
    if isinstance(model, specs.OneStep) and isinstance(data, specs.Isotropic):
        if not isinstance(grid, specs.Grid):
            raise ValueError(f"theory: grid must be a memgen.Grid, got {type(grid).__name__}")
        return
    if not isinstance(data, (specs.Spiked, specs.PowerLaw)):
        raise ValueError(_no_theory(data))
    if not isinstance(model, (specs.Linear, specs.LinearDiffusion)):
        raise ValueError(f"theory: no asymptotic theory for the {type(model).__name__} model (theory exists for "
                         "Linear and LinearDiffusion)")
    if not isinstance(grid, specs.Grid):
        raise ValueError(f"theory: grid must be a memgen.Grid, got {type(grid).__name__}")
    grid.check(data)
    # n = round(gamma d) must be an exact float64 and int64 integer
    n_max = 2**53
    for g in grid.gamma:
        if g * data.d > n_max:
            raise ValueError(
                f"theory: Grid.gamma must be <= {n_max / data.d:.3g} (n = gamma*d <= 2^53) at d={data.d}, got {g!r}"
            )
    # spike strengths: the power-law solvers use sigma^4 (W2 equivalent), which must stay
    # finite in float64; 1e50 is far beyond any physical spike (sigma is normalised to mean 1)
    b_max = 1e50
    betas = list(data.beta) + list(grid.beta or ())
    for b in betas:
        if b > b_max:
            name = "Grid.beta" if grid.beta is not None and b in grid.beta else f"{type(data).__name__}.beta"
            raise ValueError(f"theory: {name} must be <= {b_max:g} (float64 range of the solvers), got {b!r}")


@jax.jit
def _spiked_arrays(gamma, lam, betas, n, d):
    """gamma [G], lam [L], betas [B, k], n [G] -> q, w2, m [B?, G, L], Q, top [B, G]."""
    g2, l2 = gamma[:, None], lam[None, :]
    i = spiked.sqrt_moment(g2, l2)
    q = i**2 / (1.0 + l2)
    w2 = 2.0 + l2 - 2.0 * i
    tau1 = 1.0 + jnp.sum(betas, axis=-1) / d  # [B]
    tau2 = 1.0 + (2.0 * jnp.sum(betas, axis=-1) + jnp.sum(betas**2, axis=-1)) / d
    m = memorisation_proportional(
        n[None, :, None], d, l2[None], tau1[:, None, None], tau2[:, None, None]
    )  # [B, G, L]
    big_q = latent_overlap(gamma[None, :], betas[:, None, :])  # [B, G]
    top = top_eigenvalue(gamma[None, :], betas[:, None, :])
    return q, w2, m, big_q, top


def _spiked(data: specs.Spiked, grid: specs.Grid, gamma, lam, n):
    dt = gamma.dtype
    k = data.rank
    if grid.beta is None:
        betas = jnp.asarray([data.beta], dt)  # [1, k]
    else:
        betas = jnp.asarray(grid.beta, dt)[:, None] * jnp.ones((1, k), dt)
    q, w2, m, big_q, top = _spiked_arrays(gamma, lam, betas, n.astype(dt), jnp.asarray(float(data.d), dt))
    nb = betas.shape[0]
    q = jnp.broadcast_to(q[None], (nb,) + q.shape)
    w2 = jnp.broadcast_to(w2[None], (nb,) + w2.shape)
    return {"q": q, "w2": w2, "m": m, "Q": big_q, "top_eig": top}  # leading beta axis


def _powerlaw_one(data: specs.PowerLaw, alpha: float, beta, gamma, lam, n, model):
    """All variables for one (alpha, spike strengths) pair: [G, L] and [G] arrays.

    One compiled program per (d, spikes, model, shapes), whatever alpha: every alpha of a sweep
    and every later call reuses it (op by op, the first call compiled 43 kernels: 12.5 s for a
    5-alpha sweep at d = 300; ``tests/test_theory.py``)."""
    d = data.d
    axis_spikes = bool(beta) and data.directions == "axis"
    a = jnp.asarray(alpha, gamma.dtype)
    sigma = _spectrum(a, d, tuple(beta) if axis_spikes else None)
    # the population axis whose outlier is the top eigenvalue: static for the program below
    j_top = int(np.argmax(np.asarray(sigma)))
    out = _powerlaw_arrays(a, sigma, gamma, lam, n, d=d, beta=tuple(beta), axis_spikes=axis_spikes,
                           k=len(beta) if beta else data.k, j_top=j_top, model=model)
    if "residual" in out:
        powerlaw.check_residual(out.pop("residual"), f"PowerLaw(alpha={alpha}) deterministic equivalent")
    return out


_spectrum = jax.jit(powerlaw.powerlaw_spectrum, static_argnums=(1, 2))


@partial(jax.jit, static_argnames=("d", "beta", "axis_spikes", "k", "j_top", "model"))
def _powerlaw_arrays(alpha, sigma, gamma, lam, n, *, d: int, beta: tuple, axis_spikes: bool, k: int, j_top: int,
                     model) -> dict:
    """``_powerlaw_one``'s arrays: alpha [] (traced), sigma [d] (the population spectrum, axis
    spikes included), gamma [G], lam [L], n [G]; Q scores the first ``k`` axes (axis spikes, or
    the top k of an unspiked spectrum); ``j_top`` the axis of the top outlier."""
    dt = gamma.dtype
    if isinstance(model, specs.LinearDiffusion):
        vals = _anisotropic(model, sigma, gamma, lam)
    else:
        vals = powerlaw.grid_values(sigma, gamma, lam)
    extra1 = 0.0 if (axis_spikes or not beta) else sum(beta) / d
    extra2 = 0.0 if (axis_spikes or not beta) else (2.0 * sum(beta) + sum(b * b for b in beta)) / d
    tau1 = jnp.mean(sigma) + extra1
    tau2 = jnp.mean(sigma**2) + extra2
    # alpha = 0 is white data (+ spikes): the spiked law, checked against simulation; alpha > 0
    # has no reliable theory (docs/theory.md): NaN, noted on the variable
    m = memorisation_proportional(n.astype(dt)[:, None], jnp.asarray(float(d), dt), lam[None, :], tau1, tau2)
    m = jnp.where(alpha > 0, jnp.nan, m)
    # latent overlaps and the top eigenvalue, per gamma
    x_top = powerlaw.axis_outlier(sigma, gamma, j_top)[1]
    edge = jax.vmap(lambda g: powerlaw.bulk_edge(sigma, g)[0])(gamma)
    top = jnp.where(jnp.isnan(x_top), edge, x_top)
    if beta and not axis_spikes:
        # random-direction spikes: sigma is the unspiked spectrum, each spike an outlier on it
        per = [jax.vmap(lambda g, b=b: powerlaw.random_spike_outlier(sigma, g, b))(gamma) for b in beta]
        big_q = jnp.mean(jnp.stack([p[0] for p in per]), axis=0)
        top = jnp.maximum(top, jnp.max(jnp.stack([p[1] for p in per]), axis=0))
    else:  # each axis a spike on the other d - 1 values; subspace Q incl. cross overlaps
        big_q = powerlaw.latent_recovery(sigma, gamma, list(range(k)))
    out = {"Q": big_q, "top_eig": top}
    if isinstance(model, specs.LinearDiffusion):  # no theory of m, none of W2 for a general gain
        return {**out, **{v: vals[v] for v in ("q", "kl", "kl_rev")}}
    return {**out, "q": vals["q"], "w2": vals["w2"], "m": m, "residual": vals["residual"]}


def _anisotropic(model, sigma, gamma, lam) -> dict:
    """q, kl, kl_rev [G, L] of a diffusion sampler's gain on the spectrum ``sigma`` (the local
    measures of C, ``anisotropic``); NaN where the quadrature did not converge (residual over
    ``anisotropic.RESIDUAL_TOL``: gamma >~ 30), which the Dataset notes."""
    G = lambda l: gains.gain(l, lam[:, None], model)  # noqa: E731  [J, L, K]
    vals = anisotropic.values(G, gamma, sigma, noise_axis=True)  # traced inside _powerlaw_arrays
    bad = vals["residual"] > anisotropic.RESIDUAL_TOL
    bad = bad.reshape(bad.shape + (1,) * (vals["q"].ndim - bad.ndim))  # per load or per point
    return {k: jnp.where(bad, jnp.nan, vals[k]) for k in ("q", "kl", "kl_rev")}


def theory(data, grid: specs.Grid, model=None) -> xr.Dataset:
    """Asymptotic q, w2, m, Q, top_eig (and kl, kl_rev on spiked data) on the grid (no seed dim).

    Args:
        data: a ``specs.Spiked`` or ``specs.PowerLaw`` spec.
        grid: a ``specs.Grid``; its ``beta``/``alpha`` sweeps become leading dims.
        model: ``specs.Linear()`` (default) or a ``specs.LinearDiffusion`` (Spiked data; its
            ``lam`` is the denoiser's ridge): q, w2, kl, kl_rev from the MP integrals of the
            sampler's gain stack (``diffusion``; ddpm's J independent noises included), Q and
            top_eig from BBP; no theory of m. A centred denoiser gets the same theory, exact to
            leading order (``diffusion``'s module doc). Isotropic data has a theory with the
            ``OneStep`` model only.

    Returns:
        Dataset with dims ``([beta], [alpha], gamma, lam)``, coords ``gamma``, ``lam``,
        ``n`` (on gamma, ``round(gamma d)``) and the swept ``beta``/``alpha``; float64
        variables ``q, w2, m [..., gamma, lam]`` and ``Q, top_eig [..., gamma]``; attrs
        ``memgen_kind = "theory"`` and ``memgen_spec`` (JSON of the data, model and grid specs).
        Everything is computed in float64, whatever ``jax_enable_x64`` says. A variable
        without a reliable theory in a regime is NaN there and carries ``attrs["note"]``
        (power-law ``m`` at alpha > 0).

    Raises:
        ValueError: before any compute, for data without a theory (only Spiked and
            PowerLaw have one), a grid that is not a ``Grid`` or does not fit the data
            (``Grid.check``), or values beyond the float64 range of the formulas.
        RuntimeError: when a power-law solver does not converge (not expected for
            validated input).
    """
    model = specs.Linear() if model is None else model
    _validate(data, grid, model)
    if isinstance(model, specs.OneStep):
        return _onestep(data, grid, model)
    with _x64():
        return _theory(data, grid, model)


def _onestep(data: specs.Isotropic, grid: specs.Grid, model: specs.OneStep) -> xr.Dataset:
    """Halder's population limits (``onestep``) on the grid's gammas."""
    n = np.array([specs.n_samples(g, data.d) for g in grid.gamma], dtype=np.int64)
    vals = onestep.values(n, data.d, model.horizon)
    spec = json.dumps({"data": specs.to_dict(data), "model": specs.to_dict(model), "grid": specs.to_dict(grid)})
    ds = xr.Dataset({k: ("gamma", v) for k, v in vals.items()},
                    coords={"gamma": ("gamma", np.asarray(grid.gamma, float)), "n": ("gamma", n)},
                    attrs={"memgen_kind": "theory", "memgen_spec": spec})
    for v in ds.data_vars:
        ds[v].attrs["note"] = "exact (+inf / 1) for n - 1 < d; the n -> infinity limit otherwise"
    return ds


@partial(jax.jit, static_argnames=("model",))
def _spectral(model, gamma, lam) -> dict:
    """q, w2, kl, kl_rev [G, L] of a spectral model from the MP integrals of its gain stack (one
    program per model and shapes: a jit of a fresh lambda compiled again on every call)."""
    G = lambda s: gains.gain(s, lam[None, :, None], model)  # noqa: E731  s [G, 1, K] -> [J, G, L, K]
    return diffusion.spectral_values(G, gamma[:, None])


def _theory(data, grid: specs.Grid, model) -> xr.Dataset:
    dt = _F64
    gamma = jnp.asarray(grid.gamma, dt)
    lam = jnp.asarray(grid.lam, dt)
    n_int = np.array([specs.n_samples(g, data.d) for g in grid.gamma], dtype=np.int64)
    n = jnp.asarray(n_int, jnp.int64)

    lead_dims: list[str] = []
    coords: dict = {}
    if isinstance(data, specs.Spiked):
        out = _spiked(data, grid, gamma, lam, n)
        nb = out["Q"].shape[0]
        extra = {k: jnp.broadcast_to(v[None], (nb,) + v.shape) for k, v in _spectral(model, gamma, lam).items()}
        out.update(extra if isinstance(model, specs.LinearDiffusion) else {k: extra[k] for k in ("kl", "kl_rev")})
        if isinstance(model, specs.LinearDiffusion):
            del out["m"]  # no theory of memorisation for diffusion samplers
        if grid.beta is not None:
            lead_dims.append("beta")
            coords["beta"] = ("beta", np.asarray(grid.beta, dtype=float))
        else:
            out = {k: v[0] for k, v in out.items()}
    else:
        alphas = grid.alpha if grid.alpha is not None else (data.alpha,)
        betas = [tuple(b for _ in data.beta) for b in grid.beta] if grid.beta is not None else [data.beta]
        rows = [[_powerlaw_one(data, a, b, gamma, lam, n, model) for a in alphas] for b in betas]
        out = {v: jnp.stack([jnp.stack([r[v] for r in row]) for row in rows]) for v in rows[0][0]}
        if grid.beta is not None:
            lead_dims.append("beta")
            coords["beta"] = ("beta", np.asarray(grid.beta, dtype=float))
        else:
            out = {k: v[0] for k, v in out.items()}
        if grid.alpha is not None:
            lead_dims.append("alpha")
            coords["alpha"] = ("alpha", np.asarray(grid.alpha, dtype=float))
        else:
            out = {k: v[0] for k, v in out.items()} if grid.beta is None else {k: v[:, 0] for k, v in out.items()}

    coords["gamma"] = ("gamma", np.asarray(grid.gamma, dtype=float))
    coords["lam"] = ("lam", np.asarray(grid.lam, dtype=float))
    coords["n"] = ("gamma", n_int)
    full = tuple(lead_dims) + ("gamma", "lam")
    per_gamma = tuple(lead_dims) + ("gamma",)
    data_vars = {
        v: (per_gamma if v in ("Q", "top_eig") else full, np.asarray(out[v], dtype=np.float64))
        for v in VARIABLES if v in out
    }
    spec = json.dumps({"data": specs.to_dict(data), "model": specs.to_dict(model), "grid": specs.to_dict(grid)})
    ds = xr.Dataset(data_vars, coords=coords, attrs={"memgen_kind": "theory", "memgen_spec": spec})
    if "m" in ds and isinstance(data, specs.PowerLaw) and any(a > 0 for a in (grid.alpha or (data.alpha,))):
        ds["m"].attrs["note"] = POWERLAW_M_NOTE
    if isinstance(model, specs.LinearDiffusion) and isinstance(data, specs.PowerLaw):
        for v in ("q", "kl", "kl_rev"):
            ds[v].attrs["note"] = ("deterministic equivalent of the sampler's gain (theory.anisotropic); NaN where its "
                                   "quadrature did not converge (gamma >~ 30)")
    return ds


def theory_table(ds: xr.Dataset, fmt: str = "table") -> str:
    """One row per grid point: gamma, [lam], [beta], [alpha], n, then every variable of ``ds``.

    Args:
        ds: a dataset from ``theory``.
        fmt: ``"csv"``, ``"json"`` (a list of records) or ``"table"`` (aligned text).

    Returns:
        The table as a string.

    Raises:
        ValueError: for an unknown ``fmt``.
    """
    if fmt not in TABLE_FORMATS:
        raise ValueError(f"theory_table fmt must be one of {TABLE_FORMATS}, got {fmt!r}")
    lead = [d for d in ("beta", "alpha") if d in ds.dims]
    present = [v for v in ("q", "Q", "w2", "top_eig", "m", "kl", "kl_rev", "h2", "var") if v in ds]
    present += [v for v in ds.data_vars if v not in present]
    grid = ["gamma", "lam"] if "lam" in ds.dims else ["gamma"]  # OneStep has no lam
    cols = grid + lead + ["n"] + present
    b = xr.broadcast(*[ds[v] for v in present])
    order = lead + grid
    arrays = {v.name: v.transpose(*order).values.ravel() for v in b}
    mesh = np.meshgrid(*[ds[c].values for c in order], indexing="ij")
    for c, arr in zip(order, mesh):
        arrays[c] = arr.ravel()
    n_of_gamma = dict(zip(ds["gamma"].values.tolist(), ds["n"].values.tolist()))
    arrays["n"] = np.array([n_of_gamma[g] for g in arrays["gamma"].tolist()], dtype=np.int64)
    rows = [{c: (int(arrays[c][i]) if c == "n" else float(arrays[c][i])) for c in cols} for i in range(arrays["gamma"].size)]
    if fmt == "json":
        return json.dumps(rows)
    if fmt == "csv":
        lines = [",".join(cols)] + [",".join(repr(r[c]) for c in cols) for r in rows]
        return "\n".join(lines) + "\n"
    cells = [cols] + [[str(r[c]) if c == "n" else f"{r[c]:.6g}" for c in cols] for r in rows]
    widths = [max(len(row[j]) for row in cells) for j in range(len(cols))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells) + "\n"


__all__ = [
    "theory",
    "POWERLAW_M_NOTE",
    "theory_table",
    "VARIABLES",
    "mp",
    "spiked",
    "memorisation",
    "powerlaw",
    "mp_edges",
    "mp_density",
    "mp_expect",
    "convergence",
    "bulk_w2",
    "bbp_overlap",
    "outlier_eigenvalue",
    "latent_overlap",
    "top_eigenvalue",
    "memorisation_fixed_n",
    "memorisation_proportional",
]
