"""Many hosts on JAX's own runtime: two processes on localhost split one store's chunks.

Two ``memgen scan`` processes (the README's recipe; 1 and 2 local devices) write their own
chunk files into one store, and results.nc equals a one-process scan bit for bit; a resume
with another layout too. While a distributed scan holds its store, an independent scan is
refused in one line, and so is a process without the session's token. Bad options are one
line before any compute.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import reference as ref
import xarray as xr

import memgen
from memgen import store
from memgen.app import cli
from memgen.run.multihost import assign, check

HERE = Path(__file__).parent
# The README's recipe (there with port 12355 and --out runs/two), process 1 started first.
RECIPE = ("memgen scan --d 12 --gamma 1.25,1.5,2 --lam 0,0.1 --seeds 6 --samples 3 --batch 2 --chunk 1 "
          "--out {out} --coordinator 127.0.0.1:{port} --num-processes 2 --process-id {i}")
ENV = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")} | {"JAX_ENABLE_X64": "0"}
TIMEOUT = 150  # seconds a launch may take before it counts as a hang


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict:
    return ENV | {"XLA_FLAGS": ref.xla_flags(devices)}


def _finish(procs) -> list[tuple[int, str, str]]:
    """(returncode, stdout, stderr) of each process; all are killed if one hangs."""
    out = []
    try:
        for p in procs:
            o, e = p.communicate(timeout=TIMEOUT)
            out.append((p.returncode, o, e))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"a process of the distributed scan hung for {TIMEOUT} s: {[p.args for p in procs]}")
    return out


def _recipe(out: Path, devices=(1, 2), resume: bool = False) -> list[tuple[int, str, str]]:
    port = _port()
    procs = []
    for i in (1, 0):
        args = RECIPE.format(out=out, port=port, i=i).split()[1:]
        if resume:  # the same processes finishing the store: the spec comes from it
            args = ["scan", "--resume", str(out), "--chunk", "1", *args[args.index("--coordinator"):]]
        procs.append(subprocess.Popen([sys.executable, "-m", "memgen", *args], env=_env(devices[i]),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return _finish(procs[::-1])  # process 0 first


def _load(path: Path) -> xr.Dataset:
    with xr.open_dataset(path / "results.nc", engine="h5netcdf") as ds:
        return ds.load()


def _assert_bit_identical(a: xr.Dataset, b: xr.Dataset) -> None:
    assert set(a.data_vars) == set(b.data_vars) and set(a.coords) == set(b.coords)
    for v in [*a.data_vars, *a.coords]:
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)
        assert a[v].dtype == b[v].dtype, v


def test_two_processes_split_the_chunks_and_equal_one_process(tmp_path):
    two = tmp_path / "two"
    (r0, o0, e0), (r1, o1, e1) = _recipe(two)
    assert r0 == 0 and r1 == 0, (e0[-3000:], e1[-3000:])
    assert f"wrote {two / 'results.nc'}" in o0 and "Traceback" not in e0 + e1
    assert o1.startswith("process 1 of 2: computed 4 chunks"), o1  # 1 and 2 devices: a third and two thirds
    chunks = sorted(f.name for f in (two / "chunks").glob("*.npz"))
    mine = [c for c in chunks if "-p1-" in c]
    assert len(chunks) == 6 and len(mine) == 4, chunks  # --chunk 1: one file per unit (a seed: its 3 loads), none twice
    assert all(c.startswith(("c000000002", "c000000003", "c000000004", "c000000005")) for c in mine)

    one = tmp_path / "one"  # the same spec, one process, one device
    args = RECIPE.format(out=one, port=0, i=0).split()[1:]
    r = subprocess.run([sys.executable, "-m", "memgen", *args[:args.index("--coordinator")]], env=_env(1),
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    want = _load(one)
    _assert_bit_identical(_load(two), want)

    # interrupted as it were: results.nc and half the chunks (some of each process) lost
    (two / "results.nc").unlink()
    for name in chunks[1::2]:
        (two / "chunks" / name).unlink()
    (r0, o0, e0), (r1, o1, e1) = _recipe(two, devices=(1, 1), resume=True)
    assert r0 == 0 and r1 == 0, (e0[-3000:], e1[-3000:])
    assert o1.startswith("process 1 of 2: computed 2 chunks"), o1  # the missing 3, split 1 + 2 by cost
    _assert_bit_identical(_load(two), want)
    assert not list(two.rglob("*.tmp"))


def test_the_store_admits_the_session_and_nobody_else(tmp_path):
    """While two library processes hold their store (both joined, held at their first chunk), an
    independent scan is refused in one line, from the library and the CLI, in every mode, and so
    is a process with another session token. Killed, they leave a store that opens again."""
    out, gate = tmp_path / "s", tmp_path / "go"
    port = _port()
    procs = [subprocess.Popen([sys.executable, str(HERE / "multihost_worker.py"), f"127.0.0.1:{port}", str(i),
                               str(out), str(gate)], env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in (0, 1)]
    try:
        for p in procs:  # both hold the store and wait at their first chunk
            line = p.stdout.readline().strip()
            assert line == "running", (line, p.poll(), p.stderr.read()[-3000:] if p.poll() is not None else "")
        data, model = memgen.Spiked(d=12, beta=2.0), memgen.Linear(samples=3)
        grid = memgen.Grid(gamma=[1.25, 1.5, 2.0], lam=[0.0, 0.1], seeds=2)
        for mode in ("new", "overwrite", "resume"):
            with pytest.raises(ValueError, match=r"being written by another memgen process \(pid \d+ on .*, "
                                                 r"process 0 of a scan over 2 processes\)"):
                memgen.scan(data, model, grid, out=out, mode=mode, chunk=1, batch=2, progress=False)
        r = subprocess.run([sys.executable, "-m", "memgen", "scan", "--resume", str(out), "--no-progress"],
                           env=_env(1), capture_output=True, text=True, timeout=TIMEOUT)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "being written by another memgen process" in lines[0], \
            r.stderr
        spec = store.read_spec(out)
        with pytest.raises(ValueError, match=r"no longer held by this distributed scan"):
            store.Store.join(out, spec, session="not-the-token", rank=1)
        assert not list((out / "chunks").glob("*.npz"))  # nobody wrote while the gate was shut
    finally:
        for p in procs:  # never computed: what they would write is test_two_processes_...'s business
            p.kill()
        _finish(procs)
    with store.Store(out, spec, mode="resume") as s:  # the lock died with process 0; the new holder's token
        assert json.loads((out / store.LOCK).read_text())["session"] == s.session


@pytest.mark.parametrize("args,env,message", [
    (["--coordinator", "127.0.0.1:12355", "--num-processes", "2", "--process-id", "2"], {},
     "--process-id must be an integer in 0..1, got '2'"),
    (["--coordinator", "127.0.0.1:12355", "--num-processes", "2", "--process-id", "-1"], {},
     "--process-id must be an integer in 0..1, got '-1'"),
    (["--coordinator", "127.0.0.1:12355", "--num-processes", "0", "--process-id", "0"], {},
     "--num-processes must be an integer >= 1, got '0'"),
    (["--coordinator", "127.0.0.1:12355", "--num-processes", "two", "--process-id", "0"], {},
     "--num-processes must be an integer >= 1, got 'two'"),
    (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"], {},
     "--coordinator must be HOST:PORT with a port in 1..65535"),
    (["--coordinator", "127.0.0.1:70000", "--num-processes", "2", "--process-id", "0"], {},
     "--coordinator must be HOST:PORT with a port in 1..65535 (process 0's address, e.g. 10.0.0.1:12355), "
     "got '127.0.0.1:70000'"),
    (["--num-processes", "2"], {}, "needs --coordinator, --num-processes and --process-id together: "
     "--num-processes given, --coordinator (or $MEMGEN_COORDINATOR), --process-id (or $MEMGEN_PROCESS_ID) missing"),
    (["--coordinator", "127.0.0.1:12355", "--num-processes", "2"], {"MEMGEN_PROCESS_ID": "5"},
     "$MEMGEN_PROCESS_ID must be an integer in 0..1, got '5'"),
    (["--num-processes", "2", "--process-id", "0"], {"MEMGEN_COORDINATOR": "h"},
     "$MEMGEN_COORDINATOR must be HOST:PORT"),
    ([], {"MEMGEN_COORDINATOR": "h:1", "MEMGEN_PROCESS_ID": "0"}, "together: $MEMGEN_COORDINATOR, "
     "$MEMGEN_PROCESS_ID given, --num-processes (or $MEMGEN_NUM_PROCESSES) missing"),
])
def test_bad_options_are_one_line_before_any_compute(args, env, message, tmp_path, monkeypatch, capsys):
    for k in ("MEMGEN_COORDINATOR", "MEMGEN_NUM_PROCESSES", "MEMGEN_PROCESS_ID"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert cli.main(["scan", "--d", "12", *args, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("memgen: error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "x").exists()


def test_options_from_the_environment_and_the_command_line():
    env = {"MEMGEN_COORDINATOR": "10.0.0.1:12355", "MEMGEN_NUM_PROCESSES": "4", "MEMGEN_PROCESS_ID": "3"}
    assert check(env=env) == ("10.0.0.1:12355", 4, 3)
    assert check(process_id=1, env=env) == ("10.0.0.1:12355", 4, 1)  # the command line wins
    assert check("[::1]:80", 2, 0, env={}) == ("[::1]:80", 2, 0)
    assert check(env={}) is None


def test_assignment_is_contiguous_and_balanced():
    assert list(assign([1] * 6, [1, 1])) == [0, 0, 0, 1, 1, 1]
    assert list(assign([1] * 6, [1, 2])) == [0, 0, 1, 1, 1, 1]  # by local device count
    assert list(assign([4, 1, 1, 1, 1], [1, 1])) == [0, 1, 1, 1, 1]  # by cost
    owner = assign(np.random.default_rng(0).uniform(1, 2, 1000), [1] * 7)
    assert (np.diff(owner) >= 0).all() and set(owner) == set(range(7))
    assert np.ptp(np.bincount(owner)) <= 20
    assert list(assign([1], [1, 1, 1])) == [1] and len(assign([], [1, 1])) == 0
