"""Stores: atomic chunks, resume after SIGKILL (bit-identical), refusal of foreign stores."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

import memgen
import reference as ref

DATA, MODEL = memgen.Spiked(d=12, beta=2.0), memgen.Linear(samples=3)
GRID = memgen.Grid(gamma=[0.5, 1.0, 2.0], lam=[0.0, 0.1], seeds=8)


def _same(a, b):
    for v in a.data_vars:
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)


def test_roundtrip_and_attrs(tmp_path):
    ds = memgen.scan(DATA, MODEL, GRID, out=tmp_path / "s", progress=False, batch=2)
    back = memgen.load(tmp_path / "s")
    _same(ds, back)
    assert back.attrs["memgen_kind"] == "scan" and back.attrs["dtype"] == "float32"
    assert back.q.dtype == np.float32 and ds.q.dtype == np.float32
    assert "device" in back.attrs and "jax_version" in back.attrs
    from memgen.store import spec_from_attrs

    assert spec_from_attrs(back) == (DATA, MODEL, GRID)
    assert list(back.n.values) == [6, 12, 24]


def test_existing_out_is_refused(tmp_path):
    memgen.scan(DATA, MODEL, GRID, out=tmp_path / "s", progress=False, batch=2)
    with pytest.raises(ValueError, match=r"exists and is not empty; pass mode='overwrite'"):
        memgen.scan(DATA, MODEL, GRID, out=tmp_path / "s", progress=False, batch=2)
    other = memgen.Grid(gamma=[0.5], lam=[0.0], seeds=2)
    with pytest.raises(ValueError, match=r"written by another spec \(differs in grid\)"):
        memgen.scan(DATA, MODEL, other, out=tmp_path / "s", mode="resume", progress=False, batch=2)
    with pytest.raises(ValueError, match=r"written by another spec \(differs in batch\)"):
        memgen.scan(DATA, MODEL, GRID, out=tmp_path / "s", mode="resume", progress=False, batch=3)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(ValueError, match=r"not a store memgen created \(no .memgen-store\); refusing to delete it"):
        memgen.scan(DATA, MODEL, GRID, out=tmp_path / "mine", mode="overwrite", progress=False)
    assert (tmp_path / "mine" / "notes.txt").exists()
    with pytest.raises(ValueError, match=r"nothing to resume"):
        memgen.scan(DATA, MODEL, GRID, out=tmp_path / "new", mode="resume", progress=False)


def test_resume_after_sigkill_is_bit_identical(tmp_path):
    """Kill a scan mid-way (SIGKILL), resume it, compare with an uninterrupted scan."""
    out = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import memgen, time
        from memgen.run import loop as g
        real = g.Runner.collect
        def slow(self, flight):
            time.sleep(0.4)
            return real(self, flight)
        g.Runner.collect = slow
        memgen.scan(memgen.Spiked(d=12, beta=2.0), memgen.Linear(samples=3),
                    memgen.Grid(gamma=[0.5, 1.0, 2.0], lam=[0.0, 0.1], seeds=8),
                    out={str(out)!r}, chunk=2, batch=2, progress=False)
    """)
    env = dict(os.environ, XLA_FLAGS=ref.xla_flags(1))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    chunks = out / "chunks"
    deadline = time.time() + 200
    while time.time() < deadline and len(list(chunks.glob("*.npz")) if chunks.exists() else []) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_done = len(list(chunks.glob("*.npz")))
    assert 2 <= n_done < 12, n_done
    partial = memgen.load(out)
    assert partial.attrs["complete"] == 0 and np.isnan(partial.q.values).any()
    resumed = memgen.scan(DATA, MODEL, GRID, out=out, mode="resume", progress=False, chunk=5, batch=2)
    fresh = memgen.scan(DATA, MODEL, GRID, progress=False, batch=2)
    _same(resumed, fresh)
    assert not list(chunks.glob("*.tmp"))


def test_ctrl_c_abandons_the_chunk_in_flight_and_keeps_finished_ones(tmp_path):
    """SIGINT mid-chunk: the scan stops at once; the chunk finished before it is stored (also
    when Ctrl-C came before it was collected: chunks overlap), the one in flight is not
    (tests/test_trust.py times this on a long chunk)."""
    out = tmp_path / "int"
    script = textwrap.dedent(f"""
        import jax, memgen, os, signal, threading, time
        from memgen.run import loop as g
        real = g.Runner.dispatch
        calls, flights = [], []

        class Never:  # a result that never arrives: the chunk in flight
            def is_ready(self):
                return False

            def block_until_ready(self):
                threading.Event().wait()

        def dispatch(self, c):
            calls.append(1)
            if len(calls) == 2:  # chunk 1 finished, not collected yet
                jax.block_until_ready(flights[0][1])
                os.kill(os.getpid(), signal.SIGINT)
                return c, [{{"q": Never()}}], time.perf_counter()
            flights.append(real(self, c))
            return flights[-1]
        g.Runner.dispatch = dispatch
        try:
            memgen.scan(memgen.Spiked(d=12, beta=2.0), memgen.Linear(samples=3),
                        memgen.Grid(gamma=[0.5, 1.0, 2.0], lam=[0.0, 0.1], seeds=8),
                        out={str(out)!r}, chunk=2, batch=2, progress=False)
        except KeyboardInterrupt:
            print("stopped after", len(calls))
    """)
    env = dict(os.environ, XLA_FLAGS=ref.xla_flags(1))
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240)
    assert "stopped after 2" in r.stdout, (r.stdout, r.stderr[-2000:])
    assert len(list((out / "chunks").glob("*.npz"))) == 1


def test_float32_vs_x64_on_the_spiked_scan():
    """The documented float32 error: every order parameter within 1e-4 of the x64 scan."""
    grid = memgen.Grid(gamma=[0.3, 1.0, 3.0], lam=[0.0, 0.1, 1.0], seeds=2)
    data = memgen.Spiked(d=64, beta=2.0)
    f32 = memgen.scan(data, memgen.Linear(samples=8), grid, progress=False)
    f64 = memgen.scan(data, memgen.Linear(samples=8), grid, progress=False, dtype="float64")
    for v in ("m", "q", "w2", "m_kad", "Q"):
        np.testing.assert_allclose(f32[v].values, f64[v].values, atol=1e-4, err_msg=v)
    np.testing.assert_allclose(f32.top_eig.values, f64.top_eig.values, rtol=1e-4)


# ---------------------------------------------------------------- trust: never lose or mix data

SMALL = dict(progress=False, batch=2)


def test_overwrite_deletes_only_what_memgen_wrote(tmp_path):
    """A folder with a spec.json that memgen did not create is refused; so is a memgen store
    holding a user's file (named); a genuine store is replaced."""
    mine = tmp_path / "paper"
    mine.mkdir()
    (mine / "spec.json").write_text("{}")
    (mine / "paper.tex").write_text("precious")
    with pytest.raises(ValueError, match=r"paper'.*not a store memgen created"):
        memgen.scan(DATA, MODEL, GRID, out=mine, mode="overwrite", **SMALL)
    assert (mine / "paper.tex").read_text() == "precious"

    store = tmp_path / "s"
    memgen.scan(DATA, MODEL, GRID, out=store, **SMALL)
    (store / "paper.tex").write_text("precious")
    with pytest.raises(ValueError, match=r"refusing to delete '.*paper.tex', which memgen did not write"):
        memgen.scan(DATA, MODEL, GRID, out=store, mode="overwrite", **SMALL)
    assert (store / "paper.tex").exists() and (store / "results.nc").exists()
    (store / "paper.tex").unlink()
    other = memgen.Grid(gamma=[1.0], lam=[0.0], seeds=2)
    ds = memgen.scan(DATA, MODEL, other, out=store, mode="overwrite", **SMALL)
    assert memgen.load(store).sizes == ds.sizes and len(list((store / "chunks").glob("*.npz"))) == 1


def test_out_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(ValueError, match=r"is a file, not a store directory"):
        memgen.scan(DATA, MODEL, GRID, out=f, **SMALL)


_HOLD = textwrap.dedent("""
    import sys, time
    import memgen
    from memgen import engines, store
    specs = (memgen.Spiked(d=12, beta=2.0), memgen.Linear(samples=3),
             memgen.Grid(gamma=[0.5, 1.0, 2.0], lam=[0.0, 0.1], seeds=8), "float32")
    spec = store.spec_dict(*specs, 2, arithmetic=engines.build(*specs).arithmetic)
    s = store.Store(sys.argv[1], spec)
    print("locked", flush=True)
    time.sleep(120)
""")


def test_one_writer_per_store_and_a_dead_writer_does_not_block(tmp_path):
    """A second writer is refused while the first lives (OS lock); after the first is killed
    (SIGKILL, no cleanup), the store opens again."""
    out = tmp_path / "s"
    p = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        for kw in ({}, {"mode": "overwrite"}, {"mode": "resume"}):
            with pytest.raises(ValueError, match=r"being written by another memgen process"):
                memgen.scan(DATA, MODEL, GRID, out=out, **kw, **SMALL)
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
    # the killed writer left its lock file and spec behind; the lock itself died with it
    ds = memgen.scan(DATA, MODEL, GRID, out=out, mode="resume", **SMALL)
    assert ds.q.notnull().all()


def test_two_scans_started_together_never_mix(tmp_path):
    """Two processes on one new --out at once: one writes the store, the other is refused with
    one line (no crash on a shared temp file, no mixed chunks)."""
    out = tmp_path / "s"
    env = dict(os.environ, XLA_FLAGS=ref.xla_flags(1))
    cmds = [[sys.executable, "-m", "memgen", "scan", "--d", "12", "--gamma", "0.5,1,2", "--lam", "0,0.1",
             "--seeds", str(s), "--samples", "3", "--batch", "2", "--no-progress", "--out", str(out)] for s in (8, 6)]
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    res = [(p.returncode, p.communicate(timeout=240)[1]) for p in procs]
    res = [(p.returncode, e) for p, (_, e) in zip(procs, res)]
    codes = sorted(r[0] for r in res)
    assert codes == [0, 2], res
    err = next(e for c, e in res if c == 2)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "being written by another memgen process" in err or "exists and is not empty" in err
    ds = memgen.load(out)
    seeds = json.loads((out / "spec.json").read_text())["grid"]["seeds"]
    assert ds.sizes["seed"] == seeds and ds.q.notnull().all()
    assert not list(out.rglob("*.tmp"))


def test_chunks_of_another_spec_are_rejected(tmp_path):
    """Editing spec.json (d = 12 -> 13) must not relabel the d = 12 chunks."""
    out = tmp_path / "s"
    memgen.scan(DATA, MODEL, GRID, out=out, **SMALL)
    (out / "results.nc").unlink()
    spec = json.loads((out / "spec.json").read_text())
    spec["data"]["d"] = 13
    (out / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=r"c0+-\w+\.npz was computed for another spec"):
        memgen.load(out)
    edited = memgen.Spiked(d=13, beta=2.0)
    with pytest.raises(ValueError, match=r"computed for another spec"):
        memgen.scan(edited, MODEL, GRID, out=out, mode="resume", **SMALL)


def test_results_of_another_spec_are_rejected(tmp_path):
    out = tmp_path / "s"
    memgen.scan(DATA, MODEL, GRID, out=out, **SMALL)
    spec = json.loads((out / "spec.json").read_text())
    spec["grid"]["seed"] = 5
    (out / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=r"results.nc was not written for .*spec.json"):
        memgen.load(out)


@pytest.mark.parametrize("damage", ["truncate", "empty", "flip"])
def test_corrupt_chunk_is_named_skipped_by_load_and_recomputed_by_resume(tmp_path, damage):
    out = tmp_path / "s"
    fresh = memgen.scan(DATA, MODEL, GRID, out=out, chunk=8, **SMALL)
    (out / "results.nc").unlink()
    victim = sorted((out / "chunks").glob("*.npz"))[1]
    raw = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(raw[: len(raw) // 2])
    elif damage == "empty":
        victim.write_bytes(b"")
    else:  # one flipped byte inside the stored data: a CRC error
        buf = bytearray(raw)
        buf[len(buf) // 3] ^= 0xFF
        victim.write_bytes(bytes(buf))
    from memgen.store import StoreWarning

    with pytest.warns(StoreWarning, match=re.escape(victim.name)):
        partial = memgen.load(out)
    assert partial.attrs["complete"] == 0 and partial.q.isnull().any() and partial.q.notnull().any()
    with pytest.warns(StoreWarning, match=re.escape(victim.name) + r".*recomputed"):
        resumed = memgen.scan(DATA, MODEL, GRID, out=out, mode="resume", chunk=8, **SMALL)
    _same(resumed, fresh)
    assert (out / "chunks" / "corrupt" / victim.name).exists()  # set aside, not deleted


def test_load_refuses_what_is_not_a_store_and_accepts_results_nc(tmp_path):
    import xarray as xr

    other = tmp_path / "other"
    other.mkdir()
    xr.Dataset({"q": ("x", np.zeros(3))}).to_netcdf(other / "results.nc", engine="h5netcdf")
    with pytest.raises(ValueError, match=r"not a memgen store"):
        memgen.load(other)
    with pytest.raises(ValueError, match=r"not a memgen store"):
        memgen.load(other / "results.nc")
    (other / "spec.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"spec.json: invalid JSON at line 1"):
        memgen.load(other)
    (other / "spec.json").write_text('{"data": {}}')
    with pytest.raises(ValueError, match=r"missing key 'model', 'grid'"):
        memgen.load(other)
    ds = memgen.scan(DATA, MODEL, GRID, out=tmp_path / "s", **SMALL)
    _same(memgen.load(tmp_path / "s" / "results.nc"), ds)


def test_resume_keeps_the_theory(tmp_path):
    """A store made with theory keeps its *_theory variables through a resume (and a partial load)."""
    out = tmp_path / "s"
    full = memgen.scan(DATA, MODEL, GRID, out=out, theory=True, chunk=8, **SMALL)
    assert {"q_theory", "Q_theory", "m_theory"} <= set(full.data_vars)
    (out / "results.nc").unlink()
    sorted((out / "chunks").glob("*.npz"))[0].unlink()
    assert "q_theory" in memgen.load(out)
    resumed = memgen.scan(DATA, MODEL, GRID, out=out, mode="resume", theory=True, **SMALL)
    _same(resumed, full)
    assert "q_theory" in memgen.load(out)
    with pytest.raises(ValueError, match=r"differs in theory"):
        memgen.scan(DATA, MODEL, GRID, out=out, mode="resume", **SMALL)


def test_theory_is_computed_before_the_scan(tmp_path):
    """A theory that cannot exist fails before any compute, and before the store is created."""
    data = memgen.ImageField(size=(4, 4), alpha=2.0)
    model = memgen.ConvDenoiser(depth=2, width=4, steps=4, batch=4, sample_steps=3, samples=5, test=4)
    with pytest.raises(ValueError, match=r"no asymptotic theory for ImageField"):
        memgen.scan(data, model, memgen.Grid(gamma=[0.5], lam=[0.0], seeds=1), out=tmp_path / "s", theory=True,
                    progress=False)
    assert not (tmp_path / "s").exists()


def test_resume_keeps_the_batch_the_store_was_written_with(tmp_path):
    """``scan(batch=None, mode="resume")`` finishes a store with its own micro-batch (a store written
    at 2 resumes at 2, bit for bit, though the CPU default is 1); an explicit other batch is refused."""
    default = 1 if jax.default_backend() == "cpu" else 8  # scan.default_batch
    assert json.loads(memgen.scan(DATA, MODEL, GRID, progress=False).attrs["memgen_spec"])["batch"] == default
    out = tmp_path / "s"
    full = memgen.scan(DATA, MODEL, GRID, out=out, batch=2, chunk=jax.device_count() * 2, progress=False)
    chunks = sorted((out / "chunks").glob("*.npz"))
    assert len(chunks) > 1
    chunks[0].unlink()
    (out / "results.nc").unlink()
    with pytest.raises(ValueError, match="differs in batch"):
        memgen.scan(DATA, MODEL, GRID, out=out, batch=1, progress=False, mode="resume")
    again = memgen.scan(DATA, MODEL, GRID, out=out, progress=False, mode="resume")
    for v in full.data_vars:
        np.testing.assert_array_equal(again[v].values, full[v].values, err_msg=v)


@pytest.mark.parametrize("old", [1, 2, 3])
def test_resume_refuses_a_store_begun_by_kernels_that_round_differently(tmp_path, old):
    """A store begun by earlier kernels of the linear engine's eigh route (revision 1: before it
    accumulated its moments, no ``arithmetic`` in its spec; 2: before memorisation walked row
    blocks; 3: before fit branches) is never finished by today's, which round differently; it is refused by name, and
    nothing in it is touched."""
    out = tmp_path / "s"
    memgen.scan(DATA, MODEL, GRID, out=out, chunk=3, **SMALL)
    spec = json.loads((out / "spec.json").read_text())
    assert spec["arithmetic"] == 4
    if old == 1:
        del spec["arithmetic"]
    else:
        spec["arithmetic"] = old
    (out / "spec.json").write_text(json.dumps(spec))
    (out / "results.nc").unlink()
    before = sorted(p.name for p in (out / "chunks").iterdir())
    with pytest.raises(ValueError, match=rf"round differently \(arithmetic revision {old}, this memgen's 4\)"):
        memgen.scan(DATA, MODEL, GRID, out=out, mode="resume", **SMALL)
    assert sorted(p.name for p in (out / "chunks").iterdir()) == before
