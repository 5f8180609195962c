"""No hangs: no batched CPU LAPACK call reaches XLA from any kernel; every data x model kind
finishes on several CPU devices; Ctrl-C stops inside a long chunk and keeps what is done."""

import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import memgen
import reference as ref
from memgen import linalg
from memgen.engines.denoisers.engine import DenoiserEngine
from memgen.engines.onestep.engine import OneStepEngine
from memgen.engines.spectral.engine import SpectralEngine
from memgen.run import loop
from memgen.run.plan import plan

ROOT = pathlib.Path(memgen.__file__).parent
TINY_CONV = memgen.ConvDenoiser(depth=2, width=4, steps=4, batch=4, sample_steps=3, samples=5, test=4,
                                mse_sigmas=(0.5,))


def _lapack_calls(hlo: str) -> list[str]:
    """Every LAPACK custom call of a lowered module, with its batch-dimension count."""
    return re.findall(r'custom_call @(lapack_\w+).*?num_batch_dims = "(\d+)"', hlo)


def _assert_unbatched(hlo: str, expect: bool = True):
    calls = _lapack_calls(hlo)
    assert calls or not expect, "no LAPACK call found: the check would pass vacuously"
    batched = [c for c in calls if c[1] != "0"]
    assert not batched, f"batched CPU LAPACK calls reach XLA: {batched}"


def test_linalg_loops_over_native_and_vmapped_batches(rng):
    """linalg's wrappers: same numbers as NumPy; a native batch dim and nested vmaps both loop."""
    a = rng.standard_normal((3, 2, 5, 5))
    a = a + np.swapaxes(a, -1, -2)
    f = jax.jit(jax.vmap(lambda m: linalg.eigvalsh(m)))  # vmap of a natively batched call
    np.testing.assert_allclose(f(jnp.asarray(a)), np.linalg.eigvalsh(a), rtol=1e-10, atol=1e-10)
    _assert_unbatched(f.lower(jnp.asarray(a)).as_text())
    w, v = jax.jit(linalg.eigh)(jnp.asarray(a))
    np.testing.assert_allclose(np.abs(np.einsum("...ij,...ij->...j", v, np.linalg.eigh(a)[1])), 1, atol=1e-8)
    _assert_unbatched(jax.jit(linalg.eigh).lower(jnp.asarray(a)).as_text())
    _assert_unbatched(jax.jit(jax.vmap(linalg.qr)).lower(jnp.asarray(a[0])).as_text())


def test_negative_control_plain_jnp_is_batched():
    """The HLO check can fail: a plain batched jnp.linalg.eigvalsh is flagged."""
    hlo = jax.jit(jnp.linalg.eigvalsh).lower(jnp.zeros((3, 4, 4))).as_text()
    with pytest.raises(AssertionError, match="batched CPU LAPACK"):
        _assert_unbatched(hlo)


def test_no_linalg_outside_the_safe_module():
    """Every LAPACK-backed call in the package goes through memgen.linalg."""
    pat = re.compile(r"\b(jnp\.linalg\.(eigh|eigvalsh|qr|svd|cholesky|solve|inv|pinv|lstsq|det|slogdet|eig)\s*\(|"
                     r"(jax\.scipy|lax)\.linalg\.\w+\s*\(|import.*(scipy|lax)\.linalg)")
    bad = [f"{p.relative_to(ROOT)}:{i}" for p in ROOT.rglob("*.py") if p.name != "linalg.py"
           for i, line in enumerate(p.read_text().splitlines(), 1) if pat.search(line.split("#")[0])]
    assert not bad, f"LAPACK calls outside memgen/linalg.py: {bad}"


@pytest.mark.parametrize("model", [memgen.Linear(samples=3), memgen.LinearDiffusion(samples=3, steps=3)],
                         ids=["linear", "diffusion"])
@pytest.mark.parametrize("data", [memgen.Spiked(d=16, beta=2.0), memgen.PowerLaw(d=16, alpha=1.0, k=2)],
                         ids=["spiked", "powerlaw"])
def test_spectral_kernel_has_no_batched_lapack(data, model, monkeypatch):
    """The compiled chunk kernel, as the scan builds it, with 2 lam, sharded over every device;
    with free fit branches, so that a merged bucket's small load has its own Gram fit."""
    from memgen.engines.spectral import sizes

    monkeypatch.setattr(sizes, "FIT_BRANCH_SECONDS", 0.0)
    g = memgen.Grid(gamma=[0.5, 2.0], lam=[0.0, 0.1], seeds=2)
    engine = SpectralEngine(data, model, g, jnp.float32)
    assert engine.fits == {32: (8, 0)}  # one bucket, the small load on its own fit
    for n_pad in (8, 32):  # both routes (Gram below d = 16, covariance above), whatever the planner merges
        _assert_unbatched(_lowered(engine, n_pad))


def test_krylov_kernel_has_no_batched_lapack():
    """The matrix-free route: S small Ritz problems per model (vmapped) and the top block's qr.
    (Its scans run sharded over the suite's 4 CPU devices in test_krylov.py.)"""
    g = memgen.Grid(gamma=[0.5, 2.0], lam=[0.0, 0.1], seeds=2)
    engine = SpectralEngine(memgen.Spiked(d=16, beta=2.0), memgen.Linear(samples=3, method="krylov"), g, jnp.float32)
    for n_pad in sorted(engine.depth_of):
        _assert_unbatched(_lowered(engine, n_pad))


def test_onestep_kernel_has_no_batched_lapack():
    g = memgen.Grid(gamma=[0.5, 2.0], lam=[0.0], seeds=2)
    for n_pad in (8, 32):
        _assert_unbatched(_lowered(OneStepEngine(memgen.Isotropic(d=16), memgen.OneStep(samples=3, fresh=32), g,
                                                 jnp.float32), n_pad))


def _lowered(engine, bucket=None) -> str:
    """The HLO of an engine's first chunk kernel (or its kernel at ``bucket``), as the scan builds it on
    every device."""
    runner = loop.Runner(engine)
    c = plan(engine, itemsize=4, devices=len(runner.devices), batch=2)[0]
    fn = loop.compiled(type(engine), engine.static(), c.bucket if bucket is None else bucket, c.batch,
                       runner.devices)
    rows = c.units()
    per = jax.tree.map(jnp.asarray, engine.inputs(rows[np.resize(np.arange(len(rows)), fn.step)]))
    return fn.lower(per, runner.shared()).as_text()


def test_denoiser_kernel_has_no_batched_lapack():
    data, g = memgen.ImageField(size=(4, 4), alpha=2.0), memgen.Grid(gamma=[0.25], lam=[0.0, 0.01], seeds=1)
    _assert_unbatched(_lowered(DenoiserEngine(data, TINY_CONV, g, jnp.float32)))


def test_every_engine_kernel_draws_with_the_unrolled_hash():
    """Every engine's kernel draws through ``memgen.threefry`` (its roots are ``threefry.key``):
    no JAX Threefry function, whose CPU lowering is a loop (test_threefry.py shows that a
    ``jax.random`` draw has one, so this check can fail)."""
    g = memgen.Grid(gamma=[0.5, 2.0], lam=[0.0, 0.1], seeds=2)
    engines = [SpectralEngine(memgen.Spiked(d=16, beta=2.0), memgen.LinearDiffusion(samples=3, steps=3,
                                                                                 sampler="ddpm"), g, jnp.float32),
               SpectralEngine(memgen.Spiked(d=16, beta=2.0), memgen.Linear(samples=3, method="krylov"), g, jnp.float32),
               OneStepEngine(memgen.Isotropic(d=16), memgen.OneStep(samples=3, fresh=32),
                             memgen.Grid(gamma=[0.5, 2.0], lam=[0.0], seeds=2), jnp.float32),
               DenoiserEngine(memgen.ImageField(size=(4, 4), alpha=2.0), TINY_CONV,
                              memgen.Grid(gamma=[0.25], lam=[0.0, 0.01], seeds=1), jnp.float32)]
    for engine in engines:
        hlo = _lowered(engine)
        assert "threefry" not in hlo, type(engine.model).__name__


_ALL_KINDS = textwrap.dedent("""
    import sys, jax
    jax.config.update("jax_num_cpu_devices", 2)
    import memgen
    from memgen.engines.denoisers import ConvDenoiser
    conv = ConvDenoiser(depth=2, width=4, steps=4, batch=4, sample_steps=3, samples=5, test=4, mse_sigmas=(0.5,))
    datas = {"spiked": memgen.Spiked(d=24, beta=2.0), "powerlaw": memgen.PowerLaw(d=24, alpha=1.0, k=2),
             "isotropic": memgen.Isotropic(d=24),
             "field": memgen.ImageField(size=(4, 4), alpha=2.0), "images": memgen.Images(source="disks", size=(4, 4))}
    models = {"linear": memgen.Linear(samples=4), "diffusion": memgen.LinearDiffusion(samples=4, steps=3),
              "onestep": memgen.OneStep(samples=4, fresh=64), "conv": conv}
    for dn, data in datas.items():
        for mn, model in models.items():
            grid = memgen.Grid(gamma=[2.0], lam=[0.0] if mn == "onestep" else [0.0, 0.1], seeds=2)  # the HLO tests cover both routes
            try:
                ds = memgen.scan(data, model, grid, progress=False, batch=1)
            except ValueError as e:  # an invalid combination: refused before compute
                print(dn, mn, "refused:", e, flush=True)
                continue
            assert int(ds.q.notnull().sum()) == ds.q.size, (dn, mn)
            print(dn, mn, "ok", jax.device_count(), flush=True)
""")


def test_every_data_and_model_kind_finishes_on_two_devices():
    """The hang class of bug (batched CPU LAPACK under shard_map): every data kind x every model
    kind, 2 lam, 2 CPU devices, in a subprocess that must finish in time."""
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "JAX_ENABLE_X64")} | {"XLA_FLAGS": ref.xla_flags()}
    try:
        r = subprocess.run([sys.executable, "-c", _ALL_KINDS], env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"a scan hung (no result in 240 s); got so far:\n{e.stdout}")
    assert r.returncode == 0, r.stderr[-3000:]
    ok = [line.split()[:2] for line in r.stdout.splitlines() if line.endswith("ok 2")]
    assert sorted(ok) == [["field", "conv"], ["images", "conv"], ["isotropic", "diffusion"], ["isotropic", "linear"],
                          ["isotropic", "onestep"], ["powerlaw", "diffusion"], ["powerlaw", "linear"],
                          ["spiked", "diffusion"], ["spiked", "linear"]], r.stdout
    assert r.stdout.count("refused:") == 11, r.stdout


def test_powerlaw_scan_from_the_issue_finishes(tmp_path):
    """The P0 command of the trust issue, as a user types it (one XLA device per core)."""
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "JAX_ENABLE_X64")} | {"XLA_FLAGS": ref.xla_flags()}
    cmd = [sys.executable, "-m", "memgen", "scan", "--data", "powerlaw", "--alpha", "1", "--d", "100",
           "--gamma", "0.5,1,2", "--lam", "0,0.1", "--seeds", "2", "--no-progress", "--out", str(tmp_path / "p")]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert memgen.load(tmp_path / "p").q.notnull().all()


def test_ctrl_c_stops_inside_a_long_chunk_and_keeps_finished_ones(tmp_path):
    """SIGINT while a long chunk computes: exit 130 within seconds, the finished chunk stays,
    --resume completes the store."""
    out = tmp_path / "s"
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "JAX_ENABLE_X64")} | {"XLA_FLAGS": ref.xla_flags()}
    # 4 chunks of 12 seeds (units of both loads), ~1 s each on 2 cores: Ctrl-C lands inside one
    cmd = [sys.executable, "-m", "memgen", "scan", "--d", "600", "--gamma", "0.05,8", "--lam", "0",
           "--seeds", "48", "--samples", "8", "--batch", "2", "--chunk", "24", "--no-progress", "--out", str(out)]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not list(out.glob("chunks/*.npz")) and p.poll() is None:
            time.sleep(0.02)
        assert p.poll() is None, "the scan ended before the long chunk: make it longer"
        time.sleep(0.5)
        t0 = time.perf_counter()
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        took = time.perf_counter() - t0
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert took < 8, f"Ctrl-C took {took:.1f} s"
    assert "Traceback" not in err and "--resume" in err
    assert 1 <= len(list(out.glob("chunks/*.npz"))) < 4 and not (out / "results.nc").exists()
    r = subprocess.run([sys.executable, "-m", "memgen", "scan", "--resume", str(out), "--no-progress"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert memgen.load(out).q.notnull().all()


def test_chunk_is_honoured_exactly(tmp_path):
    """--chunk is never silently rounded: every chunk file holds exactly ``chunk`` points, also
    when that is not whole micro-batches on every device (the compute is padded instead)."""
    step = 2 * jax.device_count()
    ds = memgen.scan(memgen.Spiked(d=8), memgen.Linear(samples=2), memgen.Grid(gamma=[1.0], seeds=3 * step),
                     chunk=step + 1, batch=2, progress=False, out=tmp_path / "s")
    sizes = sorted(len(np.load(f)["index"]) for f in (tmp_path / "s" / "chunks").glob("*.npz"))
    assert sizes == [step - 2] + [step + 1] * 2, sizes
    assert ds.q.notnull().all()
