"""The denoiser figure: m, q, Q against n with their baselines, and sample grids of the scan's own models."""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from ... import plots
from ...engines.denoisers.engine import DenoiserEngine
from ...scan import scan
from ...specs import Grid, ImageField, Images, Linear, Spiked, n_samples
from ...theory import theory
from .common import denoiser_spec, finish, record, save_data, sizes, spec_record, styled


def nearest_pairs(train, samples, show: int) -> dict:
    """Model A's samples beside its nearest training image (|cos|), and model B's from the same noise.

    Args:
        train: each model's training images [2, n, H, W]; samples: [2, S, H, W] (same noise).
        show: samples per row (<= S).

    Returns:
        dict: ``a``, ``b``, ``nearest`` [show, H, W]; ``cos_nearest``, ``cos_ab`` [show] (what m
        and q average).
    """
    gen = np.asarray(samples[:, :show], np.float64)
    tr = np.asarray(train[0], np.float64)

    def unit(x):
        x = x.reshape(x.shape[0], -1)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    cos = np.abs(unit(gen[0]) @ unit(tr).T)
    near = np.argmax(cos, axis=1)
    return {"a": gen[0], "b": gen[1], "nearest": tr[near], "cos_nearest": cos[np.arange(len(near)), near],
            "cos_ab": np.sum(unit(gen[0]) * unit(gen[1]), axis=1)}


def _unit_images(pr: dict):
    """Rows of a sample grid on one scale: unit-norm images, the training image sign-matched
    (m and q are cosines, blind to scale; m to sign)."""
    def unit(x):
        return x / np.maximum(np.sqrt(np.sum(x**2, axis=(-2, -1), keepdims=True)), 1e-12)

    a, b, near = unit(pr["a"]), unit(pr["b"]), unit(pr["nearest"])
    sign = np.sign(np.sum(a * near, axis=(-2, -1), keepdims=True))
    return near * np.where(sign == 0, 1.0, sign), a, b


def _n_axis(axes, d: int) -> None:
    """A top axis in training images n = gamma d on each panel."""
    for ax in axes:
        sec = ax.secondary_xaxis("top", functions=(lambda g, d=d: g * d, lambda n, d=d: n / d))
        sec.set_xlabel(r"training images $n$", fontsize=7)
        sec.tick_params(labelsize=6)
        sec.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))


def _sample_grids(sets, model, grid, ns: list, n_list, show: int, out_dir, prefix: str) -> tuple[list, list]:
    """Sample grids of each set's seed-0 pair (first lam) at every n of ``n_list``: (files, spec records)."""
    files, used = [], []
    for tag, data, title in sets:
        engine = DenoiserEngine(data, model, grid, "float32")
        for n in n_list:
            pr = nearest_pairs(**engine.pair_samples(ns.index(n), 0, 0), show=show)
            g = plots.sample_grid(*_unit_images(pr), titles=("nearest\ntraining (A)", "model A", "model B"))
            g.suptitle(rf"{title}: $n = {n}$ training images per model (the scan's seed-0 pair)" "\n"
                       rf"|cos| of A's samples to their nearest training image "
                       rf"{pr['cos_nearest'].mean():.2f} ($m$), cos(A, B) {pr['cos_ab'].mean():.2f} ($q$); "
                       "images scaled to unit norm",
                       fontsize=7)
            name = f"{prefix}_{tag}_n{n}"
            files += finish(g, out_dir, name)
            used.append(spec_record(data, model, grid, label=name, n=n, seed=0, lam=float(grid.lam[0])))
    return files, used


@styled
def fig_denoiser_spikes(out_dir, mode: str = "quick", log: list | None = None) -> list[Path]:
    """Figure 7: planted latent factors. m, q, Q and Q_jac against n for conv denoisers on white
    8x8 fields with one strong and one weak planted spike (Q scores the spike; the linear
    model's theory Q and its threshold gamma_c = 1/beta^2 drawn on the Q_jac panel), and on
    scikit-learn's handwritten digits; sample grids of the scan's own models at the largest n."""
    t0 = time.perf_counter()
    z = sizes(mode)
    model = denoiser_spec(z)
    size = z["img_size"]
    weak, strong = z["spike_betas"]
    sets = [(tag, ImageField(size=size, alpha=0.0, beta=(b,)), rf"white field + a {tag} spike ($\beta$ = {b:g})")
            for tag, b in (("strong", strong), ("weak", weak))]
    sets.append(("digits", Images(source="digits", size=size, k=z["img_k"]), "handwritten digits (scikit-learn)"))
    grid = Grid(gamma=z["img_gamma"], lam=z["img_lam"], seeds=z["img_seeds"])
    ns = [n_samples(g, sets[0][1].d) for g in grid.gamma]
    n_show = max(z["pair_n"])
    if n_show not in ns:
        raise ValueError(f"SIZES[{mode!r}]['pair_n']: {n_show} is not a training-set size of the scan ({ns})")
    files, used = [], []
    fig = Figure(figsize=(9.0, 6.6), layout="constrained")
    for (tag, data, title), sub in zip(sets, fig.subfigures(3, 1)):
        ds = scan(data, model, grid, progress=False)
        save_data(ds, out_dir, f"denoiser_spikes_{tag}")
        axes = sub.subplots(1, 4)
        plots.order_parameters(ds, variables=("m", "q", "Q", "Q_jac"), axes=axes)
        _n_axis(axes, data.d)
        what = rf"top-{data.k} eigenvectors of the data"
        if data.beta:  # the linear generator's theory on the same spiked law, and its BBP threshold
            beta = data.beta[0]
            dense = np.geomspace(min(grid.gamma), max(grid.gamma), 60)
            th = theory(Spiked(d=data.d, beta=(beta,)), Grid(gamma=list(dense), lam=(0.0,)), Linear())
            axes[3].plot(dense, th.Q.values, "k:", lw=1, label="linear theory")
            axes[3].axvline(1 / beta**2, color="0.5", lw=0.8, ls="--", label=r"$\gamma_c = 1/\beta^2$")
            axes[3].legend(fontsize=6)
            what = "the planted spike"
        sub.suptitle(rf"{title}, {size[0]}$\times${size[1]} (d = {data.d}), {grid.seeds} seed(s); "
                     rf"$Q$, $Q_J$: overlap with {what} of the samples' / mean Jacobian's top eigenvectors",
                     fontsize=8)
        used.append(spec_record(data, model, grid, label=f"curves_{tag}"))
    files += finish(fig, out_dir, "denoiser_spikes")
    f, u = _sample_grids(sets, model, grid, ns, (n_show,), z["pair_show"], out_dir, "denoiser_spikes_samples")
    record(log, "denoiser_spikes", files + f, used + u, mode, t0)
    return files + f


@styled
def fig_denoisers(out_dir, mode: str = "quick", log: list | None = None) -> list[Path]:
    """Figure 6: m, q, Q and Q_jac against n for conv denoisers on a Gaussian field and on photo patches,
    and sample grids (nearest training image, model A, model B from the same noise) of the
    scan's own models (seed 0, first lam) at a small and a large n of its grid."""
    t0 = time.perf_counter()
    z = sizes(mode)
    model = denoiser_spec(z)
    size = z["img_size"]
    k = z["img_k"]
    sets = [("field", ImageField(size=size, alpha=2.0, k=k), r"Gaussian field $P(f) \propto (|f|+1)^{-2}$"),
            ("hopper", Images(source="grace_hopper", size=size, k=k), "Grace Hopper photo patches")]
    grid = Grid(gamma=z["img_gamma"], lam=z["img_lam"], seeds=z["img_seeds"])
    ns = [n_samples(g, sets[0][1].d) for g in grid.gamma]
    missing = [n for n in z["pair_n"] if n not in ns]
    if missing:
        raise ValueError(f"SIZES[{mode!r}]['pair_n']: {missing} are not training-set sizes of the scan ({ns})")
    files, used = [], []
    fig = Figure(figsize=(9.0, 4.6), layout="constrained")
    rows = fig.subfigures(2, 1)
    for (tag, data, title), sub in zip(sets, rows):
        ds = scan(data, model, grid, progress=False)
        save_data(ds, out_dir, f"denoisers_{tag}")
        axes = sub.subplots(1, 4)
        plots.order_parameters(ds, variables=("m", "q", "Q", "Q_jac"), axes=axes)
        _n_axis(axes, data.d)
        sub.suptitle(rf"{title}, {size[0]}$\times${size[1]} (d = {data.d}), {grid.seeds} seed(s); "
                     rf"$Q$: top-{data.k} eigenvectors of samples, $Q_J$: of the model's mean Jacobian", fontsize=8)
        used.append(spec_record(data, model, grid, label=f"curves_{tag}"))
    files += finish(fig, out_dir, "denoisers")
    f, u = _sample_grids(sets, model, grid, ns, z["pair_n"], z["pair_show"], out_dir, "denoisers_samples")
    record(log, "denoisers", files + f, used + u, mode, t0)
    return files + f
