"""``memgen bench``: the record's shape, the table, compare, and the CLI's argument handling.

These check the plumbing at tiny sizes, passed in explicitly (one compiled bucket per size,
shrunken lam-axis, theory and denoiser items); they time nothing that matters. Real numbers
come from ``memgen bench``.
"""

import ast
import copy
import json
import statistics
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from memgen.app import bench

pytestmark = pytest.mark.xdist_group("test_bench")  # its module-scoped fixture runs once, on one worker

# Test-only sizes: one gamma (one padding bucket) per linear size, d = 16 for the lam axis.
TINY = dict(gammas=(2.0,), lam_axis_d=16, lam_axis_many=4, lam_axis_gammas=(2.0,), theory_shape=(8, 8),
            denoiser=dict(K=2, size=4, depth=2, width=2, batch=2, steps=3, n=4))


@pytest.fixture(scope="module")
def timed_record(tmp_path_factory):
    """The record and the wall time of the whole suite, measured here (not by the suite)."""
    out = tmp_path_factory.mktemp("bench") / "rec.json"
    t0 = time.perf_counter()
    rec = bench.run_suite(sizes=(16, 32), repeat=2, out=out, progress=False, **TINY)
    wall = time.perf_counter() - t0
    assert json.loads(out.read_text()) == json.loads(json.dumps(rec))
    return rec, wall


@pytest.fixture(scope="module")
def record(timed_record):
    return timed_record[0]


def test_record_has_all_keys(record):
    assert record["suite_version"] == bench.SUITE_VERSION
    assert record["timestamp"]
    env = record["env"]
    for key in ("platform", "device_kind", "device_count", "device", "jax", "jaxlib", "numpy", "memgen",
                "dtype", "matmul_precision", "host_cores"):
        assert env[key] is not None, key
    res = record["results"]
    assert set(res) == {"linear_d16", "linear_d32", "lam_axis_d16", "theory", "denoisers"}
    for d in (16, 32):
        r = res[f"linear_d{d}"]
        assert r["d"] == d and r["points"] == len(r["gamma"]) * len(r["lam"]) * r["seeds"]
        assert r["floor_s"] > 0 and r["floor_fraction"] > 0
        # gamma = 2: the d x d covariance of both models of every seed
        assert r["floor_matrices"] == {str(d): 2 * r["seeds"]}
    lam = res["lam_axis_d16"]
    assert lam["lams"] == [1, 4] and lam["time_ratio"] > 0 and lam["throughput"] > 0
    assert res["theory"]["points"] == 64
    assert res["denoisers"]["K"] == 2
    s = record["settings"]
    assert s["gammas"] == [2.0] and s["lam_axis"] == {"d": 16, "many": 4, "gammas": [2.0]}
    assert s["theory_shape"] == [8, 8] and s["denoiser"] == TINY["denoiser"]


def test_floor_uses_the_scans_devices_and_one_blas_thread(record):
    """The floor runs on every device the scan shards over (8 covariances over the suite's 4
    CPU devices), with memgen's one BLAS thread per LAPACK call on a CPU; the record says so."""
    for d in (16, 32):
        r = record["results"][f"linear_d{d}"]
        assert r["scan_devices"] == record["env"]["device_count"] == jax.device_count()
        assert r["floor_devices"] == min(jax.device_count(), 2 * r["seeds"])
        if jax.default_backend() == "cpu":
            assert r["floor_threads"] == 1


def test_bench_is_self_contained():
    """memgen bench imports nothing from the source checkout (benchmarks/, tests/): only the
    package, the standard library, NumPy, JAX and threadpoolctl; and never edits sys.path."""
    allowed = {"memgen", "numpy", "jax", "threadpoolctl", "argparse", "datetime", "json", "math", "os",
               "statistics", "sys", "time", "timeit", "pathlib", "concurrent", "importlib", "__future__"}
    for path in Path(bench.__file__).parent.glob("*.py"):
        src = path.read_text()
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or "memgen"] if node.level == 0 else ["memgen"]
            else:
                continue
            assert all(n.split(".")[0] in allowed | {"scipy"} for n in names), (path.name, node.lineno, names)
        assert "sys.path" not in src and "spec_from_file_location" not in src, path.name
    assert not any(hasattr(bench, k) for k in ("TINY_GAMMAS", "TINY_DENOISER", "_bench_linear"))


def test_floor_matrices_are_the_grids_own():
    """Covariances from gamma >= 1, Gram matrices below, from the scan's own training sets."""
    import memgen

    data, grid = memgen.Spiked(d=16, beta=2.0), memgen.Grid(gamma=[0.5, 2.0], lam=[0.0], seeds=2)
    sets = list(bench.training_sets(data, grid))
    assert len(sets) == 2 and all(X.shape == (32, 16) and X.dtype == np.float32 for pair in sets for X in pair)
    assert not np.array_equal(sets[0][0], sets[0][1]) and not np.array_equal(sets[0][0], sets[1][0])
    mats = bench.floor_matrices(16, grid.gamma, sets)
    assert {m: a.shape for m, a in mats.items()} == {8: (4, 8, 8), 16: (4, 16, 16)}
    Xa = sets[0][0].astype(np.float64)
    np.testing.assert_allclose(mats[16][0], Xa.T @ Xa / 32, rtol=1e-5)
    np.testing.assert_allclose(mats[8][0], Xa[:8] @ Xa[:8].T / 8, rtol=1e-5)
    f = bench.eigh_floor(mats, repeat=1)
    assert f["floor_s"] > 0 and f["floor_devices"] == min(jax.device_count(), 8)


def test_floor_failure_is_recorded_not_silent(monkeypatch, record):
    """A floor that cannot be measured leaves floor_s None *with* the reason, in the record and
    the table, and no floor_fraction."""
    import memgen

    def boom(mats, repeat):
        raise MemoryError("device out of memory")

    monkeypatch.setattr(bench.suite, "eigh_floor", boom)
    data, _, grid = bench.linear_grid(16, gammas=(2.0,))
    out = bench.floor_item(data, grid, 1)
    assert out["floor_s"] is None and out["floor_error"] == "MemoryError: device out of memory"
    rec = copy.deepcopy(record)
    r = rec["results"]["linear_d16"]
    r.update(out)
    del r["floor_fraction"]
    assert "no floor: MemoryError" in bench.format_table(rec)
    monkeypatch.setattr(memgen, "scan", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):  # anything else is not swallowed
        bench.linear_item(16, 1, gammas=(2.0,))


def test_memory_refusal_skips_the_size(monkeypatch):
    import memgen

    def refuse(*a, **k):
        raise ValueError("memory=0.001 GiB is too small: one grid point at d=16 ...")

    monkeypatch.setattr(memgen, "scan", refuse)
    r = bench.linear_item(16, 1, gammas=(2.0,))
    assert r == {"d": 16, "skipped": "memory: memory=0.001 GiB is too small: one grid point at d=16 ..."}


def test_timings_match_the_raw_repeats_and_the_wall_clock(timed_record):
    """The summary fields come from the steady-state repeats, not the first (compiling) call,
    and everything the suite says it timed fits in the wall time measured around it."""
    record, wall = timed_record
    timed = 0.0
    for name in ("linear_d16", "linear_d32", "theory", "denoisers"):
        r = record["results"][name]
        runs = r["runs_s"]
        assert len(runs) == 2 and all(t > 0 for t in runs), name
        assert r["run_median_s"] == pytest.approx(statistics.median(runs)), name
        assert r["run_min_s"] == min(runs), name
        work = r["K"] * r["steps"] if name == "denoisers" else r["points"]
        assert work / max(runs) <= r["throughput"] <= work / min(runs), name  # work per steady second
        assert r["first_s"] >= r["compile_s"] >= 0, name
        timed += r["first_s"] + sum(runs) + (r.get("floor_s") or 0.0)
    assert 0 < timed < wall


def test_format_table_one_line_per_item(record):
    lines = bench.format_table(record).splitlines()
    assert record["env"]["device"] in lines[0]
    assert len(lines) == 2 + len(record["results"])
    for name, line in zip(record["results"], lines[2:]):
        assert line.startswith(name)


def test_skipped_size_is_reported(record):
    rec = copy.deepcopy(record)
    rec["results"]["linear_d4096"] = {"d": 4096, "skipped": "time: estimated 900 s > cap 600 s"}
    assert "linear_d4096     skipped: time" in bench.format_table(rec)


def test_time_cap_skips_larger_sizes():
    rec = bench.run_suite(sizes=(16, 4096), repeat=1, cap_s=1e-6, progress=False, **TINY)
    assert "skipped" not in rec["results"]["linear_d16"]
    assert rec["results"]["linear_d4096"]["skipped"].startswith("time: estimated")


def test_compare_prints_ratios(record):
    b = copy.deepcopy(record)
    b["env"]["device"] = "gpu:Fancy x1"
    for r in b["results"].values():
        r["throughput"] *= 2
    text = bench.compare(record, b)
    assert record["env"]["device"] in text and "gpu:Fancy x1" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines()[3:]}
    assert set(rows) == set(record["results"])
    for name, cols in rows.items():
        assert float(cols[4]) == pytest.approx(2.0), name


def test_compare_warns_on_other_suite_version(record):
    b = copy.deepcopy(record)
    b["suite_version"] += 1
    assert "suite versions differ" in bench.compare(record, b)


@pytest.mark.parametrize("argv, msg", [
    (["--sizes", "abc"], "--sizes"),
    (["--sizes", "4"], "integers >= 8"),
    (["--repeat", "0"], "--repeat"),
    (["--bogus"], "unrecognized arguments"),
    (["--compare", "only_one.json"], "--compare"),
])
def test_main_bad_args_exit_2(capsys, argv, msg):
    assert bench.main(argv) == 2
    assert msg in capsys.readouterr().err


def test_main_compare_missing_or_bad_file(tmp_path, capsys, record):
    good = tmp_path / "a.json"
    bench.write(record, good)
    assert bench.main(["--compare", str(good), str(tmp_path / "nope.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"x": 1}')
    assert bench.main(["--compare", str(good), str(bad)]) == 2
    assert "not a memgen bench record" in capsys.readouterr().err
    assert bench.main(["--compare", str(good), str(good)]) == 0
    assert "b/a" in capsys.readouterr().out


def test_main_out_writes_json(tmp_path, capsys, monkeypatch, record):
    seen = {}

    def fake_suite(sizes, quick, repeat, out, cap_s):  # the real suite runs in the fixture
        seen.update(sizes=sizes, quick=quick, repeat=repeat)
        bench.write(record, out)
        return record

    monkeypatch.setattr(bench.command, "run_suite", fake_suite)
    out = tmp_path / "sub" / "r.json"
    assert bench.main(["--quick", "--sizes", "16,32", "--repeat", "2", "--out", str(out)]) == 0
    assert seen == {"sizes": (16, 32), "quick": True, "repeat": 2}
    assert bench.load(out)["suite_version"] == bench.SUITE_VERSION
    text = capsys.readouterr().out
    assert "linear_d16" in text and f"wrote {out}" in text
    assert bench.main(["--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
