"""The CLI in a subprocess (default float32, no x64): main job, theory, clear errors."""

import json
import os
import subprocess
import sys

import pytest
import xarray as xr

ENV = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_ENABLE_X64="0")


def memgen(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "memgen.cli", *args], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=280)


def test_scan_writes_store_and_png(tmp_path):
    out = tmp_path / "run"
    r = memgen("scan", "--d", "24", "--gamma", "0.5:2:3", "--lam", "0,0.1", "--seeds", "2",
               "--samples", "4", "--out", str(out), "--theory", "--no-progress")
    assert r.returncode == 0, r.stderr
    ds = xr.open_dataset(out / "results.nc", engine="h5netcdf")
    assert ds.q.dtype.name in ("float32", "float64") and ds.attrs["dtype"] == "float32"
    assert dict(ds.sizes) == {"gamma": 3, "lam": 2, "seed": 2}
    assert list(ds.gamma.values) == [0.5, 1.0, 2.0]
    assert "q_theory" in ds and "Q_theory" in ds
    assert (out / "phase_q.png").stat().st_size > 1000
    ds.close()
    # the same command again is refused, with --overwrite it runs
    r = memgen("scan", "--d", "24", "--gamma", "0.5:2:3", "--out", str(out))
    assert r.returncode == 2 and "exists and is not empty" in r.stderr and "Traceback" not in r.stderr


def test_config_file(tmp_path):
    cfg = tmp_path / "scan.toml"
    cfg.write_text('d = 16\ngamma = [0.5, 2.0]\nlam = "0"\nseeds = 1\nsamples = 2\nprogress = false\n')
    r = memgen("scan", "--config", str(cfg), "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    ds = xr.open_dataset(tmp_path / "o" / "results.nc", engine="h5netcdf")
    assert dict(ds.sizes) == {"gamma": 2, "lam": 1, "seed": 1}
    ds.close()


@pytest.mark.parametrize("args,message", [
    (["--d", "1"], "Spiked.d must be an integer >= 2, got 1"),
    (["--gamma", "0:1:3"], "--gamma: expected a:b:n with 0 < a < b and integer n >= 2"),
    (["--gamma", "1:0.5:3"], "--gamma: expected a:b:n"),
    (["--gamma", "abc"], "--gamma: expected a comma-separated list of numbers"),
    (["--gamma", "0.0001"], "Grid.gamma must be >= 0.0025"),
    (["--lam", "-1"], "Grid.lam must be >= 0, got -1.0"),
    (["--beta", "-2"], "Spiked.beta must be > 0, got -2.0"),
    (["--seeds", "0"], "Grid.seeds must be an integer >= 1, got 0"),
    (["--memory", "xyz"], "memory must be a positive size"),
    (["--config", "/nonexistent.toml"], "--config: no such file"),
    ([], "--out is required"),
])
def test_bad_input_one_clear_message(args, message):
    r = memgen("scan", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_theory_formats():
    r = memgen("theory", "--data", "spiked", "--beta", "2", "--gamma", "0.1:8:5", "--lam", "0,0.1", "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == 10 and {"gamma", "lam", "q", "Q", "w2", "top_eig"} <= set(rows[0])
    r = memgen("theory", "--gamma", "1", "--lam", "0", "--format", "csv")
    assert r.returncode == 0 and "0.720" in r.stdout  # q(1, 0) = 64 / (9 pi^2)


def test_info():
    r = memgen("info")
    assert r.returncode == 0 and '"backend": "cpu"' in r.stdout


def test_one_cpu_device_per_core_unless_the_user_chose():
    env = {k: v for k, v in ENV.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    r = subprocess.run([sys.executable, "-m", "memgen.cli", "info"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["devices"]) == len(os.sched_getaffinity(0))
    r = memgen("info")  # ENV forces one host device: respected
    assert len(json.loads(r.stdout)["devices"]) == 1


def test_resume_takes_the_spec_from_the_store(tmp_path):
    out = tmp_path / "r"
    r = memgen("scan", "--d", "16", "--gamma", "0.5,2", "--lam", "0", "--seeds", "2", "--samples", "2",
               "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    first = xr.open_dataset(out / "results.nc", engine="h5netcdf").load()
    for f in (out / "chunks").glob("*.npz"):  # as if interrupted: drop one chunk and the result
        f.unlink()
        break
    (out / "results.nc").unlink()
    r = memgen("scan", "--resume", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    again = xr.open_dataset(out / "results.nc", engine="h5netcdf").load()
    assert (first.q.values == again.q.values).all()
    r = memgen("scan", "--resume", str(out), "--d", "20")
    assert r.returncode == 2 and "--resume takes the spec from the store; drop --d" in r.stderr


@pytest.mark.parametrize("args,message", [
    (["--data", "powerlaw", "--beta", "1,2"], "--beta do(es) not apply to --data powerlaw (power-law spikes: --spikes)"),
    (["--data", "spiked", "--alpha", "1,2"], "--alpha do(es) not apply to --data spiked"),
    (["--data", "field", "--model", "conv", "--d", "64"], "--d do(es) not apply to --data field"),
    (["--spikes", "4,2", "--rank", "2"], "--spikes sets every spike strength"),
    (["--memory", "0.5"], "memory must be a positive size"),
])
def test_options_that_do_not_apply_are_refused(args, message, tmp_path):
    r = memgen("scan", *args, "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and message in r.stderr, r.stderr
