"""``memgen bench``: a fixed, versioned accelerator benchmark suite, JSON record plus table.

Items (suite version :data:`SUITE_VERSION`; change the version whenever an item's work changes):

- ``linear_d{d}``: ``memgen.scan`` of spiked data (beta = 2) on a fixed grid per d: gamma in
  (0.5, 1, 2, 4), 4 lams, seeds from :func:`seeds_for` (fewer at large d). The first call
  (compilation plus one run) is reported apart as ``compile_s``; then ``repeat`` steady-state
  calls, each ending in host arrays (so device work is finished when the clock stops). Gives
  median and min seconds and grid points/s. The **eigh floor** (:func:`eigh_floor`) is the
  LAPACK ``eigh`` memgen calls, of every matrix the grid decomposes (the grid's own
  covariances / Gram matrices, :func:`floor_matrices`), spread over the same devices the
  scan uses, min over repeats; ``floor_fraction = floor_s / run_min_s`` (1 = nothing but the
  unavoidable eigh). ``scan_devices``, ``floor_devices`` and ``floor_threads`` show what
  each side ran on.
- ``lam_axis_d256``: the same scan at d = 256 with 1 and with 16 lams; the time ratio shows
  what the lam axis costs (every lam comes from one eigh per dataset).
- ``theory``: ``memgen.theory`` on a 200 x 200 (gamma, lam) spiked grid, points/s.
- ``denoisers``: ``train_ensemble`` of K small ``ConvDenoiser`` models (sharded, vmapped),
  models * steps / s.

A size is skipped, with the reason recorded, when one grid point does not fit the memory
budget (``memgen.scan`` refuses it before compute), when the floor's host data would not fit
RAM, or when the time estimated from the previous
size (cost ~ points * d^3) exceeds ``cap_s``. ``compare(a, b)`` prints throughput ratios
b / a per item.

    memgen bench --quick --out benchmarks/results/cpu.json     # < 2 min on 2 CPU cores
    memgen bench --compare a.json b.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import statistics
import sys
import time
import timeit
from pathlib import Path

import numpy as np

#: Version of the suite's definition (grids, items, sizes). Records of different versions
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


def _time(fn, repeat: int) -> tuple[float, list[float]]:
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


def _stats(first: float, runs: list[float], work: float) -> dict:
    med, best = statistics.median(runs), min(runs)
    return dict(compile_s=max(first - med, 0.0), first_s=first, run_median_s=med, run_min_s=best,
                runs_s=runs, throughput=work / med)


def _host_ram() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _linear_grid(d: int, lams=LAMS, gammas=GAMMAS):
    import memgen

    return (memgen.Spiked(d=d, beta=2.0), memgen.Linear(samples=SAMPLES),
            memgen.Grid(gamma=list(gammas), lam=list(lams), seeds=seeds_for(d)))


def _floor_host_skip(d: int, gammas=GAMMAS) -> str | None:
    """Reason why the floor's host data (float32) at size d would not fit RAM, or None."""
    n = [round(g * d) for g in gammas]
    seeds = seeds_for(d)
    host = 4 * (2 * max(n) * d + 2 * seeds * sum(min(k, d) ** 2 for k in n))
    if host > 0.5 * _host_ram():
        return f"memory: the floor's host data needs ~{host / 2**30:.3g} GiB, over half the free RAM"
    return None


# ------------------------------------------------------------------------------ eigh floor


def training_sets(data, grid, dtype="float32"):
    """The training sets memgen draws, per seed: (Xa, Xb), each [n_max, d] NumPy.

    The same keys and draws as the scan (``point_keys``, ``data.population``, ``data.sample``),
    so the floor decomposes the grid's own matrices. Spiked/PowerLaw data without a beta/alpha
    sweep (the suite's grids).
    """
    import jax
    import jax.numpy as jnp

    from memgen import data as data_mod
    from memgen.engines.spectral.engine import point_keys

    if grid.beta is not None or grid.alpha is not None:
        raise ValueError("the eigh floor takes a grid without a beta/alpha sweep")
    dt = jnp.dtype(dtype)
    alpha = getattr(data, "alpha", 0.0)
    root = jax.random.key(grid.seed)
    n_max = max(round(g * data.d) for g in grid.gamma)
    for s in range(grid.seeds):
        k_pop, k_a, k_b, _ = point_keys(root, s)
        pop = data_mod.population(k_pop, data, jnp.asarray(data.beta, dt), jnp.asarray(alpha, dt), dt)
        yield np.asarray(data_mod.sample(k_a, pop, n_max)), np.asarray(data_mod.sample(k_b, pop, n_max))


def floor_matrices(d: int, gammas, sets, dtype="float32") -> dict[int, np.ndarray]:
    """Every matrix the grid decomposes, stacked by size m: {m: [count, m, m]}.

    Per (gamma, seed, model) the d x d covariance X^T X / n, or the n x n Gram matrix X X^T / n
    when n < d, of the first n = round(gamma d) rows (eigh cost depends on the spectrum, so
    these are the grid's own matrices, not stand-ins). ``sets``: (Xa, Xb) per seed.
    """
    mats: dict[int, list] = {}
    for Xa, Xb in sets:
        for gamma in gammas:
            n = round(gamma * d)
            for X in (Xa[:n], Xb[:n]):
                M = X @ X.T / n if n < d else X.T @ X / n
                mats.setdefault(M.shape[0], []).append(np.asarray(M, dtype))
    return {m: np.stack(v) for m, v in sorted(mats.items())}


def _blas_thread_count() -> int | None:
    """BLAS threads a LAPACK call gets right now (host), or None if no BLAS is loaded."""
    from threadpoolctl import threadpool_info

    n = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(n) if n else None


def eigh_floor(mats: dict[int, np.ndarray], repeat: int, devices=None) -> dict:
    """Seconds (min of ``repeat``) of the LAPACK ``eigh`` of every matrix in ``mats``.

    The same call memgen's kernels make (``memgen.linalg.eigh``: one matrix per LAPACK call
    on a CPU, batched elsewhere), with memgen's BLAS setting (``blas_threads``). The matrices
    are spread over ``devices`` (default all local devices, as ``memgen.scan``) by cost m^3,
    longest first, and every device works at once, so the floor gets the scan's cores.

    Returns:
        dict: ``floor_s``; ``floor_devices`` (devices given work); ``floor_threads`` (host
        BLAS threads per LAPACK call while timed; None on an accelerator, whose eigh does not
        run in host BLAS).
    """
    import jax
    from concurrent.futures import ThreadPoolExecutor

    from memgen import linalg
    from memgen.run.device import blas_threads

    devices = list(jax.local_devices() if devices is None else devices)
    load = [0.0] * len(devices)
    parts: list[dict[int, list]] = [{} for _ in devices]
    for m in sorted(mats, reverse=True):
        for A in mats[m]:
            k = min(range(len(devices)), key=load.__getitem__)
            load[k] += float(m) ** 3
            parts[k].setdefault(m, []).append(A)
    f = jax.jit(linalg.eigh)
    work = [[jax.device_put(np.stack(v), dev) for v in part.values()]
            for dev, part in zip(devices, parts) if part]

    def one(arrays):
        jax.block_until_ready([f(A) for A in arrays])

    with ThreadPoolExecutor(max_workers=len(work)) as pool, blas_threads(devices):
        def once():
            list(pool.map(one, work))

        once()  # compile every (device, size) once
        threads = _blas_thread_count() if devices[0].platform == "cpu" else None
        best = min(timeit.repeat(once, number=1, repeat=repeat))
    return dict(floor_s=best, floor_devices=len(work), floor_threads=threads)


def _floor_item(data, grid, repeat: int) -> dict:
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

    data, model, grid = _linear_grid(d, lams, gammas)
    points = len(gammas) * len(lams) * grid.seeds
    try:
        first, runs = _time(lambda: memgen.scan(data, model, grid, progress=False), repeat)
    except ValueError as e:
        if str(e).startswith("memory"):  # memgen's refusal: "memory=... is too small", "memory: ..."
            return dict(d=d, skipped=f"memory: {e}")
        raise
    out = dict(d=d, gamma=list(gammas), lam=list(lams), seeds=grid.seeds, samples=SAMPLES,
               points=points, unit="points/s", **_stats(first, runs, points),
               scan_devices=jax.device_count())
    out.update(_floor_item(data, grid, repeat))
    if out["floor_s"] is not None:
        out["floor_fraction"] = out["floor_s"] / out["run_min_s"]
    return out


def lam_axis_item(repeat: int, d: int = LAM_AXIS_D, many: int = LAM_AXIS_MANY, gammas=LAM_AXIS_GAMMAS) -> dict:
    """Scan at size d with 1 lam and with ``many`` lams (same gammas, seeds): time ratio."""
    import memgen

    res = {}
    for L in (1, many):
        lams = LAMS if L == len(LAMS) else [float(v) for v in np.geomspace(1e-3, 10, L)]
        data, model, grid = _linear_grid(d, lams, gammas)
        first, runs = _time(lambda: memgen.scan(data, model, grid, progress=False), repeat)
        res[L] = _stats(first, runs, len(gammas) * L * grid.seeds)
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
    first, runs = _time(lambda: dtype.append(str(memgen.theory(data, grid)["q"].dtype)), repeat)
    pts = shape[0] * shape[1]
    return dict(shape=list(shape), d=1000, beta=2.0, points=pts, dtype=dtype[-1], unit="points/s",
                **_stats(first, runs, pts))


def denoiser_item(repeat: int, cfg=DENOISER) -> dict:
    """``train_ensemble`` of K ConvDenoisers on an 8x8 image field, float32."""
    import jax
    import jax.numpy as jnp

    from memgen.denoisers import ConvDenoiser, ImageField, sample_field, train_ensemble

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
        first, runs = _time(lambda: jax.block_until_ready(train_ensemble(keys, data, ns, lam, spec=spec)),
                            repeat)
    return dict(cfg, unit="model-steps/s", dtype="float32", **_stats(first, runs, K * cfg["steps"]))


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
        reason = _floor_host_skip(d, gammas)
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


def write(record: dict, path) -> None:
    """Writes the record as indented JSON (parent folders created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(record, indent=1) + "\n")


def load(path) -> dict:
    """Reads a record; ValueError if it is not one."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"no such file {str(path)!r}")
    try:
        rec = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not JSON ({e})") from None
    if not isinstance(rec, dict) or "suite_version" not in rec or "results" not in rec:
        raise ValueError(f"{path} is not a memgen bench record (no suite_version/results)")
    return rec


# ------------------------------------------------------------------------------ output


def _fmt(v, spec=".4g") -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _floor_note(r: dict) -> str:
    """Why a linear item has no floor, or that the floor and the scan used different devices."""
    if r.get("floor_error"):
        return f"  no floor: {r['floor_error']}"
    fd, sd = r.get("floor_devices"), r.get("scan_devices")
    if fd is not None and sd is not None and fd != sd:
        return f"  floor on {fd} device(s), scan on {sd}"
    return ""


def format_table(record: dict) -> str:
    """The record as a plain-text table, one line per item."""
    env = record["env"]
    lines = [f"memgen bench v{record['suite_version']}  {record['timestamp']}  device {env['device']}  "
             f"({env['host_cores']} host cores)  jax {env['jax']}  memgen {env['memgen']}  "
             f"{env['dtype']}, precision {env['matmul_precision']}",
             f"{'item':16s} {'work':>22s} {'compile [s]':>11s} {'median [s]':>10s} {'min [s]':>9s} "
             f"{'throughput':>12s} {'unit':14s} {'floor [s]':>9s} {'floor frac':>10s}"]
    for name, r in record["results"].items():
        if "skipped" in r:
            lines.append(f"{name:16s} skipped: {r['skipped']}")
            continue
        if name.startswith("linear_"):
            work = f"{r['points']} pts ({len(r['gamma'])}g x {len(r['lam'])}l x {r['seeds']}s)"
            lines.append(f"{name:16s} {work:>22s} {_fmt(r['compile_s'], '.3g'):>11s} "
                         f"{_fmt(r['run_median_s']):>10s} "
                         f"{_fmt(r['run_min_s']):>9s} {_fmt(r['throughput']):>12s} {r['unit']:14s} "
                         f"{_fmt(r.get('floor_s')):>9s} {_fmt(r.get('floor_fraction'), '.3f'):>10s}"
                         + _floor_note(r))
        elif name.startswith("lam_axis"):
            t1, tL = r["run_median_s"]
            work = f"d={r['d']}, 1 vs {r['lams'][1]} lams"
            lines.append(f"{name:16s} {work:>22s} {_fmt(max(r['compile_s']), '.3g'):>11s} {_fmt(tL):>10s} "
                         f"{'':>9s} {_fmt(r['throughput']):>12s} {r['unit']:14s}  "
                         f"time ratio {r['time_ratio']:.3g} "
                         f"(1 lam: {t1:.4g} s)")
        else:
            work = (f"{r['shape'][0]}x{r['shape'][1]} grid" if name == "theory"
                    else f"K={r['K']} x {r['steps']} steps")
            lines.append(f"{name:16s} {work:>22s} {_fmt(r['compile_s'], '.3g'):>11s} "
                         f"{_fmt(r['run_median_s']):>10s} "
                         f"{_fmt(r['run_min_s']):>9s} {_fmt(r['throughput']):>12s} {r['unit']:14s}")
    return "\n".join(lines)


def compare(a: dict, b: dict) -> str:
    """Throughput ratios b / a per item present in both (> 1: b is faster)."""
    da, db = a["env"]["device"], b["env"]["device"]
    lines = [f"a: {da}  ({a['timestamp']}, jax {a['env']['jax']}, memgen {a['env']['memgen']})",
             f"b: {db}  ({b['timestamp']}, jax {b['env']['jax']}, memgen {b['env']['memgen']})"]
    if a["suite_version"] != b["suite_version"]:
        lines.append(f"warning: suite versions differ ({a['suite_version']} vs {b['suite_version']}); "
                     "items may not measure the same work")
    lines.append(f"{'item':16s} {'a':>12s} {'b':>12s} {'unit':14s} {'b/a':>8s}  floor frac a -> b")
    for name in list(a["results"]) + [k for k in b["results"] if k not in a["results"]]:
        ra, rb = a["results"].get(name, {}), b["results"].get(name, {})
        ta, tb = ra.get("throughput"), rb.get("throughput")
        unit = ra.get("unit") or rb.get("unit") or ""
        ratio = _fmt(tb / ta, ".3g") if ta and tb else "–"
        note = ""
        if "skipped" in ra or "skipped" in rb:
            note = "skipped in " + " and ".join(k for k, r in (("a", ra), ("b", rb)) if "skipped" in r)
        elif not ra or not rb:
            note = "only in " + ("b" if not ra else "a")
        elif "floor_fraction" in ra or "floor_fraction" in rb:
            note = f"{_fmt(ra.get('floor_fraction'), '.3f')} -> {_fmt(rb.get('floor_fraction'), '.3f')}"
        lines.append(f"{name:16s} {_fmt(ta):>12s} {_fmt(tb):>12s} {unit:14s} {ratio:>8s}  {note}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ CLI


def _sizes(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        out = ()
    if not out or min(out) < 8:
        raise argparse.ArgumentTypeError(
            f"expected a comma list of integers >= 8 such as 128,256, got {text!r}")
    return out


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return v


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="memgen bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="d in (128, 256), repeat <= 3, K = 8 (< 2 min on 2 CPU cores)")
    p.add_argument("--sizes", type=_sizes, default=SIZES,
                   help="linear-scan sizes d, e.g. 128,256 (default all)")
    p.add_argument("--repeat", type=_positive_int, default=5,
                   help="steady-state repeats per item (default 5)")
    p.add_argument("--cap", type=_positive_float, default=DEFAULT_CAP_S,
                   help=f"per-item time cap in seconds; larger sizes are skipped (default {DEFAULT_CAP_S:g})")
    p.add_argument("--out", help="JSON record path (default bench-<platform>-<time>.json)")
    p.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                   help="print throughput ratios B/A and exit")
    return p


def main(argv=None) -> int:
    """``memgen bench [--quick] [--sizes 128,256] [--repeat N] [--cap S] [--out F] [--compare A B]``.

    Returns the exit status: 0 on success, 2 on bad arguments (one clear line on stderr).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    p = parser()
    try:
        a = p.parse_args(argv)
    except SystemExit as e:  # argparse has printed usage and the error (or --help)
        return int(e.code or 0)
    if a.compare:
        try:
            ra, rb = load(a.compare[0]), load(a.compare[1])
        except ValueError as e:
            print(f"memgen bench: error: --compare: {e}", file=sys.stderr)
            return 2
        print(compare(ra, rb))
        return 0
    out = a.out
    if out is None:
        import jax

        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = f"bench-{jax.default_backend()}-{stamp}.json"
    if Path(out).is_dir():
        print(f"memgen bench: error: --out {out!r} is a directory; give a file name", file=sys.stderr)
        return 2
    try:
        rec = run_suite(sizes=a.sizes, quick=a.quick, repeat=a.repeat, out=out, cap_s=a.cap)
    except ValueError as e:
        print(f"memgen bench: error: {e}", file=sys.stderr)
        return 2
    print(format_table(rec))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
