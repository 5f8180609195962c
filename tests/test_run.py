"""The linear engine run by memgen.run: one point vs the naive reference, chunking/device invariance, compilations,
the eigh-deadlock regression, padding buckets, finite checks."""

import contextlib
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import memgen
import reference as ref
from memgen import data as data_mod
from memgen import threefry
from memgen.engines.spectral import engine as lin_engine
from memgen.engines.spectral import fit as fit_mod
from memgen.engines.spectral import sizes
from memgen.run import loop
from memgen.run.plan import plan

D_SMALL = 24


@pytest.mark.parametrize("spec", [memgen.Spiked(d=D_SMALL, beta=(3.0, 1.5)),
                                  memgen.PowerLaw(d=D_SMALL, alpha=1.2, k=2)])
@pytest.mark.parametrize("n,n_pad", [(40, 48), (10, 16)])
def test_point_matches_naive_sqrtm_loop(seed, spec, n, n_pad):
    """grid.point (float64) == the researcher's loop: sqrtm per lam, metrics by hand."""
    lam = np.array([0.0, 0.05, 0.7])
    root = jax.random.key(seed)
    s_idx = 3
    beta = jnp.asarray(spec.beta, jnp.float64)
    alpha = jnp.asarray(getattr(spec, "alpha", 0.0), jnp.float64)
    out = lin_engine.point(jnp.uint32(s_idx), n, beta, alpha, jnp.asarray(lam), root,
                           spec=spec, model=memgen.Linear(samples=7), n_pad=n_pad, dtype=jnp.float64)
    # the same draws, re-derived from the documented key layout
    k_pop, k_a, k_b, k_z = lin_engine.point_keys(root, s_idx)
    pop = data_mod.population(k_pop, spec, beta, alpha, jnp.float64)
    Xa = np.asarray(data_mod.sample(k_a, pop, n))
    Xb = np.asarray(data_mod.sample(k_b, pop, n))
    z = np.asarray(data_mod.normal(k_z, (7, spec.d), jnp.float64))
    V, b = np.asarray(pop.spikes), np.asarray(pop.beta)
    full = np.diag(np.asarray(pop.sigma)) + (V * b) @ V.T
    want = ref.naive_point(Xa, Xb, z, lam, np.asarray(pop.latent), np.diag(np.asarray(pop.sigma)), full)
    for key, val in want.items():
        np.testing.assert_allclose(out[key], val, rtol=1e-9, atol=1e-9, err_msg=key)


@pytest.mark.parametrize("model", [memgen.Linear(samples=5), memgen.LinearDiffusion(samples=5, steps=4),
                                   memgen.LinearDiffusion(samples=5, steps=4, sampler="heun", centre=True)])
@pytest.mark.parametrize("ns, n_pad, fits", [([5, 13, 13], 16, ()), ([5, 30, 64, 70, 96], 96, ()),
                                             ([5, 13, 13], 16, (8, 0, 0)), ([3, 5, 13, 30, 96], 96, (8, 8, 16, 0, 0))])
def test_loads_of_a_bucket_match_the_naive_loop_load_by_load(seed, model, ns, n_pad, fits):
    """``loads`` (one draw, moments kept across loads: one Gram matrix below d = 24; a running
    sum of x x^T from d up, over 64-row blocks, 96 not whole blocks; a repeated size) == the
    naive loop at every load, float64. With fit branches (``fits``): small loads fitted on their
    own Gram matrices of 8 or 16 rows, widened to the bucket's width (in a Gram bucket, from its
    kept Gram matrix; at the full width d, the divergences must still count the zero columns as
    off the fit's span). A centred model forms each load's covariance from the rows: it is held
    to ``point``, the single load on the bucket's own fit (tests/test_diffusion_ddpm.py holds
    that to the dense sampler)."""
    spec = memgen.Spiked(d=D_SMALL, beta=(3.0,))
    lam = np.array([0.0, 0.2])
    root = jax.random.key(seed)
    beta, alpha = jnp.asarray(spec.beta, jnp.float64), jnp.asarray(0.0, jnp.float64)
    kw = dict(spec=spec, model=model, dtype=jnp.float64)
    out = lin_engine.loads(jnp.uint32(1), beta, alpha, jnp.asarray(ns), jnp.asarray(lam), root, n_pad=n_pad,
                           fits=fits, **kw)
    k_pop, k_a, k_b, k_z = lin_engine.point_keys(root, 1)
    pop = data_mod.population(k_pop, spec, beta, alpha, jnp.float64)
    Xa, Xb = (np.asarray(data_mod.sample(k, pop, ns[-1])) for k in (k_a, k_b))
    z = np.asarray(data_mod.normal(k_z, (5, spec.d), jnp.float64))
    V, b = np.asarray(pop.spikes), np.asarray(pop.beta)
    full = np.eye(spec.d) + (V * b) @ V.T
    operator, rtol = ref.sqrtm_generator, 1e-9
    if isinstance(model, memgen.LinearDiffusion):  # the dense sampler's inverses: as tests/test_diffusion.py
        from memgen.engines.spectral import gains
        sig, s = gains.levels(model)
        operator, rtol = (lambda X, c: ref.diffusion_operator(X, c, sig, s, model.sampler)), 1e-7
    for g, n in enumerate(ns):
        if getattr(model, "centre", False):
            want = lin_engine.point(jnp.uint32(1), n, beta, alpha, jnp.asarray(lam), root, n_pad=n_pad, **kw)
        else:
            want = ref.naive_point(Xa[:n], Xb[:n], z, lam, np.asarray(pop.latent), np.eye(spec.d), full,
                                   operator=operator)
        for key in want:
            np.testing.assert_allclose(out[key][g], want[key], rtol=rtol, atol=1e-9, err_msg=f"{key} at n={n}")


def test_accumulate_adds_exactly_the_rows_asked_for(rng):
    X = rng.standard_normal((100, 7))
    for lo, hi in [(0, 100), (0, 64), (5, 70), (63, 65), (99, 100), (30, 30), (64, 100)]:
        S = jax.jit(fit_mod.accumulate, static_argnames="block")(jnp.zeros((7, 7)), jnp.asarray(X), lo, hi, block=32)
        np.testing.assert_allclose(S, X[lo:hi].T @ X[lo:hi], rtol=1e-12, atol=1e-12, err_msg=f"[{lo}, {hi})")


def test_population_covariance(rng):
    """Samples have covariance diag(sigma) + V diag(beta) V^T (no dense Sigma formed)."""
    spec = memgen.PowerLaw(d=6, alpha=1.0, beta=(4.0,), directions="random")
    pop = data_mod.population(jax.random.key(1), spec, jnp.asarray([4.0]), jnp.asarray(1.0), jnp.float64)
    X = np.asarray(data_mod.sample(jax.random.key(2), pop, 200_000))
    V, s = np.asarray(pop.spikes), np.asarray(pop.sigma)
    Sigma = np.diag(s) + 4.0 * V @ V.T
    np.testing.assert_allclose(np.mean(s), 1.0, rtol=1e-12)
    np.testing.assert_allclose(X.T @ X / len(X), Sigma, atol=0.05)
    np.testing.assert_allclose(V.T @ V, np.eye(1), atol=1e-12)


def test_rows_are_nested_prefixes():
    spec = memgen.Spiked(d=8)
    pop = data_mod.population(jax.random.key(0), spec, jnp.asarray([2.0]), jnp.asarray(0.0), jnp.float64)
    a = data_mod.sample(jax.random.key(5), pop, 5)
    b = data_mod.sample(jax.random.key(5), pop, 12)
    np.testing.assert_array_equal(a, b[:5])


def test_a_large_draw_holds_no_more_than_its_training_set():
    """The draw of a training set keeps its random-bit temporaries to a few MB (it draws a few
    blocks at a time, with memgen's unrolled Threefry); whole, with JAX's rolled CPU Threefry,
    the hash and the normal transform hold 3x the set, which at d = 16384 is 13 GB more. XLA's
    own memory analysis of the compiled draw says so, and the same analysis of that whole-at-once
    draw (the negative control, on the CPU) is rejected."""
    d, n = 2048, 8192  # 16M elements: 16 groups of the draw (compiled only, never run)
    pop = data_mod.population(jax.random.key(0), memgen.Spiked(d=d, beta=2.0), jnp.asarray([2.0]),
                              jnp.asarray(0.0), jnp.float32)
    size = n * d * 4

    def temp(f):
        return jax.jit(f).lower(jax.random.key(1)).compile().memory_analysis().temp_size_in_bytes / size

    assert temp(lambda k: data_mod.sample(k, pop, n)) < 0.5
    assert temp(lambda k: data_mod.standard_rows(k, n, d, jnp.float32)) < 0.5
    whole = jax.vmap(lambda b: jax.random.normal(jax.random.fold_in(jax.random.key(1), b), (32, d), jnp.float32))
    if jax.default_backend() == "cpu":
        assert temp(lambda k: whole(jnp.arange(n // 32, dtype=jnp.uint32))) > 2
    # grouping the blocks changes no number: the same rows as one block at a time
    one_by_one = jnp.concatenate([data_mod.sample(jax.random.key(1), pop, 32 * (b + 1))[-32:] for b in range(3)])
    np.testing.assert_array_equal(data_mod.sample(jax.random.key(1), pop, 96), one_by_one)


@pytest.mark.parametrize("data, method, batch", [(memgen.Spiked(d=1024, beta=(2.0, 1.5)), "eigh", 1),
                                                 (memgen.Isotropic(d=1024, mean=3.0), "eigh", 2),
                                                 (memgen.PowerLaw(d=1024, alpha=1.0), "eigh", 1),
                                                 (memgen.Spiked(d=1024, beta=2.0), "krylov", 1)])
def test_point_memory_model_bounds_what_xla_allocates(data, method, batch):
    """The planner's bytes per point (``point_bytes``: chunk sizes and the refusal of a grid too
    big for the memory) times the micro-batch are at least what XLA allocates on a device for
    the scan's compiled step (``loop.compiled``, as the scan builds it) at the largest load, so a
    planned chunk fits. At d = 1024, where memory starts to bind (compiled only, never run); at
    d = 256 the model's rough terms under-count by up to 30%, which no budget notices. Before
    the draw kept its temporaries small and one point ran without a vmap, XLA took 1.6x the
    model (eigh, d = 4096) and 2.8x (Krylov, d = 16384: a scan was OOM-killed)."""
    grid = memgen.Grid(gamma=[3.0, 4.0], lam=[0.01, 0.1, 0.3, 1.0], seeds=2)  # one bucket: a unit of 2 loads
    engine = lin_engine.SpectralEngine(data, memgen.Linear(method=method), grid, jnp.float32)
    (bucket, units), = engine.buckets().items()
    devices = tuple(jax.devices()[:1])
    step = loop.compiled(type(engine), engine.static(), bucket, batch, devices)
    step.compile(engine.inputs(units[:batch]), engine.shared())
    used = next(iter(step.executables.values())).memory_analysis().temp_size_in_bytes
    assert used <= batch * engine.point_bytes(bucket, 4), (used, batch * engine.point_bytes(bucket, 4))


def test_pad_rows_ladder():
    d = 100
    for n in range(1, 900):
        p = lin_engine.pad_rows(n, d)
        assert p >= n
        assert p < d or n >= d or p == d
        assert p <= max(8, 2 * n) + 8
    assert len({lin_engine.pad_rows(n, d) for n in range(1, 801)}) <= 12


def test_planner_weighs_compiles_against_padding():
    """Small d: compiling dominates, one or two buckets; large d and many seeds: padding does."""
    def buckets(d, seeds):
        grid = memgen.Grid(gamma=list(np.geomspace(0.1, 8, 24)), lam=[0, 0.01, 0.1, 1], seeds=seeds)
        return lin_engine.SpectralEngine(memgen.Spiked(d=d), memgen.Linear(samples=32), grid, "float32").buckets()
    assert len(buckets(200, 4)) <= 2  # the main job
    assert len(buckets(4000, 64)) >= 8


def test_fit_branches_only_where_they_pay(monkeypatch):
    """A small load in a merged bucket gets its own Gram fit when the eigh time it saves over its
    models outweighs a branch's compile (``FIT_BRANCH_SECONDS``): not for the quick bench's 4
    or 16 seeds, yes for 64 and at d = 800 for 2; free branches are taken wherever they save
    flops."""
    def fits(seeds, gamma=(0.25, 0.5, 1.0, 2.0, 4.0), d=256):
        grid = memgen.Grid(gamma=list(gamma), lam=[0, 0.01, 0.1, 1], seeds=seeds)
        return lin_engine.SpectralEngine(memgen.Spiked(d=d), memgen.Linear(samples=32), grid, "float32").fits
    assert fits(4) == fits(16) == {1024: (0, 0, 0, 0, 0)}
    assert fits(64) == {1024: (128, 128, 0, 0, 0)}
    assert fits(2, gamma=(0.1, 0.2, 0.4, 0.8, 1.6), d=800) == {1600: (400, 400, 400, 0, 0)}
    monkeypatch.setattr(sizes, "FIT_BRANCH_SECONDS", 0.0)
    assert fits(4) == {1024: (64, 128, 0, 0, 0)}


@pytest.mark.parametrize("data", [memgen.Spiked(d=24, beta=2.0), memgen.Isotropic(d=24, mean=1.0, std=1.5)])
def test_scan_with_fit_branches_matches_without(monkeypatch, data):
    """The engine's plan reaches the kernel: the same float64 scan with fit branches everywhere
    (free) and with none agrees to rounding, and the branches were taken. Isotropic data has a
    mean, whose part off a widened fit's span enters the divergences."""
    grid = memgen.Grid(gamma=[0.2, 0.5, 2.0, 4.0], lam=[0.0, 0.1], seeds=2)
    model = memgen.Linear(samples=5)
    runs = {}
    for price in (0.0, 1e9):
        monkeypatch.setattr(sizes, "FIT_BRANCH_SECONDS", price)
        engine = lin_engine.SpectralEngine(data, model, grid, jnp.float64)
        runs[price] = (engine.fits, memgen.scan(data, model, grid, dtype="float64", progress=False))
    assert any(runs[0.0][0][96]) and not any(runs[1e9][0][96])
    for name in runs[0.0][1].data_vars:
        np.testing.assert_allclose(runs[0.0][1][name].values, runs[1e9][1][name].values, rtol=1e-9, atol=1e-12,
                                   err_msg=name)


def test_pad_groups_is_the_cheapest_partition(rng):
    """The dynamic programme against brute force over every partition of the sorted sizes."""
    import itertools

    from memgen.run import plan
    distinct = sorted(rng.choice(np.arange(1, 400), size=7, replace=False).tolist())
    sizes = [n for n in distinct for _ in range(int(rng.integers(1, 4)))]  # two loads may share a size
    models = float(rng.integers(1, 50))
    count = {n: models * sizes.count(n) for n in distinct}
    pad = lambda n: -(-n // 16) * 16  # noqa: E731
    flops = lambda p: float(p) ** 3 * 3e3  # noqa: E731

    def cost(groups):
        return sum(plan.COMPILE_SECONDS + sum(count[n] for n in g) * flops(pad(g[-1])) / plan.FLOPS_PER_SECOND
                   for g in groups)

    def partitions(xs):
        for cuts in itertools.product([False, True], repeat=len(xs) - 1):
            groups, cur = [], [xs[0]]
            for x, c in zip(xs[1:], cuts):
                if c:
                    groups.append(cur)
                    cur = []
                cur.append(x)
            yield groups + [cur]

    got = plan.pad_groups(sizes, models, pad, flops)
    groups = {}
    for n in distinct:
        groups.setdefault(got[n], []).append(n)
    assert all(got[n] >= n for n in sizes)
    best = min(cost(p) for p in partitions(distinct))
    assert cost(list(groups.values())) == pytest.approx(best, rel=1e-12)
    worst = max(cost(p) for p in partitions(distinct))
    assert worst > best  # the instance discriminates: a wrong plan would be caught


SMALL = dict(data=memgen.Spiked(d=16, beta=2.5), grid=memgen.Grid(gamma=[0.5, 3.0], lam=[0.0, 0.2], seeds=3))


@pytest.mark.parametrize("dtype_x64", [False, True])
def test_scan_bit_identical_across_chunk_sizes(dtype_x64):
    runs = [memgen.scan(SMALL["data"], memgen.Linear(samples=5), SMALL["grid"], chunk=c, progress=False,
                        dtype="float64" if dtype_x64 else "float32", batch=2) for c in (1, 5, None)]
    for other in runs[1:]:
        for v in runs[0].data_vars:
            np.testing.assert_array_equal(runs[0][v].values, other[v].values, err_msg=v)
    assert runs[0].attrs["dtype"] == ("float64" if dtype_x64 else "float32")


def test_new_lam_and_second_chunk_do_not_recompile():
    data, model = memgen.Spiked(d=16), memgen.Linear(samples=4)
    grid = memgen.Grid(gamma=[2.0], lam=[0.0, 0.1], seeds=8)
    engine = lin_engine.SpectralEngine(data, model, grid, jnp.float32)
    runner = loop.Runner(engine)
    chunks = plan(engine, itemsize=4, chunk=4, devices=jax.device_count(), batch=1)
    assert len(chunks) == 2
    runner.run(chunks[0])
    kernel = loop.compiled(type(engine), engine.static(), chunks[0].bucket, 1, runner.devices)
    before = len(kernel.executables)
    runner.run(chunks[1])
    runner._shared = None  # a new set of lam values, same length
    engine.shared = lambda: (np.asarray([0.3, 0.9], np.float32), threefry.key(0))
    runner.run(chunks[0])
    assert len(kernel.executables) == before == 1 and runner.compile_seconds > 0


def test_sharded_scan_bit_identical_to_one_device(tmp_path):
    """1 device vs 4 (forced host) devices, in subprocesses, same numbers bit for bit."""
    script = textwrap.dedent("""
        import sys, numpy as np, memgen
        ds = memgen.scan(memgen.Spiked(d=16, beta=2.5), memgen.Linear(samples=5),
                         memgen.Grid(gamma=[0.5, 2.0], lam=[0.0, 0.3], seeds=4), progress=False)
        import jax; assert jax.device_count() == int(sys.argv[2]), jax.device_count()
        np.savez(sys.argv[1], **{k: ds[k].values for k in ds.data_vars})
    """)
    outs = ref.results_on_devices(script, (1, 4), tmp_path)
    for k in outs[0].files:
        np.testing.assert_array_equal(outs[0][k], outs[1][k], err_msg=k)


def test_eigh_deadlock_regression():
    """A jit(vmap) kernel whose pair of eighs once deadlocked (jax 0.10.2, 2 CPU cores): d=200,
    32 points per chunk. Run in a subprocess so a hang fails this test alone."""
    script = textwrap.dedent("""
        import memgen
        memgen.scan(memgen.Spiked(d=200), memgen.Linear(samples=4),
                    memgen.Grid(gamma=[2.0], lam=[0.0, 0.1], seeds=32), chunk=32, batch=32, progress=False)
        print("ok")
    """)
    env = dict(os.environ, XLA_FLAGS=ref.xla_flags(1))
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


@contextlib.contextmanager
def patched_loads(monkeypatch, fn):
    """``engines.spectral.engine.loads`` (the eigh route's kernel) is ``fn`` inside the block. Compiled kernels are cached across
    scans (``run.loop.compiled``), so the cache is emptied before (a cached kernel would ignore
    ``fn``) and after (no later scan may get a kernel built from ``fn``)."""
    loop.compiled.cache_clear()
    try:
        with monkeypatch.context() as mp:
            mp.setattr(lin_engine, "loads", fn)
            yield
    finally:
        loop.compiled.cache_clear()


def test_non_finite_is_reported_with_coordinates(monkeypatch):
    data, model, grid = memgen.Spiked(d=8), memgen.Linear(samples=2), memgen.Grid(gamma=[1.0], lam=[0.0, 0.5], seeds=1)
    real = lin_engine.loads

    def poisoned(*a, **k):
        out = real(*a, **k)
        out["q"] = out["q"] / jnp.where(a[4][None] > 0.1, 0.0, 1.0)  # q/0 at lam=0.5 -> inf
        return out

    with patched_loads(monkeypatch, poisoned):
        with pytest.raises(FloatingPointError, match=r"non-finite q at gamma=1.0, seed=0, lam=0.5"):
            memgen.scan(data, model, grid, progress=False)
    # the same spec again, as a later test would run it: the real kernel, finite numbers
    assert np.isfinite(memgen.scan(data, model, grid, progress=False)["q"].values).all()


def test_memory_too_small_is_refused_before_compute():
    with pytest.raises(ValueError, match=r"memory=.*too small.*d=400"):
        memgen.scan(memgen.Spiked(d=400), memgen.Linear(), memgen.Grid(gamma=[1.0]), memory="1MB")


def test_eta_keeps_compiling_apart():
    """ETA = measured compute rate x remaining cost + one mean compile per bucket whose kernel is
    not compiled yet; none once every kernel is (``run_chunks`` compiles them all first: counting
    their compiles again would overstate the ETA by the whole compile time per bucket)."""
    from types import SimpleNamespace

    from memgen.run.plan import Chunk

    engine = SimpleNamespace(point_bytes=lambda bucket, itemsize: {"a": 100, "b": 300}[bucket])
    runner = SimpleNamespace(engine=engine, compute_seconds=2.0, compile_seconds=10.0, compiled_buckets={"a"})
    idx = np.arange(4)
    done = [Chunk("a", idx, 4, 2)]  # cost 400 in 2 s
    todo = [Chunk("a", idx, 4, 2), Chunk("b", idx, 4, 2)]  # cost 400 + 1200, one bucket not compiled
    assert loop.eta(runner, done, todo) == pytest.approx(2.0 / 400 * 1600 + 10.0)
    runner.compiled_buckets = {"a", "b"}
    assert loop.eta(runner, done, todo) == pytest.approx(2.0 / 400 * 1600)
    assert loop.eta(runner, [], todo) is None
    # negative control: counting the compile as compute would claim over twice the time
    assert loop.eta(SimpleNamespace(engine=engine, compute_seconds=12.0, compile_seconds=0.0, compiled_buckets={"a", "b"}),
                    done, todo) > 2 * loop.eta(runner, done, todo)


def test_progress_shows_eta_and_compile_time(capsys):
    memgen.scan(memgen.Spiked(d=12), memgen.Linear(samples=2), memgen.Grid(gamma=[0.5, 2.0], lam=[0.0], seeds=2),
                batch=1, chunk=1)
    err = capsys.readouterr().err
    assert "ETA" in err and "compiling" in err and "values" in err


def test_ctrl_c_is_never_lost_in_a_gc_callback():
    """SIGINT that lands inside a garbage-collector callback (jax has one) used to be printed as
    "Exception ignored" and dropped, and the scan ran on (seen once in CI). Now it is a flag that
    the runner acts on at the next safe point."""
    import gc
    import os
    import signal
    import threading
    import time

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")

    def in_gc(phase, info):
        if phase == "start":
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.02)  # the signal is handled here, inside the callback

    reached = False
    with pytest.raises(KeyboardInterrupt):
        with loop.interruptible():
            gc.callbacks.append(in_gc)
            try:
                gc.collect()
            finally:
                gc.callbacks.remove(in_gc)
            reached = True  # nothing was raised inside the callback ...
    assert reached  # ... and the interrupt still came, at the safe point
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_one_compile_per_shape_whatever_the_host_dtype():
    """Without x64, device_put narrows int64 host inputs to int32: the compiled step is keyed by
    what the devices get, so compiling ahead and calling meet the same executable (a mismatch
    compiled every bucket twice), and a chunk of several steps reuses it."""
    from memgen.run.batching import gather, sharded_map

    with jax.enable_x64(False):
        f = sharded_map(lambda p, s: p * 2 + s, batch=2, devices=tuple(jax.devices()))
        per = np.arange(3 * f.step, dtype=np.int64)
        assert not f.compiled(per, np.int64(1))
        assert f.compile(per, np.int64(1)) > 0
        assert f.compiled(per, np.int64(1)) and f.compiled(per[: f.step], np.int64(1))  # keyed by the step
        out = f(per, np.int64(1))
        assert len(f.executables) == 1
        assert len(out) == 3  # one output per step, joined by gather
        np.testing.assert_array_equal(gather(out), 2 * np.arange(3 * f.step) + 1)


def test_inputs_of_size_zero_never_enter_the_program():
    """jaxlib 0.11.2's SPMD partitioner crashes the process (SIGSEGV) on a program with a
    sharded or replicated input of size 0 (PowerLaw data without spikes pass [points, 0]
    spike strengths): sharded_map makes such leaves inside the program instead. Checked on the
    lowered program's parameters (the crash itself needs that jaxlib), and on the results."""
    import re

    from memgen.run.batching import gather, sharded_map

    def fn(per, shared):
        a, empty = per
        return a * 2 + empty.sum() + shared["b"] + shared["none"].sum().astype(a.dtype), empty.shape, shared["none"].dtype

    devices = tuple(jax.devices())
    f = sharded_map(lambda per, shared: fn(per, shared)[0], batch=2, devices=devices)
    per = (np.arange(2 * f.step, dtype=np.float32), np.zeros((2 * f.step, 0), np.float32))
    shared = {"b": np.float32(1), "none": np.zeros((0, 3), np.int32)}
    params = re.findall(r"func\.func public @main\((.*?)\)\s*->", f.lower(per, shared).as_text(), re.S)[0]
    assert "tensor<" in params and not re.search(r"tensor<(\d+x)*0x|tensor<0x|x0x", params), params
    # the negative control: jax's own lowering of the same inputs has them
    plain = jax.jit(lambda per, shared: fn(per, shared)[0]).lower(per, shared).as_text()
    assert re.search(r"tensor<\d+x0xf32>", plain)
    np.testing.assert_array_equal(gather(f(per, shared)), 2 * np.arange(2 * f.step) + 1)
    seen = []  # shapes and dtypes inside are those of the leaves given (batch points per device)
    g = sharded_map(lambda per, shared: seen.append(fn(per, shared)[1:]) or per[0], batch=2, devices=devices)
    g(per, shared)
    assert seen == [((0,), np.dtype(np.int32))]


def test_kernels_compile_at_highest_precision():
    """The runner compiles in a thread (so that Ctrl-C stays live), and JAX's matmul precision
    setting is thread-local: set in the calling thread, it missed the compile and every kernel
    had the platform default (TF32 on GPUs; on a CPU float32 dots are exact either way)."""
    data, model = memgen.Spiked(d=16, beta=2.0), memgen.Linear(samples=3)
    engine = lin_engine.SpectralEngine(data, model, memgen.Grid(gamma=[0.5, 2.0], lam=[0.0], seeds=2), jnp.float32)
    runner = loop.Runner(engine)
    c = plan(engine, itemsize=4, devices=len(runner.devices), batch=1)[0]
    runner.run(c)
    kernel = loop.compiled(type(engine), engine.static(), c.bucket, c.batch, runner.devices)
    dots = [ln for ex in kernel.executables.values() for ln in ex.as_text().splitlines() if " dot(" in ln]
    assert dots and all("operand_precision={highest,highest}" in ln for ln in dots)


def test_wait_ticks_while_a_chunk_computes():
    """``loop.wait`` calls its tick (the progress bar's refresh) while results are not ready, and
    returns the tree once they are; not at all when they are ready at once."""
    import threading
    import time

    class Leaf:  # a jax.Array stand-in: ready once ``block_until_ready`` has slept
        def __init__(self, seconds):
            self.seconds, self.done = seconds, threading.Event()
            if not seconds:
                self.done.set()

        def is_ready(self):
            return self.done.is_set()

        def block_until_ready(self):
            time.sleep(self.seconds)
            self.done.set()
            return self

    ticks = []
    tree = {"a": Leaf(0.3)}
    assert loop.wait(tree, tick=lambda: ticks.append(1), every=0.01) is tree and tree["a"].is_ready()
    assert 10 <= len(ticks) <= 40
    ticks.clear()
    loop.wait({"a": Leaf(0)}, tick=lambda: ticks.append(1), every=0.0)
    assert ticks == []


def _logging_runner(log, fail_at=None, lost=(), broken=()):
    """A Runner stand-in for ``run_chunks`` that logs compile/dispatch/collect; its chunks finish
    at once; dispatching chunk ``fail_at`` raises; the kernels of buckets in ``lost`` are not
    there after ``compile`` (as if dropped from a cache), so ``dispatch`` compiles them; those
    of buckets in ``broken`` fail to compile."""
    from types import SimpleNamespace

    compiled = set()

    class Runner:
        engine = SimpleNamespace(values_per_point=1, point_bytes=lambda bucket, itemsize: 1)
        devices = tuple(jax.local_devices())
        compile_seconds = compute_seconds = 1.0
        tick = None

        def place(self, chunks):
            log.append(("place", "".join(c.bucket for c in chunks)))

        def ready(self, c):
            return c.bucket in compiled

        def compile(self, c):
            if c.bucket in broken:
                raise MemoryError("compiling: out of memory")
            if c.bucket not in compiled:
                log.append(("compile", c.bucket))
                if c.bucket not in lost:
                    compiled.add(c.bucket)

        def dispatch(self, c):
            if int(c.index[0]) == fail_at:
                raise MemoryError("out of memory")
            if c.bucket in broken:
                raise MemoryError("compiling: out of memory")
            if c.bucket not in compiled:
                log.append(("compile", c.bucket))
                compiled.add(c.bucket)
            log.append(("dispatch", int(c.index[0])))
            return c

        def collect(self, c):
            log.append(("collect", int(c.index[0])))
            return {"x": c.index}

    return Runner()


def test_run_chunks_compiles_first_then_overlaps_chunks_but_never_a_compile():
    """Every bucket's kernel compiles before any chunk runs; then chunk i + 1 is dispatched
    before chunk i is collected (the devices never idle while the host stores a chunk, and
    small buckets placed on different devices compute at once). A chunk whose kernel is not
    there (dropped meanwhile) waits: every finished chunk is yielded (stored) before a compile
    starts, so Ctrl-C during a compile loses nothing computed."""
    from memgen.run.plan import Chunk

    chunks = [Chunk(b, np.array([i]), 1, 1) for i, b in enumerate("aabb")]
    for lost, after_first in (((), [("dispatch", 2), ("collect", 1), ("yield", 1)]),
                              (("b",), [("collect", 1), ("yield", 1), ("compile", "b"), ("dispatch", 2)])):
        log, got = [], []
        for c, out in loop.run_chunks(_logging_runner(log, lost=lost), chunks, progress=False):
            log.append(("yield", int(c.index[0])))
            got.append(int(out["x"][0]))
        assert got == [0, 1, 2, 3]
        assert log == [("place", "aabb"), ("compile", "a"), ("compile", "b"), ("dispatch", 0), ("dispatch", 1),
                       ("collect", 0), ("yield", 0), *after_first, ("dispatch", 3), ("collect", 2), ("yield", 2),
                       ("collect", 3), ("yield", 3)], lost


def test_small_buckets_run_side_by_side_on_devices_of_their_own(monkeypatch):
    """One seed: each padding bucket is one unit, so each gets one device of its own, the next
    bucket the next device (they compute at once, no padding copies); buckets with units for
    every device keep them all. The numbers equal those of each chunk run on every device.
    (Compiling priced at 0, so that the planner keeps the loads in buckets of their own.)"""
    from memgen.run import plan as plan_mod

    monkeypatch.setattr(plan_mod, "COMPILE_SECONDS", 0.0)
    assert jax.local_device_count() >= 2  # the suite runs 4 CPU devices
    data, model = memgen.Spiked(d=16, beta=2.0), memgen.Linear(samples=4)
    for seeds in (1, 8):
        grid = memgen.Grid(gamma=[0.5, 2.0, 4.0], lam=[0.0, 0.1], seeds=seeds)
        engine = lin_engine.SpectralEngine(data, model, grid, jnp.float32)
        chunks = plan(engine, itemsize=4, devices=jax.local_device_count(), batch=1)
        runner = loop.Runner(engine)
        placed = {int(c.index[0]): out for c, out in loop.run_chunks(runner, chunks, progress=False)}
        buckets = sorted({c.bucket for c in chunks})
        assert 2 <= len(buckets) <= jax.local_device_count()
        if seeds == 1:
            devs = [runner.placement[b] for b in buckets]
            assert all(len(d) == 1 for d in devs) and len(set(devs)) == len(devs)
            for b, d in zip(buckets, devs):  # and each ran on its devices' kernel
                assert loop.compiled(type(engine), engine.static(), b, 1, d).executables
        else:
            assert runner.placement == {}
        everywhere = loop.Runner(engine)
        for c in chunks:
            for k, v in everywhere.run(c).items():
                np.testing.assert_array_equal(placed[int(c.index[0])][k], v, err_msg=f"{k} seeds={seeds}")


def test_run_chunks_stores_a_finished_chunk_before_ctrl_c_or_a_failed_dispatch():
    """Ctrl-C while the caller stores chunk 0 (chunk 1 in flight, finished): chunk 1 is yielded,
    then the interrupt; chunk 2 never starts. A dispatch that fails (chunk 1): chunk 0, already
    computed, is yielded before the error."""
    from memgen.run.plan import Chunk

    chunks = [Chunk("a", np.array([i]), 1, 1) for i in range(3)]
    log, got = [], []
    with pytest.raises(KeyboardInterrupt):
        for c, _ in loop.run_chunks(_logging_runner(log), chunks, progress=False):
            got.append(int(c.index[0]))
            if len(got) == 1:
                loop._INTERRUPTED.set()
    assert got == [0, 1] and ("dispatch", 2) not in log
    log, got = [], []
    with pytest.raises(MemoryError):
        for c, _ in loop.run_chunks(_logging_runner(log, fail_at=1), chunks, progress=False):
            got.append(int(c.index[0]))
    assert got == [0]
    # a kernel that fails to compile before any chunk runs fails again when its chunk comes,
    # after the chunks of the buckets before it are stored
    chunks = [Chunk(b, np.array([i]), 1, 1) for i, b in enumerate("aab")]
    log, got = [], []
    with pytest.raises(MemoryError, match="compiling"):
        for c, _ in loop.run_chunks(_logging_runner(log, broken=("b",)), chunks, progress=False):
            got.append(int(c.index[0]))
    assert got == [0, 1]
