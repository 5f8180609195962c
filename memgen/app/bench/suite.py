"""The items of the suite and ``run_suite``: what is timed, on which grid, and the record it builds."""

from __future__ import annotations

import datetime as _dt
import os
import statistics
import sys
import time

import numpy as np

from .floor import eigh_floor, floor_matrices, training_sets
from .report import write

#: are not comparable item by item; ``compare`` says so.
#: 2: the eigh floor runs on all of the scan's devices at once (1: on the first device only).
SUITE_VERSION = 2

SIZES = (128, 256, 512, 1024, 2048, 4096)
QUICK_SIZES = (128, 256)
GAMMAS = (0.5, 1.0, 2.0, 4.0)
LAM_AXIS_D, LAM_AXIS_MANY = 256, 16
LAM_AXIS_GAMMAS = (0.5, 2.0)  # one Gram-route and one covariance-route bucket
LAMS = (0.0, 0.01, 0.1, 1.0)
SAMPLES = 32  # generated samples per model (memgen.Linear(samples=...))
THEORY_SHAPE = (200, 200)
DENOISER = dict(K=32, size=8, depth=3, width=8, batch=8, steps=100, n=64)
QUICK_DENOISER = dict(DENOISER, K=8)
DEFAULT_CAP_S = 600.0


def seeds_for(d: int) -> int:
    """Seeds per gamma at size d: 4 up to d = 512, 2 at 1024, 1 beyond (fixed by the suite)."""
    return 4 if d <= 512 else 2 if d <= 1024 else 1


def timed_runs(fn, repeat: int) -> tuple[float, list[float]]:
    """First call (compile + run) apart, then ``repeat`` timed calls; (first_s, runs_s)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return first, runs


def run_stats(first: float, runs: list[float], work: float) -> dict:
    med, best = statistics.median(runs), min(runs)
    return dict(compile_s=max(first - med, 0.0), first_s=first, run_median_s=med, run_min_s=best,
                runs_s=runs, throughput=work / med)


def host_ram() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def linear_grid(d: int, lams=LAMS, gammas=GAMMAS):
    import memgen

    return (memgen.Spiked(d=d, beta=2.0), memgen.Linear(samples=SAMPLES),
            memgen.Grid(gamma=list(gammas), lam=list(lams), seeds=seeds_for(d)))


def floor_host_skip(d: int, gammas=GAMMAS) -> str | None:
    """Reason why the floor's host data (float32) at size d would not fit RAM, or None."""
    n = [round(g * d) for g in gammas]
    seeds = seeds_for(d)
    host = 4 * (2 * max(n) * d + 2 * seeds * sum(min(k, d) ** 2 for k in n))
    if host > 0.5 * host_ram():
        return f"memory: the floor's host data needs ~{host / 2**30:.3g} GiB, over half the free RAM"
    return None


def floor_item(data, grid, repeat: int) -> dict:
    """The floor of a linear item's grid (float32): record fields, or an explicit reason."""
    import jax

    mats = floor_matrices(data.d, grid.gamma, training_sets(data, grid), "float32")
    out = dict(floor_matrices={str(m): int(a.shape[0]) for m, a in mats.items()})
    try:
        out.update(eigh_floor(mats, repeat))
    except (MemoryError, jax.errors.JaxRuntimeError) as e:  # e.g. device memory at large d
        out.update(floor_s=None, floor_error=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
    return out


# ------------------------------------------------------------------------------ items


def linear_item(d: int, repeat: int, lams=LAMS, gammas=GAMMAS) -> dict:
    """Scan throughput at size d and the eigh floor of the same grid (float32).

    Returns ``{"d": d, "skipped": reason}`` when one grid point does not fit the memory
    budget (``memgen.scan`` refuses it before any compute).
    """
    import jax

    import memgen

    data, model, grid = linear_grid(d, lams, gammas)
    points = len(gammas) * len(lams) * grid.seeds
    try:
        first, runs = timed_runs(lambda: memgen.scan(data, model, grid, progress=False), repeat)
    except ValueError as e:
        if str(e).startswith("memory"):  # memgen's refusal: "memory=... is too small", "memory: ..."
            return dict(d=d, skipped=f"memory: {e}")
        raise
    out = dict(d=d, gamma=list(gammas), lam=list(lams), seeds=grid.seeds, samples=SAMPLES,
               points=points, unit="points/s", **run_stats(first, runs, points),
               scan_devices=jax.device_count())
    out.update(floor_item(data, grid, repeat))
    if out["floor_s"] is not None:
        out["floor_fraction"] = out["floor_s"] / out["run_min_s"]
    return out


def lam_axis_item(repeat: int, d: int = LAM_AXIS_D, many: int = LAM_AXIS_MANY, gammas=LAM_AXIS_GAMMAS) -> dict:
    """Scan at size d with 1 lam and with ``many`` lams (same gammas, seeds): time ratio."""
    import memgen

    res = {}
    for L in (1, many):
        lams = LAMS if L == len(LAMS) else [float(v) for v in np.geomspace(1e-3, 10, L)]
        data, model, grid = linear_grid(d, lams, gammas)
        first, runs = timed_runs(lambda: memgen.scan(data, model, grid, progress=False), repeat)
        res[L] = run_stats(first, runs, len(gammas) * L * grid.seeds)
    ratio = res[many]["run_median_s"] / res[1]["run_median_s"]
    return dict(d=d, gamma=list(gammas), seeds=seeds_for(d), lams=[1, many],
                run_median_s=[res[1]["run_median_s"], res[many]["run_median_s"]],
                compile_s=[res[1]["compile_s"], res[many]["compile_s"]], time_ratio=ratio,
                unit="lam-points/s", throughput=res[many]["throughput"])


def theory_item(repeat: int, shape=THEORY_SHAPE) -> dict:
    """``memgen.theory`` on a spiked (gamma, lam) grid of ``shape``."""
    import memgen

    grid = memgen.Grid(gamma=[float(g) for g in np.geomspace(0.05, 20.0, shape[0])],
                       lam=[float(v) for v in np.linspace(0.0, 2.0, shape[1])])
    data = memgen.Spiked(d=1000, beta=2.0)
    dtype = []
    first, runs = timed_runs(lambda: dtype.append(str(memgen.theory(data, grid)["q"].dtype)), repeat)
    pts = shape[0] * shape[1]
    return dict(shape=list(shape), d=1000, beta=2.0, points=pts, dtype=dtype[-1], unit="points/s",
                **run_stats(first, runs, pts))


def denoiser_item(repeat: int, cfg=DENOISER) -> dict:
    """``train_ensemble`` of K ConvDenoisers on an 8x8 image field, float32."""
    import jax
    import jax.numpy as jnp

    from memgen.engines.denoisers import ConvDenoiser, ImageField, sample_field, train_ensemble

    K, n = cfg["K"], cfg["n"]
    spec = ConvDenoiser(depth=cfg["depth"], width=cfg["width"], batch=cfg["batch"], steps=cfg["steps"])
    field = ImageField(size=(cfg["size"], cfg["size"]), alpha=1.0, k=1)
    root = jax.random.key(0)
    keys = jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.arange(K))
    data = sample_field(jax.random.key(1), field, K * n, jnp.float32).reshape(K, n, *field.size)
    ns = jnp.asarray(np.linspace(1, n, K).round().astype(np.int32))
    lam = jnp.asarray(np.linspace(0.0, 0.1, K), jnp.float32)
    data, ns, lam = jax.device_put((data, ns, lam))
    with jax.default_matmul_precision("highest"):
        first, runs = timed_runs(lambda: jax.block_until_ready(train_ensemble(keys, data, ns, lam, spec=spec)),
                            repeat)
    return dict(cfg, unit="model-steps/s", dtype="float32", **run_stats(first, runs, K * cfg["steps"]))


# ------------------------------------------------------------------------------ suite


def environment() -> dict:
    """Device, versions, dtype, precision, host cores."""
    import importlib.metadata as md

    import jax

    import memgen

    dev = jax.devices()[0]

    def ver(name):
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return dict(platform=dev.platform, device_kind=dev.device_kind, device_count=jax.device_count(),
                device=f"{dev.platform}:{dev.device_kind} x{jax.device_count()}",
                jax=jax.__version__, jaxlib=ver("jaxlib"), numpy=np.__version__, memgen=memgen.__version__,
                python=sys.version.split()[0], dtype="float32", matmul_precision="highest",
                x64_enabled=bool(jax.config.jax_enable_x64), host_cores=os.cpu_count(), usable_cores=usable)


def run_suite(sizes=SIZES, quick: bool = False, repeat: int = 5, out=None, *, cap_s: float = DEFAULT_CAP_S,
              progress: bool = True, gammas=GAMMAS, lam_axis_d: int = LAM_AXIS_D,
              lam_axis_many: int = LAM_AXIS_MANY, lam_axis_gammas=LAM_AXIS_GAMMAS,
              theory_shape=THEORY_SHAPE, denoiser: dict | None = None) -> dict:
    """Runs the suite and returns its record (also written as JSON to ``out`` if given).

    Args:
        sizes: linear-scan sizes d (each >= 8).
        quick: d in (128, 256) unless ``sizes`` is given, ``repeat`` at most 3, K = 8
            denoisers: < 2 min on 2 CPU cores.
        repeat: steady-state repeats per item (>= 1); the first call is never counted.
        out: path of the JSON record.
        cap_s: per-item time cap in seconds; a size whose estimated time exceeds it is skipped.
        progress: print one line per item to stderr.
        gammas: loads of the ``linear_d{d}`` grids.
        lam_axis_d, lam_axis_many, lam_axis_gammas: the ``lam_axis_d{d}`` item (1 vs
            ``lam_axis_many`` lams).
        theory_shape: (gamma, lam) shape of the ``theory`` grid.
        denoiser: the ``denoisers`` item's config (default ``QUICK_DENOISER`` with ``quick``,
            else ``DENOISER``).
        The item sizes other than the defaults (smaller ones in the tests) make a record that
        is not the suite's; ``settings`` holds them all.

    Returns:
        dict with ``suite_version``, ``timestamp``, ``env`` (device, versions, ...),
        ``results`` {item: {...}} and ``settings``.

    Raises:
        ValueError: on bad sizes or repeat.
    """
    sizes = tuple(sizes)
    if not sizes or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 8 for d in sizes):
        raise ValueError(f"sizes must be a non-empty list of integers >= 8, got {sizes!r}")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be an integer >= 1, got {repeat!r}")
    if quick:
        sizes = QUICK_SIZES if sizes == SIZES else sizes
        repeat = min(repeat, 3)
    sizes = tuple(sorted(set(int(d) for d in sizes)))
    gammas, lam_axis_gammas = tuple(float(g) for g in gammas), tuple(float(g) for g in lam_axis_gammas)
    cfg = dict(denoiser if denoiser is not None else QUICK_DENOISER if quick else DENOISER)

    def say(msg):
        if progress:
            print(f"memgen bench: {msg}", file=sys.stderr, flush=True)

    record = dict(suite_version=SUITE_VERSION,
                  timestamp=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  env=environment(),
                  settings=dict(sizes=list(sizes), quick=quick, repeat=repeat, cap_s=cap_s, gammas=list(gammas),
                                lam_axis=dict(d=lam_axis_d, many=lam_axis_many, gammas=list(lam_axis_gammas)),
                                theory_shape=list(theory_shape), denoiser=cfg),
                  results={})
    res = record["results"]
    prev = None  # (d, points, steady seconds of the item) of the last size run
    for d in sizes:
        name = f"linear_d{d}"
        reason = floor_host_skip(d, gammas)
        if reason is None and prev is not None:
            pd, ppts, psec = prev
            est = psec * (len(gammas) * len(LAMS) * seeds_for(d) / ppts) * (d / pd) ** 3
            if est > cap_s:
                reason = f"time: estimated {est:.3g} s > cap {cap_s:g} s (from d={pd}, cost ~ points * d^3)"
        if reason is not None:
            res[name] = dict(d=d, skipped=reason)
            say(f"{name} skipped ({reason})")
            continue
        t0 = time.perf_counter()
        res[name] = r = linear_item(d, repeat, gammas=gammas)
        if "skipped" in r:
            say(f"{name} skipped ({r['skipped']})")
            continue
        steady = (repeat + 1) * r["run_median_s"] + (repeat + 1) * (r["floor_s"] or 0.0)
        prev = (d, r["points"], steady)
        floor = (f"floor fraction {r['floor_fraction']:.3g}" if r["floor_s"] is not None
                 else f"no floor ({r['floor_error']})")
        say(f"{name}: {r['throughput']:.4g} points/s, {floor} ({time.perf_counter() - t0:.1f} s)")
    t0 = time.perf_counter()
    r = lam_axis_item(repeat, d=lam_axis_d, many=lam_axis_many, gammas=lam_axis_gammas)
    res[f"lam_axis_d{r['d']}"] = r
    say(f"lam_axis: {lam_axis_many} lams / 1 lam time ratio {r['time_ratio']:.3g} "
        f"({time.perf_counter() - t0:.1f} s)")
    t0 = time.perf_counter()
    res["theory"] = r = theory_item(repeat, shape=tuple(theory_shape))
    say(f"theory: {r['throughput']:.4g} points/s ({time.perf_counter() - t0:.1f} s)")
    t0 = time.perf_counter()
    res["denoisers"] = r = denoiser_item(repeat, cfg)
    say(f"denoisers: {r['throughput']:.4g} model-steps/s ({time.perf_counter() - t0:.1f} s)")
    if out is not None:
        write(record, out)
    return record
