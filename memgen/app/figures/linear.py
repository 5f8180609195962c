"""The figures of the linear models: order parameters, phase diagrams, latent recovery, power
laws, spectra and the linear diffusion family, each from ``memgen.scan`` and ``memgen.theory``."""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from ... import plots, specs
from ... import data as data_mod
from ...specs import Grid, Linear, LinearDiffusion, PowerLaw, Spiked
from ...engines.spectral.engine import point_keys
from ...store import attach_theory
from ...theory import mp, spiked, theory
from .common import (dense_gammas, finish, fmt, gammas_of, geom, record, run, save_data, sizes, spec_record,
                     spiked_scan, styled, theory_on)


@styled
def fig_order_parameters(out_dir, mode: str = "quick", log: list | None = None) -> list[Path]:
    """Figure 1: m, q, Q against gamma for several lam on spiked data, theory lines, BBP line."""
    t0 = time.perf_counter()
    z = sizes(mode)
    data, model, grid, ds = spiked_scan(z)
    th = theory_on(data, grid, z["theory_points"])
    ds = attach_theory(ds, th)
    save_data(ds, out_dir, "order_parameters")
    fig = plots.order_parameters(ds, theory=th, lam=z["lam_show"], figsize=(7.0, 2.4))
    fig.suptitle(rf"Spiked data ($d = {data.d}$, $\beta = {fmt(z['beta'])}$, {grid.seeds} seeds): "
                 "points simulation ± s.e.m., lines asymptotic theory", fontsize=8)
    files = finish(fig, out_dir, "order_parameters")
    record(log, "order_parameters", files, spec_record(data, model, grid), mode, t0)
    return files


@styled
def fig_phase_diagrams(out_dir, mode: str = "quick", log: list | None = None) -> list[Path]:
    """Figure 2: heat maps of q, m, w2 over (gamma, lam) with theory contours and the BBP line."""
    t0 = time.perf_counter()
    z = sizes(mode)
    data, model, grid, ds = spiked_scan(z)
    pos = [v for v in grid.lam if v > 0]
    lam_dense = list(grid.lam)
    if pos:  # lam = 0 (if scanned) and 30 log-spaced values: smooth contours
        lam_dense = sorted({0.0} & set(grid.lam) | set(geom(min(pos), max(pos), 30)))
    th = theory(data, Grid(gamma=dense_gammas(grid.gamma, z["theory_points"]), lam=lam_dense))
    fig = Figure(figsize=(10.2, 2.7), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, var in zip(axes, ("q", "m", "w2")):
        plots.phase_diagram(ds, var, theory=th, ax=ax)
        if ax.get_legend() is not None:  # the BBP line is named once, in the title
            ax.get_legend().remove()
        ax.set_title(plots.LABELS[var], fontsize=8)
    fig.suptitle(rf"Spiked data ($d = {data.d}$, $\beta = {fmt(z['beta'])}$): colour = simulation, mean of "
                 rf"{grid.seeds} seeds; white contours = asymptotic theory; red dashed = BBP transition "
                 r"$\gamma_c = 1/\beta^2$", fontsize=8)
    files = finish(fig, out_dir, "phase_diagrams")
    record(log, "phase_diagrams", files, spec_record(data, model, grid), mode, t0)
    return files


@styled
def fig_latent_recovery(out_dir, mode: str = "quick", log: list | None = None) -> list[Path]:
    """Figure 3: Q against gamma for several beta (a Grid(beta=...) sweep), BBP transitions."""
    t0 = time.perf_counter()
    z = sizes(mode)
    data = Spiked(d=z["d"], beta=z["beta"])  # the spec of figure 1: compiled kernels are shared
    model = Linear(samples=z["samples"])
    grid = Grid(gamma=gammas_of(z), lam=z["lam"], seeds=z["seeds"], beta=z["betas"])
    ds = run(data, model, grid)
    th = theory_on(data, grid, 4 * z["theory_points"])  # Q jumps at gamma_c: a fine grid
    ds = attach_theory(ds, th)
    save_data(ds, out_dir, "latent_recovery")
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
                        label=rf"$\beta = {fmt(b)}$", elinewidth=0.8, zorder=3)
        t = th["top_eig"].sel(beta=b)
        ax_top.plot(t["gamma"], t, "-", color=c, zorder=2)
        ax_top.axvline(float(spiked.bbp_threshold(b)), color=c, ls="--", lw=0.8, zorder=1)
    g = np.asarray(th["gamma"])
    ax_top.plot(g, np.asarray(mp.mp_edges(g)[1]), ":", color="0.3", label=r"MP edge $(1+\gamma^{-1/2})^2$")
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
    files = finish(fig, out_dir, "latent_recovery")
    record(log, "latent_recovery", files, spec_record(data, model, grid), mode, t0)
    return files


@styled
def fig_powerlaw(out_dir, mode: str = "quick", log: list | None = None) -> list[Path]:
    """Figure 4: q and top-k latent recovery Q against gamma for power-law spectra (alpha sweep)."""
    t0 = time.perf_counter()
    z = sizes(mode)
    data = PowerLaw(d=z["d"], alpha=z["alphas"][0], k=z["pl_k"])
    model = Linear(samples=z["samples"])
    lam = (0.0,) if 0.0 in z["lam"] else z["lam"][:1]
    grid = Grid(gamma=gammas_of(z), lam=lam, seeds=z["seeds"], alpha=z["alphas"])
    ds = run(data, model, grid)
    th = theory_on(data, grid, z["theory_points"] // 2)
    ds = attach_theory(ds, th)
    save_data(ds, out_dir, "powerlaw")
    fig = Figure(figsize=(7.0, 2.6), layout="constrained")
    ax_q, ax_big = fig.subplots(1, 2)
    plots.powerlaw_curves(ds, theory=th, var="q", ax=ax_q)
    plots.powerlaw_curves(ds, theory=th, var="Q", ax=ax_big)
    ax_q.set_title(rf"convergence, $\lambda = {fmt(lam[0])}$")
    ax_big.set_title("recovery of the top eigenvector" if data.k == 1 else
                     rf"recovery of the top-{data.k} eigenvectors")
    fig.suptitle(rf"Power-law spectra $\sigma_i \propto i^{{-\alpha}}$ ($d = {data.d}$, {grid.seeds} seeds): "
                 "points simulation ± s.e.m., lines deterministic equivalent at this $d$", fontsize=8)
    files = finish(fig, out_dir, "powerlaw")
    record(log, "powerlaw", files, spec_record(data, model, grid), mode, t0)
    return files


def spiked_eigenvalues(d: int, gamma: float, beta: float, seed: int = 0) -> np.ndarray:
    """Eigenvalues of C = X^T X / n of model A of seed 0 of a ``memgen.scan`` of ``Spiked(d, beta)``
    with root seed ``seed`` at this gamma: the scan's own draw (its key layout), ascending [d]."""
    spec = Spiked(d=d, beta=beta)
    k_pop, k_a, _, _ = point_keys(jax.random.key(seed), 0)
    dt = jnp.float32
    pop = data_mod.population(k_pop, spec, jnp.asarray([beta], dt), jnp.asarray(0.0, dt), dt)
    n = specs.n_samples(gamma, d)
    X = np.asarray(data_mod.sample(k_a, pop, n), dtype=np.float64)
    if n < d:  # the nonzero eigenvalues, from the n x n Gram matrix; the rest are 0
        ev = np.linalg.eigvalsh(X @ X.T / n)
        return np.concatenate([np.zeros(d - n), np.maximum(ev, 0.0)])
    return np.linalg.eigvalsh(X.T @ X / n)


@styled
def fig_spectra(out_dir, mode: str = "quick", log: list | None = None) -> list[Path]:
    """Figure 5: empirical spectra of C against Marchenko–Pastur; the spike leaves the bulk."""
    t0 = time.perf_counter()
    z = sizes(mode)
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
        edge = float(mp.mp_edges(np.float64(g))[1])
        state = "outlier" if g * beta**2 > 1 else "inside the bulk"
        ax.set_title(rf"$\gamma = {fmt(g)}$ ($\gamma\beta^2 = {fmt(g * beta**2)}$): spike {state}; "
                     rf"edge {edge:.2f}", fontsize=7)
        ax.legend(loc="upper right", fontsize=5.5, frameon=False)
        ax.set_xlim(0, max(top, edge) * 1.12)
    fig.suptitle(rf"Spectrum of $C = X^\top X/n$, spiked data ($d = {d}$, $\beta = {fmt(beta)}$, one draw); "
                 r"BBP transition at $\gamma_c = 1/\beta^2$" + rf" $= {fmt(1 / beta**2)}$", fontsize=8)
    files = finish(fig, out_dir, "spectra")
    used = [spec_record(Spiked(d=d, beta=beta), None, Grid(gamma=gammas, lam=(0.0,), seeds=1),
                     note="one draw per gamma via memgen.data (float32), eigenvalues with NumPy")]
    record(log, "spectra", files, used, mode, t0)
    return files


@styled
def fig_linear_diffusion(out_dir, mode: str = "quick", log: list | None = None) -> list[Path]:
    """Figure: the linear diffusion family on spiked data: q and KL/d against gamma for the exact
    ODE, DDIM, Heun and DDPM at several step counts (Wiener denoiser, Karras 80 -> 0.002), theory lines."""
    t0 = time.perf_counter()
    z = sizes(mode)
    data = Spiked(d=z["diff_d"], beta=z["beta"])
    grid = Grid(gamma=gammas_of(z), lam=(0.0,), seeds=z["seeds"])
    dense = Grid(gamma=sorted(set(grid.gamma) | set(dense_gammas(grid.gamma, z["theory_points"]))), lam=(0.0,))
    runs, used = [], []
    for sampler, steps in z["diff_models"]:
        model = LinearDiffusion(sampler=sampler, steps=steps, samples=z["samples"])
        ds = run(data, model, grid)
        name = {"ode": "exact ODE", "ddim": "DDIM", "heun": "Heun", "ddpm": "DDPM"}[sampler]
        label = name if sampler == "ode" else f"{name}, {steps} steps"
        runs.append((label, ds, theory(data, dense, model=model)))
        used.append(spec_record(data, model, grid, label=label))
    fig = Figure(figsize=(7.0, 2.6), layout="constrained")
    ax_q, ax_kl = fig.subplots(1, 2)
    plots.model_curves(runs, "q", ax=ax_q)
    plots.model_curves(runs, "kl", ax=ax_kl, logy=True)
    ax_kl.get_legend().remove()
    fig.suptitle(rf"Linear diffusion on spiked data ($d = {data.d}$, $\beta = {fmt(z['beta'])}$, {grid.seeds} "
                 r"seeds; Wiener denoiser, Karras $\sigma$ 80 $\to$ 0.002 then 0)" "\n"
                 r"points: simulation ± s.e.m.; lines: Marchenko–Pastur theory; $\gamma < 1$: DDIM, Heun and DDPM "
                 r"end with $G(0) = 0$ (KL $= \infty$)", fontsize=7)
    files = finish(fig, out_dir, "linear_diffusion")
    record(log, "linear_diffusion", files, used, mode, t0)
    return files
