"""The benchmark figure: time per grid point against d, measured in this process (``app.bench.scaling``)."""

from __future__ import annotations

import time
from pathlib import Path

import jax
import matplotlib

from ... import plots
from ...specs import Grid, Linear, Spiked
from ..bench.scaling import scaling_records
from .common import finish, fmt, record, sizes, spec_record, styled


@styled
def fig_benchmark(out_dir, mode: str = "quick", log: list | None = None) -> list[Path]:
    """Figure 7: time per grid point against d (log-log, fitted slopes) for memgen, the naive
    sqrtm loop and the eigh floor, measured in this process."""
    t0 = time.perf_counter()
    z = sizes(mode)
    lams, gamma = tuple(z["lam"]), 1.0  # the lam list of the other scans: shared kernels
    rec = scaling_records(z["bench_d"], z["bench_seeds"], z["naive_seeds"], gamma=gamma, lams=lams,
                          samples=z["samples"], beta=z["beta"])
    fig = plots.bench_scaling(rec)
    fig.set_size_inches(4.2, 3.0)
    ax = fig.axes[0]
    dev = jax.devices()[0]
    count = jax.device_count()
    ax.set_title(rf"spiked data, $\gamma = {fmt(gamma)}$, {len(lams)} $\lambda$ × {z['bench_seeds']} seeds "
                 f"per $d$, {dev.platform} ({count} device{'s' if count > 1 else ''})\nmemgen steady state "
                 "(compile excluded); floor on the scan's devices; naive loop with 1 BLAS thread", fontsize=6.5)
    ax.set_xticks(list(z["bench_d"]), [str(d) for d in z["bench_d"]])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    files = finish(fig, out_dir, "benchmark")
    used = [spec_record(Spiked(d=d, beta=z["beta"]), Linear(samples=z["samples"]),
                        Grid(gamma=[gamma], lam=lams, seeds=z["bench_seeds"]), label=f"d={d}",
                        naive_seeds=z["naive_seeds"]) for d in z["bench_d"]]
    record(log, "benchmark", files, used, mode, t0,
           seconds_per_point={k: dict(zip(map(int, v[0]), map(float, v[1]))) for k, v in rec.items()},
           device=f"{dev.platform}:{dev.device_kind}")
    return files
