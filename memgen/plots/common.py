"""Shared pieces of ``memgen.plots``: style, axes, selection, points and lines, titles, saving.

Not drawn figures but what every figure module uses (public within the package so that the
figure modules import no private names).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import xarray as xr
from matplotlib import ticker
from matplotlib.figure import Figure

from .. import schema
from ..theory import spiked

GAMMA_LABEL = r"load $\gamma = n/d$"
LABELS = {name: var.label for name, var in schema.VARS.items()}  # declared once, in memgen.schema
STYLE = {
    "font.size": 8, "axes.labelsize": 8, "axes.titlesize": 8, "legend.fontsize": 6.5,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.2, "lines.markersize": 3.5,
    "legend.frameon": False, "legend.handlelength": 1.5, "errorbar.capsize": 1.5,
}
styled = matplotlib.rc_context(STYLE)  # a ContextDecorator: the style applies per call only


def label_of(var: str) -> str:
    return LABELS.get(var, var)


def new_axes(ax, figsize=(3.4, 2.6)):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def palette(n: int, cmap: str = "viridis") -> list:
    return [matplotlib.colormaps[cmap](x) for x in np.linspace(0.0, 0.85, max(n, 1))][:n]


def fmt(x: float) -> str:
    return f"{float(x):g}"


def log_ticks(axis) -> None:
    """Plain-number labels on a log axis; 1-2-5 major ticks when it spans under 2 decades."""
    lo, hi = sorted(axis.get_view_interval())
    if lo > 0 and np.log10(hi / lo) < 2.0:
        axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


# ----------------------------------------------------------------------- statistics


def spec_of(ds: xr.Dataset) -> dict:
    raw = ds.attrs.get("memgen_spec")
    try:
        spec = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    except (TypeError, ValueError):
        return {}
    return spec if isinstance(spec, dict) else {}


def is_spiked(ds: xr.Dataset) -> bool | None:
    """True/False when the stored spec says whether the data is Spiked, None if unknown."""
    data = spec_of(ds).get("data")
    return data.get("kind") == "Spiked" if isinstance(data, dict) and "kind" in data else None


def bbp_betas(ds: xr.Dataset, beta_c=None, fn: str = "") -> list[float]:
    """Spike strengths whose BBP line gamma_c = 1/beta^2 applies (not for PowerLaw data)."""
    if beta_c is not None:
        return _explicit_betas(beta_c, fn)
    if is_spiked(ds) is False:
        return []
    if "beta" in ds.coords:
        vals = np.atleast_1d(ds["beta"].values.astype(float))
    else:
        spec = spec_of(ds)
        data = spec.get("data") if isinstance(spec.get("data"), dict) else {}
        grid = spec.get("grid") if isinstance(spec.get("grid"), dict) else {}
        raw = grid.get("beta") if grid.get("beta") is not None else data.get("beta")
        if raw is None:
            return []
        try:
            vals = np.atleast_1d(np.asarray(raw, dtype=float))
        except (TypeError, ValueError):
            return []
    return sorted({float(b) for b in vals.ravel() if np.isfinite(b) and b > 0})


def check_lams(ds: xr.Dataset, lams, fn: str) -> None:
    """Raises unless every requested lam is (close to) a lam of ``ds``."""
    have = np.atleast_1d(ds["lam"].values).astype(float) if "lam" in ds.coords else np.array([])
    missing = [fmt(v) for v in np.atleast_1d(lams)
               if not np.isclose(have, float(v), rtol=1e-6, atol=1e-12).any()]
    if missing:
        raise ValueError(f"plots.{fn}: lam={', '.join(missing)} not in ds; "
                         f"available lam: {[fmt(v) for v in have]}")


def _explicit_betas(beta_c, fn: str) -> list[float]:
    """The requested spike strengths, each of which must give a BBP line."""
    vals = np.atleast_1d(np.asarray(beta_c, dtype=float)).ravel()
    if not vals.size or not np.all(np.isfinite(vals) & (vals > 0)):
        raise ValueError(f"plots.{fn}: beta_c must be numbers > 0 (a BBP line 1/beta^2 each), got {beta_c!r}")
    return sorted({float(b) for b in vals})


def theory_of(ds: xr.Dataset, theory: xr.Dataset | None) -> xr.Dataset | None:
    if theory is not None:
        return theory
    found = {v[: -len("_theory")]: ds[v] for v in ds.data_vars if str(v).endswith("_theory")}
    return xr.Dataset(found) if found else None


def sel_near(da: xr.DataArray, **where) -> xr.DataArray | None:
    """``da.sel`` by nearest value, or None when the value is not (close to) present."""
    for dim, val in where.items():
        if dim not in da.dims:
            continue
        got = da.sel({dim: val}, method="nearest")
        if not np.isclose(float(got[dim]), float(val), rtol=1e-6, atol=1e-12):
            return None
        da = got
    return da


def check_dims(da: xr.DataArray, allowed: set, fn: str) -> xr.DataArray:
    extra = [d for d in da.dims if d not in allowed]
    for d in list(extra):
        if da.sizes[d] == 1:
            da = da.isel({d: 0})
            extra.remove(d)
    if extra:
        raise ValueError(f"plots.{fn}: unexpected dims {extra} in {da.name!r}; select them first, "
                         f"e.g. ds.sel({extra[0]}=...)")
    return da


def sim_points(ax, mean: xr.DataArray, sem: xr.DataArray, colour, label=None, marker="o"):
    mean = mean.sortby("gamma")
    sem = sem.sortby("gamma")
    yerr = sem.values if np.any(sem.values > 0) else None
    return ax.errorbar(mean["gamma"].values, mean.values, yerr=yerr, fmt=marker, color=colour,
                       label=label, elinewidth=0.8, zorder=3)


def theory_line(ax, da: xr.DataArray | None, colour, label=None):
    """A theory curve; None (nothing drawn) when there is none or it is all NaN."""
    if da is None or not np.isfinite(da.values).any():
        return None
    da = da.sortby("gamma")
    return ax.plot(da["gamma"].values, da.values, "-", color=colour, label=label, zorder=2)[0]


def bbp_lines(ax, betas, colours=None, label=True):
    for i, b in enumerate(betas):
        c = "0.4" if colours is None else colours[i]
        lab = r"$\gamma_c = 1/\beta^2$" if (label and i == 0) else None
        ax.axvline(float(spiked.bbp_threshold(np.float64(b))), color=c, ls="--", lw=0.8, label=lab, zorder=1)


def theory_key(ax, has_theory: bool):
    if has_theory:
        ax.plot([], [], "-", color="0.3", label="theory")



def describe(ds: xr.Dataset) -> str:
    """What a scan is, for a title: model, data and its parameters, seeds (a swept beta or
    alpha: its first value, as ``study`` draws it)."""
    spec = json.loads(ds.attrs.get("memgen_spec", "{}"))
    data = spec.get("data", {})
    what = {k: data[k] for k in ("d", "size", "beta", "alpha") if k in data and data[k] not in ((), [], None)}
    extra = next((d for d in ("beta", "alpha") if d in ds.coords), None)  # swept (a dim) or selected (scalar)
    if extra:
        what[extra] = float(np.ravel(ds[extra].values)[0])
    text = ", ".join(f"{k} = {v[0] if isinstance(v, list) and len(v) == 1 else v}" for k, v in what.items())
    return (f"{_model_words(spec.get('model', {}))}{data.get('kind', 'scan')} ({text}), "
            f"{ds.sizes.get('seed', 1)} seeds")


def _model_words(model: dict) -> str:
    """A model spec dict in a few words for a title, e.g. ``"LinearDiffusion (ddim, 10 VE steps) on "``."""
    kind = model.get("kind")
    if kind == "LinearDiffusion":
        if model["sampler"] == "ode":
            what = f"exact ODE, sigma {model['sigma_max']:g} -> {model['sigma_min']:g}"
        else:
            what = f"{model['sampler']}, {model['steps']} {model['schedule'].upper()} steps"
        if model.get("flow_time") is not None:
            what += f", flow time {model['flow_time']:g} ({model['parameterisation']})"
        return f"LinearDiffusion ({what}) on "
    if kind == "OneStep":
        return f"OneStep (T = {model['horizon']:g}) on "
    return f"{kind} on " if kind else ""


def save(fig: Figure, path, dpi: int = 300) -> list[Path]:
    """Write ``fig`` as ``<path>.png`` and ``<path>.pdf`` (parent folders created).

    Args:
        fig: the Figure.
        path: output path without extension (a ``.png``/``.pdf`` suffix is dropped).
        dpi: PNG resolution.

    Returns:
        The two paths written.
    """
    path = Path(path)
    if path.suffix.lower() in (".png", ".pdf"):
        path = path.with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    out, engine = [], fig.get_layout_engine()
    try:
        for ext in ("png", "pdf"):
            p = path.with_name(path.name + "." + ext)
            fig.savefig(p, dpi=dpi, format=ext)
            out.append(p)
            fig.set_layout_engine("none")  # laid out by the first draw: the PDF reuses it (0.3 s a figure)
    finally:
        fig.set_layout_engine(engine)
    return out


