"""The figure set: one function per figure, ``make_all`` for all of them.

Every ``fig_*`` function computes what it shows (scans with ``memgen.scan``, theory with
``memgen.theory``), draws it with ``memgen.plots`` (simulation as points ± s.e.m. over seeds,
theory as lines) and writes ``<out_dir>/<name>.png`` and ``.pdf``. It returns the list of
paths written. ``make_all(out_dir="memgen-figures", mode)`` writes every figure plus
``figures.json``, an index recording, per figure, its files, the exact specs
(``memgen.specs.to_dict`` of data, model and grid) and the mode; at the top, the mode
(``"mixed"`` when ``only`` kept entries of another mode) and the ``SIZES`` row of each mode
present. Scan results are kept next to the figures as ``<out_dir>/data/<name>.nc`` (with
``<v>_theory`` attached where a theory exists).

Sizes come from the table ``SIZES`` keyed by mode:

* ``"tiny"``: seconds; for the test suite only (the numbers are not meaningful).
* ``"quick"``: all figures in about 4 minutes on 2 CPU cores (d = 200, 8 seeds, 8x8 images).
* ``"full"``: paper-sized linear grids (d = 1000, 16 seeds; about 30 minutes on 2 CPU cores)
  and wider, longer-trained denoisers (width 32, depth 6, 3000 steps, 4 seeds; still 8x8
  images, which is what a CPU trains in minutes).

The denoisers are trained longer than ``ConvDenoiser.quick()`` (2500 steps, width 16 in quick
mode): the quick preset does not memorise even n = 2 images, so its curves show no transition.
Both modes start at n = 1, where a trained denoiser copies its one training image (m near 1).
The power-law Q is the top-eigenvector recovery (``k = 1``): the theory's axis outliers
score each population axis alone, which is the subspace overlap only for k = 1.

Compile time dominates small scans, so the scans of one data spec share compiled kernels:
they use the same lam list and fixed micro-batches (``batch = chunk``), and the spiked
figures reuse one data spec.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from . import plots, specs
from . import data as data_mod
from .specs import Grid, Linear, LinearDiffusion, PowerLaw, Spiked
from .denoisers import ConvDenoiser, ImageField, Images
from .scan import scan as _scan
from .store import attach_theory
from .theory import theory as _theory

MODES = ("tiny", "quick", "full")

#: Sizes per mode. ``gamma`` entries are (lo, hi, count) log-spaced.
SIZES: dict[str, dict] = {
    "tiny": dict(
        diff_models=(("ode", 1), ("ddim", 3)), diff_d=16,
        d=16, gamma=(0.7, 0.9, 2), lam=(0.0, 0.1), lam_show=(0.0, 0.1), seeds=2, samples=4, beta=2.0,
        betas=(1.0, 2.0), alphas=(0.5, 1.5), pl_k=1, theory_points=12,
        spec_d=40, spec_gammas=(0.5, 2.0),
        img_size=(8, 8), img_gamma=(0.125, 1.0), img_lam=(0.0,), img_seeds=1,
        denoiser=dict(depth=2, width=2, steps=4, batch=4, sample_steps=2, samples=5, test=2),
        pair_n=(2, 16), pair_show=4,
        bench_d=(8, 16), bench_seeds=2, naive_seeds=1,
    ),
    "quick": dict(
        diff_models=(("ode", 1), ("ddim", 5), ("ddim", 18), ("heun", 5), ("heun", 18)), diff_d=200,
        d=200, gamma=(0.05, 8.0, 12), lam=(0.0, 0.01, 0.03, 0.1, 0.3, 1.0), lam_show=(0.0, 0.01, 0.1, 1.0),
        seeds=8, samples=32, beta=2.0, betas=(0.5, 1.0, 2.0, 4.0), alphas=(0.5, 1.0, 2.0), pl_k=1,
        theory_points=80, spec_d=1000, spec_gammas=(0.2, 1.0, 4.0),
        img_size=(8, 8), img_gamma=(1 / 64, 1 / 32, 1 / 8, 1 / 2, 2.0, 8.0), img_lam=(0.0,), img_seeds=2,
        denoiser=dict(depth=5, width=16, steps=2500, batch=16, lr=3e-3, sample_steps=25, samples=32, test=16),
        pair_n=(2, 512), pair_show=8,
        bench_d=(32, 64, 128), bench_seeds=8, naive_seeds=2,
    ),
    "full": dict(
        diff_models=(("ode", 1), ("ddim", 5), ("ddim", 10), ("ddim", 18), ("heun", 5), ("heun", 18)), diff_d=1000,
        d=1000, gamma=(0.03, 10.0, 20), lam=(0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
        lam_show=(0.0, 0.01, 0.1, 1.0), seeds=16, samples=64, beta=2.0,
        betas=(0.5, 1.0, 2.0, 4.0), alphas=(0.5, 1.0, 2.0), pl_k=1, theory_points=200,
        spec_d=2000, spec_gammas=(0.2, 1.0, 4.0),
        img_size=(8, 8), img_gamma=(1 / 64, 1 / 32, 1 / 8, 1 / 2, 2.0, 8.0), img_lam=(0.0,), img_seeds=4,
        denoiser=dict(depth=6, width=32, steps=3000, batch=16, lr=2e-3, sample_steps=25, samples=32, test=16),
        pair_n=(2, 512), pair_show=8,
        bench_d=(32, 64, 128, 256, 512), bench_seeds=8, naive_seeds=2,
    ),
}


# ---------------------------------------------------------------------------- helpers


def _sizes(mode: str) -> dict:
    if mode not in SIZES:
        raise ValueError(f"mode must be one of {list(SIZES)}, got {mode!r}")
    return SIZES[mode]


def _geom(lo: float, hi: float, count: int) -> list[float]:
    return [float(f"{v:.4g}") for v in np.geomspace(lo, hi, count)]


def _gammas(z: dict) -> list[float]:
    return _geom(*z["gamma"])


def _dense(gammas, points: int) -> list[float]:
    return _geom(min(gammas), max(gammas), points)


def _denoiser(z: dict) -> ConvDenoiser:
    spec = z["denoiser"]
    if spec == "quick":
        return ConvDenoiser.quick()
    if spec == "default":
        return ConvDenoiser()
    return ConvDenoiser(**spec)


def _specs(data=None, model=None, grid=None, label=None, **extra) -> dict:
    out = {"data": None if data is None else specs.to_dict(data),
           "model": None if model is None else specs.to_dict(model),
           "grid": None if grid is None else specs.to_dict(grid)}
    if label is not None:
        out["label"] = label
    out.update(extra)
    return out


def _batch(seeds: int) -> dict:
    """Fixed micro-batch and chunk: every chunk of a data spec has one shape (one compile)."""
    b = min(8, seeds)
    return dict(batch=b, chunk=b * jax.device_count())


def _run(data, model, grid) -> xr.Dataset:
    return _scan(data, model, grid, progress=False, **_batch(grid.seeds))


def _theory_on(data, grid: Grid, points: int) -> xr.Dataset:
    """Theory on the scan's gammas and ``points`` log-spaced ones between them (one call)."""
    gammas = sorted(set(grid.gamma) | set(_dense(grid.gamma, points)))
    return _theory(data, Grid(gamma=gammas, lam=grid.lam, beta=grid.beta, alpha=grid.alpha))


def _save_data(ds: xr.Dataset, out_dir: Path, name: str) -> Path:
    path = Path(out_dir) / "data" / f"{name}.nc"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def _record(log, name: str, files, specs, mode: str, t0: float, **extra) -> None:
    if log is None:
        return
    entry = {"name": name, "mode": mode, "files": [str(p) for p in files],
             "specs": specs if isinstance(specs, list) else [specs],
             "seconds": round(time.perf_counter() - t0, 2)}
    entry.update(extra)
    log.append(entry)


def _spiked_scan(z: dict) -> tuple[Spiked, Linear, Grid, xr.Dataset]:
    """The (gamma, lam, seed) scan shared by figures 1 and 2 (cached per mode and sizes)."""
    data = Spiked(d=z["d"], beta=z["beta"])
    model = Linear(samples=z["samples"])
    grid = Grid(gamma=_gammas(z), lam=z["lam"], seeds=z["seeds"])
    key = (data, model, grid)
    if _CACHE.get("spiked_key") != key:
        _CACHE["spiked_key"], _CACHE["spiked_ds"] = key, _run(data, model, grid)
    return data, model, grid, _CACHE["spiked_ds"]


_CACHE: dict = {}
_styled = matplotlib.rc_context(plots.STYLE)  # the style of memgen.plots, per call


def _finish(fig: Figure, out_dir, name: str) -> list[Path]:
    return plots.save(fig, Path(out_dir) / name)


# ---------------------------------------------------------------------------- figures


@_styled
def fig_order_parameters(out_dir, mode: str = "quick", log: list | None = None) -> list[Path]:
    """Figure 1: m, q, Q against gamma for several lam on spiked data, theory lines, BBP line."""
    t0 = time.perf_counter()
    z = _sizes(mode)
    data, model, grid, ds = _spiked_scan(z)
    th = _theory_on(data, grid, z["theory_points"])
    ds = attach_theory(ds, th)
    _save_data(ds, out_dir, "order_parameters")
    fig = plots.order_parameters(ds, theory=th, lam=z["lam_show"], figsize=(7.0, 2.4))
    fig.suptitle(rf"Spiked data ($d = {data.d}$, $\beta = {_f(z['beta'])}$, {grid.seeds} seeds): "
                 "points simulation ± s.e.m., lines asymptotic theory", fontsize=8)
    files = _finish(fig, out_dir, "order_parameters")
    _record(log, "order_parameters", files, _specs(data, model, grid), mode, t0)
    return files


@_styled
def fig_phase_diagrams(out_dir, mode: str = "quick", log: list | None = None) -> list[Path]:
    """Figure 2: heat maps of q, m, w2 over (gamma, lam) with theory contours and the BBP line."""
    t0 = time.perf_counter()
    z = _sizes(mode)
    data, model, grid, ds = _spiked_scan(z)
    pos = [v for v in grid.lam if v > 0]
    lam_dense = list(grid.lam)
    if pos:  # lam = 0 (if scanned) and 30 log-spaced values: smooth contours
        lam_dense = sorted({0.0} & set(grid.lam) | set(_geom(min(pos), max(pos), 30)))
    th = _theory(data, Grid(gamma=_dense(grid.gamma, z["theory_points"]), lam=lam_dense))
    fig = Figure(figsize=(10.2, 2.7), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, var in zip(axes, ("q", "m", "w2")):
        plots.phase_diagram(ds, var, theory=th, ax=ax)
        if ax.get_legend() is not None:  # the BBP line is named once, in the title
            ax.get_legend().remove()
        ax.set_title(plots.LABELS[var], fontsize=8)
    fig.suptitle(rf"Spiked data ($d = {data.d}$, $\beta = {_f(z['beta'])}$): colour = simulation, mean of "
                 rf"{grid.seeds} seeds; white contours = asymptotic theory; red dashed = BBP transition "
                 r"$\gamma_c = 1/\beta^2$", fontsize=8)
    files = _finish(fig, out_dir, "phase_diagrams")
    _record(log, "phase_diagrams", files, _specs(data, model, grid), mode, t0)
    return files


@_styled
def fig_latent_recovery(out_dir, mode: str = "quick", log: list | None = None) -> list[Path]:
    """Figure 3: Q against gamma for several beta (a Grid(beta=...) sweep), BBP transitions."""
    t0 = time.perf_counter()
    z = _sizes(mode)
    data = Spiked(d=z["d"], beta=z["beta"])  # the spec of figure 1: compiled kernels are shared
    model = Linear(samples=z["samples"])
    grid = Grid(gamma=_gammas(z), lam=z["lam"], seeds=z["seeds"], beta=z["betas"])
    ds = _run(data, model, grid)
    th = _theory_on(data, grid, 4 * z["theory_points"])  # Q jumps at gamma_c: a fine grid
    ds = attach_theory(ds, th)
    _save_data(ds, out_dir, "latent_recovery")
    fig = Figure(figsize=(7.0, 2.7), layout="constrained")
    ax_q, ax_top = fig.subplots(1, 2)
    plots.latent_recovery(ds, theory=th, ax=ax_q)
    ax_q.set_title(rf"latent recovery, $d = {data.d}$, {grid.seeds} seeds")
    # top eigenvalue: leaves the MP edge at the same transition
    mean, sem = plots.mean_sem(ds)
    cols = plots.palette(len(grid.beta), "plasma")  # the colours of plots.latent_recovery
    for b, c in zip(grid.beta, cols):
        mu, se = mean["top_eig"].sel(beta=b), sem["top_eig"].sel(beta=b)
        ax_top.errorbar(mu["gamma"], mu, yerr=se if np.any(se > 0) else None, fmt="o", color=c,
                        label=rf"$\beta = {_f(b)}$", elinewidth=0.8, zorder=3)
        t = th["top_eig"].sel(beta=b)
        ax_top.plot(t["gamma"], t, "-", color=c, zorder=2)
        ax_top.axvline(1 / b**2, color=c, ls="--", lw=0.8, zorder=1)
    g = np.asarray(th["gamma"])
    ax_top.plot(g, (1 + 1 / np.sqrt(g)) ** 2, ":", color="0.3", label=r"MP edge $(1+\gamma^{-1/2})^2$")
    ax_top.plot([], [], "-", color="0.3", label="theory")
    ax_top.set_xscale("log")
    ax_top.set_yscale("log")
    plots.log_ticks(ax_top.xaxis)
    plots.log_ticks(ax_top.yaxis)
    ax_top.set_xlabel(plots.GAMMA_LABEL)
    ax_top.set_ylabel(plots.LABELS["top_eig"])
    ax_top.set_title("top eigenvalue of $C$: an outlier above the bulk edge")
    ax_top.legend(fontsize=6, frameon=False)
    for ax in (ax_q, ax_top):
        for t in ax.texts:
            t.set_fontsize(6)
    files = _finish(fig, out_dir, "latent_recovery")
    _record(log, "latent_recovery", files, _specs(data, model, grid), mode, t0)
    return files


@_styled
def fig_powerlaw(out_dir, mode: str = "quick", log: list | None = None) -> list[Path]:
    """Figure 4: q and top-k latent recovery Q against gamma for power-law spectra (alpha sweep)."""
    t0 = time.perf_counter()
    z = _sizes(mode)
    data = PowerLaw(d=z["d"], alpha=z["alphas"][0], k=z["pl_k"])
    model = Linear(samples=z["samples"])
    lam = (0.0,) if 0.0 in z["lam"] else z["lam"][:1]
    grid = Grid(gamma=_gammas(z), lam=lam, seeds=z["seeds"], alpha=z["alphas"])
    ds = _run(data, model, grid)
    th = _theory_on(data, grid, z["theory_points"] // 2)
    ds = attach_theory(ds, th)
    _save_data(ds, out_dir, "powerlaw")
    fig = Figure(figsize=(7.0, 2.6), layout="constrained")
    ax_q, ax_big = fig.subplots(1, 2)
    plots.powerlaw_curves(ds, theory=th, var="q", ax=ax_q)
    plots.powerlaw_curves(ds, theory=th, var="Q", ax=ax_big)
    ax_q.set_title(rf"convergence, $\lambda = {_f(lam[0])}$")
    ax_big.set_title("recovery of the top eigenvector" if data.k == 1 else
                     rf"recovery of the top-{data.k} eigenvectors")
    fig.suptitle(rf"Power-law spectra $\sigma_i \propto i^{{-\alpha}}$ ($d = {data.d}$, {grid.seeds} seeds): "
                 "points simulation ± s.e.m., lines deterministic equivalent at this $d$", fontsize=8)
    files = _finish(fig, out_dir, "powerlaw")
    _record(log, "powerlaw", files, _specs(data, model, grid), mode, t0)
    return files


def spiked_eigenvalues(d: int, gamma: float, beta: float, seed: int = 0) -> np.ndarray:
    """Eigenvalues of C = X^T X / n for one draw of spiked data (memgen.data), ascending [d]."""
    spec = Spiked(d=d, beta=beta)
    key = jax.random.key(seed)
    dt = jnp.float32
    pop = data_mod.population(jax.random.fold_in(key, 0), spec, jnp.asarray([beta], dt),
                              jnp.asarray(0.0, dt), dt)
    n = specs.n_samples(gamma, d)
    X = np.asarray(data_mod.sample(jax.random.fold_in(key, 1), pop, n), dtype=np.float64)
    if n < d:  # the nonzero eigenvalues, from the n x n Gram matrix; the rest are 0
        ev = np.linalg.eigvalsh(X @ X.T / n)
        return np.concatenate([np.zeros(d - n), np.maximum(ev, 0.0)])
    return np.linalg.eigvalsh(X.T @ X / n)


@_styled
def fig_spectra(out_dir, mode: str = "quick", log: list | None = None) -> list[Path]:
    """Figure 5: empirical spectra of C against Marchenko–Pastur; the spike leaves the bulk."""
    t0 = time.perf_counter()
    z = _sizes(mode)
    d, beta, gammas = z["spec_d"], z["beta"], z["spec_gammas"]
    fig = Figure(figsize=(3.0 * len(gammas) + 0.4, 2.6), layout="constrained")
    axes = fig.subplots(1, len(gammas), squeeze=False)[0]
    for ax, g in zip(axes, gammas):
        ev = spiked_eigenvalues(d, g, beta)
        nonzero = int(np.sum(ev > 1e-9 * ev.max()))
        bins = int(np.clip(nonzero // 12, 15, 60))
        plots.spectrum(ev, g, beta=beta, ax=ax, bins=bins)
        heights = [p.get_data().values.max() for p in ax.patches if hasattr(p, "get_data")]
        if heights:  # the MP density diverges at 0 for gamma = 1: scale to the histogram
            ax.set_ylim(0, 1.35 * max(heights))
        top = float(ev[-1])
        ax.plot([top], [0], marker="^", ms=6, color="C3", clip_on=False, zorder=5, ls="none",
                label=rf"empirical top $s_1 = {top:.2f}$")
        edge = (1 + 1 / np.sqrt(g)) ** 2
        state = "outlier" if g * beta**2 > 1 else "inside the bulk"
        ax.set_title(rf"$\gamma = {_f(g)}$ ($\gamma\beta^2 = {_f(g * beta**2)}$): spike {state}; "
                     rf"edge {edge:.2f}", fontsize=7)
        ax.legend(loc="upper right", fontsize=5.5, frameon=False)
        ax.set_xlim(0, max(top, edge) * 1.12)
    fig.suptitle(rf"Spectrum of $C = X^\top X/n$, spiked data ($d = {d}$, $\beta = {_f(beta)}$, one draw); "
                 r"BBP transition at $\gamma_c = 1/\beta^2$" + rf" $= {_f(1 / beta**2)}$", fontsize=8)
    files = _finish(fig, out_dir, "spectra")
    specs = [_specs(Spiked(d=d, beta=beta), None, Grid(gamma=gammas, lam=(0.0,), seeds=1),
                     note="one draw per gamma via memgen.data (float32), eigenvalues with NumPy")]
    _record(log, "spectra", files, specs, mode, t0)
    return files


# ---------------------------------------------------------------- denoisers


def _image_pool(data, n_rows: int, key) -> np.ndarray:
    """n_rows training images [n_rows, H, W] (float32), as the scan draws them."""
    from .denoisers import images

    if isinstance(data, ImageField):
        return np.asarray(images.sample_field(key, data, n_rows, jnp.float32))
    if data.source in ("disks", "calpha"):
        fn = images.sample_disks if data.source == "disks" else images.sample_calpha
        raw = np.asarray(fn(key, data.size, n_rows, dtype=jnp.float32), np.float64)
        return images.standardise(raw).astype(np.float32)
    pool = images.standardise(images.load_images(data.source, data.size))
    perm = np.asarray(jax.random.permutation(key, pool.shape[0]))[:n_rows]
    return pool[perm].astype(np.float32)


@functools.partial(jax.jit, static_argnames="spec")
def _generate_pair(params, key, z, *, spec: ConvDenoiser):
    """Samples [2, S, H, W] of a pair of models (params stacked on axis 0) from the same noise."""
    from .denoisers import model as model_mod
    from .denoisers import sample as sample_mod

    graph = model_mod.graphdef(spec, z.dtype)
    return jax.vmap(lambda p: sample_mod.generate(graph, p, key, z, spec))(params)


def denoiser_pair(data, model: ConvDenoiser, n: int, n_pool: int, lam: float = 0.0, seed: int = 0,
                  show: int = 8) -> dict:
    """Trains a pair of denoisers on disjoint sets of n images; samples both from the same noise.

    Args:
        data: ``ImageField`` or ``Images``.
        model: the denoiser spec.
        n: training images per model (the first n of each half of the pool).
        n_pool: images per half (>= n); keep it fixed across n so one compile serves all.
        lam: weight decay.
        seed: root seed.
        show: samples per model.

    Returns:
        dict: ``train`` [n, H, W] (model A's set), ``a``, ``b`` [show, H, W] samples,
        ``nearest`` [show, H, W] (A's training image closest in |cos| to each A sample),
        ``cos_nearest`` [show], ``cos_ab`` [show].
    """
    from .denoisers import train as train_mod

    h, w = data.size
    root = jax.random.key(seed)
    pool = _image_pool(data, 2 * n_pool, jax.random.fold_in(root, 0)).reshape(2, n_pool, h, w)
    keys = jnp.stack([jax.random.fold_in(jax.random.fold_in(root, 1), a) for a in range(2)])
    params, _ = train_mod.train_ensemble(keys, jnp.asarray(pool), jnp.full((2,), n, jnp.int32),
                                         jnp.full((2,), lam, jnp.float32), spec=model)
    zs = jax.random.normal(jax.random.fold_in(root, 2), (show, h, w), jnp.float32)
    gen = np.asarray(_generate_pair(params, jax.random.fold_in(root, 3), zs, spec=model), np.float64)
    train = pool[0, :n].astype(np.float64)

    def unit(x):
        x = x.reshape(x.shape[0], -1)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    cos = np.abs(unit(gen[0]) @ unit(train).T)
    near = np.argmax(cos, axis=1)
    return {"train": train, "a": gen[0], "b": gen[1], "nearest": train[near],
            "cos_nearest": cos[np.arange(show), near],
            "cos_ab": np.sum(unit(gen[0]) * unit(gen[1]), axis=1)}


@_styled
def _unit_images(pr: dict):
    """Rows of a sample grid on one scale: unit-norm images, the training image sign-matched
    (m and q are cosines, blind to scale; m to sign)."""
    def unit(x):
        return x / np.maximum(np.sqrt(np.sum(x**2, axis=(-2, -1), keepdims=True)), 1e-12)

    a, b, near = unit(pr["a"]), unit(pr["b"]), unit(pr["nearest"])
    sign = np.sign(np.sum(a * near, axis=(-2, -1), keepdims=True))
    return near * np.where(sign == 0, 1.0, sign), a, b


def fig_denoisers(out_dir, mode: str = "quick", log: list | None = None) -> list[Path]:
    """Figure 6: m, q, Q against n for conv denoisers on a Gaussian field and on photo patches,
    and sample grids (nearest training image, model A, model B from the same noise) at small and
    large n."""
    t0 = time.perf_counter()
    z = _sizes(mode)
    model = _denoiser(z)
    size = z["img_size"]
    sets = [("field", ImageField(size=size, alpha=2.0, k=5), r"Gaussian field $P(f) \propto (|f|+1)^{-2}$"),
            ("hopper", Images(source="grace_hopper", size=size, k=5), "Grace Hopper photo patches")]
    grid = Grid(gamma=z["img_gamma"], lam=z["img_lam"], seeds=z["img_seeds"])
    files, specs = [], []
    fig = Figure(figsize=(7.0, 4.6), layout="constrained")
    rows = fig.subfigures(2, 1)
    for (tag, data, title), sub in zip(sets, rows):
        ds = _scan(data, model, grid, progress=False)
        _save_data(ds, out_dir, f"denoisers_{tag}")
        axes = sub.subplots(1, 3)
        plots.order_parameters(ds, variables=("m", "q", "Q"), axes=axes)
        base = ds["m_heldout"].mean(("lam", "seed"))  # m of fresh data: no memorisation at all
        axes[0].plot(base["gamma"], base, "--", color="0.4", label="held-out images")
        axes[0].legend(fontsize=6, frameon=False)
        for ax in axes:
            sec = ax.secondary_xaxis("top", functions=(lambda g, d=data.d: g * d, lambda n, d=data.d: n / d))
            sec.set_xlabel(r"training images $n$", fontsize=7)
            sec.tick_params(labelsize=6)
            sec.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        sub.suptitle(rf"{title}, {size[0]}$\times${size[1]} (d = {data.d}), {grid.seeds} seed(s); "
                     rf"$Q$: top-{data.k} eigenvectors", fontsize=8)
        specs.append(_specs(data, model, grid, label=f"curves_{tag}"))
    files += _finish(fig, out_dir, "denoisers")
    # sample grids: one compile serves every n (n is traced; the pool size is fixed)
    n_pool = max(z["pair_n"])
    for tag, data, title in sets:
        for n in z["pair_n"]:
            pr = denoiser_pair(data, model, n, n_pool, show=z["pair_show"])
            g = plots.sample_grid(*_unit_images(pr), titles=("nearest\ntraining (A)", "model A", "model B"))
            g.suptitle(rf"{title}: $n = {n}$ training images per model" "\n"
                       rf"|cos| of A's samples to their nearest training image "
                       rf"{pr['cos_nearest'].mean():.2f} ($m$), cos(A, B) {pr['cos_ab'].mean():.2f} ($q$); "
                       "images scaled to unit norm",
                       fontsize=7)
            name = f"denoisers_samples_{tag}_n{n}"
            files += _finish(g, out_dir, name)
            specs.append(_specs(data, model, Grid(gamma=[n / data.d], lam=[0.0], seeds=1),
                                label=name, n=n, n_pool=n_pool))
    _record(log, "denoisers", files, specs, mode, t0)
    return files


# ---------------------------------------------------------------- benchmark


def _naive_point_loop(d: int, gamma: float, lams, seeds: int, samples: int, beta: float) -> float:
    """Seconds for the loop a researcher writes: scipy sqrtm per (gamma, lam, seed, model)."""
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    n = specs.n_samples(gamma, d)
    t = 0.0
    for _ in range(seeds):
        v = rng.standard_normal(d)
        v /= np.linalg.norm(v)
        sets = [rng.standard_normal((n, d)) + np.sqrt(beta) * rng.standard_normal((n, 1)) * v
                for _ in range(2)]
        zz = rng.standard_normal((samples, d))
        t0 = time.perf_counter()
        xs = []
        for X in sets:
            C = X.T @ X / n
            per = []
            for lam in lams:
                G = np.real(sqrtm(C + lam * np.eye(d)))
                x = zz @ G.T
                xn = x / np.linalg.norm(x, axis=1, keepdims=True)
                Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
                np.max(np.abs(xn @ Xn.T), axis=1).mean()  # m
                per.append(xn)
            xs.append(per)
        for xa, xb in zip(*xs):
            np.sum(xa * xb, axis=1).mean()  # q
        t += time.perf_counter() - t0
    return t


def bench_records(ds_list, seeds: int, naive_seeds: int, gamma: float = 1.0,
                  lams=(0.0, 0.01, 0.1, 1.0), samples: int = 32, beta: float = 2.0, repeat: int = 3) -> dict:
    """Seconds per grid point against d: memgen (steady state), the naive loop, the eigh floor.

    The NumPy/SciPy parts run with one BLAS thread: in a process where JAX's thread pool holds
    the cores, OpenBLAS threads contend with it (measured 2 s instead of 35 ms for one
    256 x 256 ``sqrtm`` on 2 cores), which would flatter memgen.

    Returns:
        ``{method: (d list, seconds-per-point list)}`` for ``plots.bench_scaling``.
    """
    from threadpoolctl import threadpool_limits

    rec = {"memgen scan (float32)": ([], []), "naive sqrtm loop (float64)": ([], []),
           "eigh floor (float32)": ([], [])}
    for d in ds_list:
        data, model = Spiked(d=d, beta=beta), Linear(samples=samples)
        grid = Grid(gamma=[gamma], lam=lams, seeds=seeds)
        pts = len(lams) * seeds
        _run(data, model, grid)  # compile
        best = min(_timed(lambda: _run(data, model, grid)) for _ in range(repeat))
        rec["memgen scan (float32)"][0].append(d)
        rec["memgen scan (float32)"][1].append(best / pts)
        rng = np.random.default_rng(1)
        n = specs.n_samples(gamma, d)
        mats = []
        for _ in range(2 * seeds):
            X = rng.standard_normal((n, d)).astype(np.float32)
            mats.append(X @ X.T / n if n < d else X.T @ X / n)
        with threadpool_limits(limits=1, user_api="blas"):
            floor = min(_timed(lambda: [np.linalg.eigh(M) for M in mats]) for _ in range(repeat))
            naive = _naive_point_loop(d, gamma, lams, naive_seeds, samples, beta)
        rec["eigh floor (float32)"][0].append(d)
        rec["eigh floor (float32)"][1].append(floor / pts)
        rec["naive sqrtm loop (float64)"][0].append(d)
        rec["naive sqrtm loop (float64)"][1].append(naive / (len(lams) * naive_seeds))
    return rec


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@_styled
def fig_benchmark(out_dir, mode: str = "quick", log: list | None = None) -> list[Path]:
    """Figure 7: time per grid point against d (log-log, fitted slopes) for memgen, the naive
    sqrtm loop and the eigh floor, measured in this process."""
    t0 = time.perf_counter()
    z = _sizes(mode)
    lams, gamma = tuple(z["lam"]), 1.0  # the lam list of the other scans: shared kernels
    rec = bench_records(z["bench_d"], z["bench_seeds"], z["naive_seeds"], gamma=gamma, lams=lams,
                        samples=z["samples"], beta=z["beta"])
    fig = plots.bench_scaling(rec)
    fig.set_size_inches(4.2, 3.0)
    ax = fig.axes[0]
    dev = jax.devices()[0]
    ax.set_title(rf"spiked data, $\gamma = {_f(gamma)}$, {len(lams)} $\lambda$ × {z['bench_seeds']} seeds "
                 f"per $d$, {dev.platform} ({jax.device_count()} device{'s' if jax.device_count() > 1 else ''})\nmemgen steady state (compile "
                 "excluded); NumPy/SciPy with 1 BLAS thread", fontsize=6.5)
    ax.set_xticks(list(z["bench_d"]), [str(d) for d in z["bench_d"]])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    files = _finish(fig, out_dir, "benchmark")
    specs = [_specs(Spiked(d=d, beta=z["beta"]), Linear(samples=z["samples"]),
                    Grid(gamma=[gamma], lam=lams, seeds=z["bench_seeds"]), label=f"d={d}",
                    naive_seeds=z["naive_seeds"]) for d in z["bench_d"]]
    _record(log, "benchmark", files, specs, mode, t0,
            seconds_per_point={k: dict(zip(map(int, v[0]), map(float, v[1]))) for k, v in rec.items()},
            device=f"{dev.platform}:{dev.device_kind}")
    return files


def _f(x) -> str:
    return f"{float(x):g}"


@_styled
def fig_linear_diffusion(out_dir, mode: str = "quick", log: list | None = None) -> list[Path]:
    """Figure: the linear diffusion family on spiked data: q and KL/d against gamma for the exact
    ODE, DDIM and Heun at several step counts (Wiener denoiser, Karras 80 -> 0.002), theory lines."""
    t0 = time.perf_counter()
    z = _sizes(mode)
    data = Spiked(d=z["diff_d"], beta=z["beta"])
    grid = Grid(gamma=_gammas(z), lam=(0.0,), seeds=z["seeds"])
    dense = Grid(gamma=sorted(set(grid.gamma) | set(_dense(grid.gamma, z["theory_points"]))), lam=(0.0,))
    runs, used = [], []
    for sampler, steps in z["diff_models"]:
        model = LinearDiffusion(sampler=sampler, steps=steps, samples=z["samples"])
        ds = _run(data, model, grid)
        label = "exact ODE" if sampler == "ode" else f"{sampler.upper() if sampler == 'ddim' else 'Heun'}, {steps} steps"
        runs.append((label, ds, _theory(data, dense, model=model)))
        used.append(_specs(data, model, grid, label=label))
    fig = Figure(figsize=(7.0, 2.6), layout="constrained")
    ax_q, ax_kl = fig.subplots(1, 2)
    plots.model_curves(runs, "q", ax=ax_q)
    plots.model_curves(runs, "kl", ax=ax_kl, logy=True)
    ax_kl.get_legend().remove()
    fig.suptitle(rf"Linear diffusion on spiked data ($d = {data.d}$, $\beta = {_f(z['beta'])}$, {grid.seeds} "
                 r"seeds; Wiener denoiser, Karras $\sigma$ 80 $\to$ 0.002 then 0)" "\n"
                 r"points: simulation ± s.e.m.; lines: Marchenko–Pastur theory; $\gamma < 1$: DDIM and Heun "
                 r"end with $G(0) = 0$ (KL $= \infty$)", fontsize=7)
    files = _finish(fig, out_dir, "linear_diffusion")
    _record(log, "linear_diffusion", files, used, mode, t0)
    return files


# ---------------------------------------------------------------- all

FIGURES = {
    "order_parameters": fig_order_parameters,
    "phase_diagrams": fig_phase_diagrams,
    "latent_recovery": fig_latent_recovery,
    "powerlaw": fig_powerlaw,
    "spectra": fig_spectra,
    "denoisers": fig_denoisers,
    "benchmark": fig_benchmark,
    "linear_diffusion": fig_linear_diffusion,
}


def make_all(out_dir="memgen-figures", mode: str = "quick", only=None) -> list[Path]:
    """Writes every figure (PNG + PDF) and ``figures.json`` into ``out_dir``.

    The default folder is ``memgen-figures``, not the repository's committed ``figures/``:
    overwriting those takes an explicit ``out_dir``. One line per figure (its name and
    seconds) goes to stderr. The index is rewritten after each figure, so an interrupted run
    keeps the entries of the figures it finished. With ``only``, the entries of the other
    figures already in ``out_dir/figures.json`` are kept, whatever mode made them (each entry
    records its mode): one figure can be remade alone.

    Args:
        out_dir: output folder (created).
        mode: ``"quick"`` (minutes on 2 CPU cores), ``"full"`` (paper-sized) or ``"tiny"``
            (tests only); see ``SIZES``.
        only: names of the figures to make (default all; see ``FIGURES``).

    Returns:
        The paths written, ``figures.json`` last.
    """
    _sizes(mode)
    names = list(FIGURES) if only is None else list(only)
    bad = [n for n in names if n not in FIGURES]
    if bad:
        raise ValueError(f"unknown figure(s) {bad}; known: {list(FIGURES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "figures.json"
    kept = []
    if only is not None and path.exists():
        kept = [e for e in json.loads(path.read_text()).get("figures", []) if e["name"] not in names]
    log: list = []
    files: list[Path] = []
    try:
        for i, name in enumerate(names, 1):
            t0 = time.perf_counter()
            files += FIGURES[name](out, mode=mode, log=log)
            _write_index(path, kept, log, out)
            print(f"memgen figures: [{i}/{len(names)}] {name} ({mode}) {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
    finally:
        _CACHE.clear()
    return files + [path]


def _write_index(path: Path, kept: list, log: list, out: Path) -> None:
    import memgen

    new = [{**e, "files": [_rel(p, out) for p in e["files"]]} for e in log]
    figures = sorted(kept + new, key=lambda e: list(FIGURES).index(e["name"]))
    modes = [m for m in MODES if any(e["mode"] == m for e in figures)]
    index = {"mode": modes[0] if len(modes) == 1 else "mixed", "memgen": memgen.__version__,
             "jax": jax.__version__,
             "device": f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind} x{jax.device_count()}",
             "seconds": round(sum(e["seconds"] for e in figures), 2),
             "sizes": {m: _jsonable(SIZES[m]) for m in modes}, "figures": figures}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, path)


def _rel(p, out: Path) -> str:
    p = Path(p)
    return str(p.relative_to(out)) if p.is_relative_to(out) else str(p)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


__all__ = ["make_all", "FIGURES", "SIZES", "MODES", "fig_order_parameters", "fig_phase_diagrams",
           "fig_latent_recovery", "fig_powerlaw", "fig_spectra", "fig_denoisers", "fig_benchmark", "fig_linear_diffusion",
           "denoiser_pair", "spiked_eigenvalues", "bench_records"]
