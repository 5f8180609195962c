"""memgen's record on an accelerator, in one prepared call: ``benchmarks/device_check.sh``.

Runs, each stage in its own process with its own time limit (so that a hang or a crash costs
that stage, never the record):

- ``bench``: ``memgen bench`` (the versioned suite, d = 128 ... 4096 on the eigh route, its
  eigh floor, the lam axis, the theory and the denoiser items);
- ``large``: ``bench_linear.py --large`` (the Krylov route against the eigh route, d = 4096);
- ``denoisers``: ``bench_denoisers.py --K 32`` (an ensemble of K conv denoisers against K
  trained one by one);
- ``tests``: a smoke run of the test suite (the kernels against their float64 NumPy
  references, the PRNG, the Krylov route, the samplers, the scan against its theory);
- ``quick``: ``bench_linear.py --quick`` (scan against the naive loop and the eigh floor).

and writes one JSON record (``benchmarks/results/<platform>-<device>-device-check.json``, and
``$OUT/device-check.json`` plus every stage's log in ``$OUT/device-check-logs.txt`` when the
device tool's ``OUT`` is set), then prints a short table. The stages' limits add up to
``--budget`` seconds (default 470: the issue's "under 8 minutes on one GPU").

``--tiny`` runs every stage at toy sizes (under a minute on 2 CPU cores): what
tests/test_device_check.py runs, so that the script works the first time a GPU is lent.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSION = 1

#: what memgen, its benchmarks and its tests import (pip names)
PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "xarray", "h5netcdf", "h5py", "matplotlib", "tqdm",
            "threadpoolctl", "scipy", "pytest", "pytest-timeout", "pytest-xdist", "scikit-learn", "scikit-image")

#: the smoke run: kernels against float64 NumPy references, the PRNG, Krylov, samplers, theory
SMOKE = ("tests/test_threefry.py", "tests/test_linear.py", "tests/test_krylov.py", "tests/test_diffusion.py",
         "tests/test_onestep.py", "tests/test_scan_theory.py")


def stages(tiny: bool, work: Path) -> list[dict]:
    """The stages in the order they run: name, argv, share of the budget, where the result lies."""
    py = sys.executable
    if tiny:
        suite = ("from memgen.app.bench.suite import run_suite; "
                 f"run_suite(sizes=(16,), repeat=1, out={str(work / 'bench.json')!r}, lam_axis_d=16, lam_axis_many=2, "
                 "lam_axis_gammas=(0.5,), theory_shape=(4, 4), "
                 "denoiser=dict(K=2, size=4, depth=2, width=4, batch=4, steps=3, n=8))")
        bench = [py, "-c", suite]
        large = [py, "benchmarks/bench_linear.py", "--large", "--d", "48", "--seeds", "1"]
        denoisers = [py, "benchmarks/bench_denoisers.py", "--K", "2", "--size", "4", "--depth", "2", "--width", "4",
                     "--batch", "4", "--steps", "3", "--n", "8", "--repeat", "1"]
        tests = [py, "-m", "pytest", "-p", "no:cacheprovider", "-n", "0", "-v", "--timeout", "120",
                 "tests/test_threefry.py", "-k", "reference_vectors"]
        quick = [py, "benchmarks/bench_linear.py", "--quick", "--d", "24", "--seeds", "1", "--repeat", "1"]
    else:
        bench = [py, "-m", "memgen", "bench", "--repeat", "3", "--cap", "60", "--out", str(work / "bench.json")]
        large = [py, "benchmarks/bench_linear.py", "--large"]
        denoisers = [py, "benchmarks/bench_denoisers.py", "--K", "32"]
        # --dist load: the smoke files need no grouping, and loadgroup is refused under pytest 9.2 (conftest.py)
        tests = [py, "-m", "pytest", "-p", "no:cacheprovider", "-n", "4", "--dist", "load", "-v", "--timeout", "120",
                 *SMOKE]
        quick = [py, "benchmarks/bench_linear.py", "--quick"]
    return [
        dict(name="bench", argv=bench, share=0.32, json=work / "bench.json"),
        dict(name="large", argv=large + ["--json", str(work / "large.json")], share=0.16, json=work / "large.json"),
        dict(name="denoisers", argv=denoisers, share=0.12, json=None),
        dict(name="tests", argv=tests, share=0.28, json=None),
        dict(name="quick", argv=quick + ["--json", str(work / "quick.json")], share=0.12, json=work / "quick.json"),
    ]


def packages() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def accelerator(env: dict) -> dict:
    """What JAX sees (in a child with ``env``, so that this process holds no device memory) and
    nvidia-smi."""
    probe = ("import json; from memgen.run.device import use_every_core; use_every_core(); "
             "import jax; d = jax.devices(); print(json.dumps(dict(backend=jax.default_backend(), "
             "devices=[f'{x.platform}:{x.device_kind}' for x in d], device_count=len(d), jax=jax.__version__)))")
    out: dict = {}
    try:
        r = subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True, text=True, timeout=120,
                           cwd=ROOT, env=env)
        out.update(json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else
                   dict(jax_error=(r.stderr.strip().splitlines() or ["?"])[-1][:300]))
    except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError) as e:
        out["jax_error"] = f"{type(e).__name__}: {e}"
    try:
        q = "name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit"
        r = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"], check=False, capture_output=True,
                           text=True, timeout=30)
        if r.returncode == 0:
            out["nvidia_smi"] = dict(zip(q.split(","), (v.strip() for v in r.stdout.splitlines()[0].split(","))))
    except (OSError, subprocess.TimeoutExpired, IndexError):
        pass
    out["host_cores"] = os.cpu_count()
    return out


def commit() -> str:
    if os.environ.get("MEMGEN_COMMIT"):  # the device machine gets a working tree without .git
        return os.environ["MEMGEN_COMMIT"]
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True, cwd=ROOT, timeout=10)
        return r.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def tests_result(log: str) -> dict:
    """Counts and failing test ids from pytest -v output (also of a run stopped at its limit)."""
    seen = re.findall(r"(?:^|\s)(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\s+(\S+::\S+)|(\S+::\S+)\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)",
                      log, re.MULTILINE)
    outcome: dict[str, str] = {}
    for a, b, c, d in seen:
        outcome[b or c] = a or d
    counts = {k.lower(): sum(v == k for v in outcome.values()) for k in ("PASSED", "FAILED", "ERROR", "SKIPPED")}
    return dict(counts, failing=sorted(t for t, v in outcome.items() if v in ("FAILED", "ERROR")))


def last_json(log: str) -> dict | None:
    for line in reversed(log.splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def run_stage(stage: dict, limit: float, env: dict) -> tuple[dict, str]:
    """One stage in its own process under ``limit`` seconds: its record entry and its log."""
    t0 = time.perf_counter()
    try:
        r = subprocess.run(stage["argv"], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit)
        rc, log, timed_out = r.returncode, r.stdout + r.stderr, False
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b""), (e.stderr or b"")
        log = "".join(x.decode(errors="replace") if isinstance(x, bytes) else x for x in out)
        rc, timed_out = None, True
    entry = dict(argv=[Path(a).name if a == sys.executable else a for a in stage["argv"]], rc=rc,
                 timed_out=timed_out, limit_s=round(limit, 1), seconds=round(time.perf_counter() - t0, 1))
    if stage["json"] is not None and Path(stage["json"]).is_file():
        entry["result"] = json.loads(Path(stage["json"]).read_text())
    elif stage["name"] == "denoisers":
        entry["result"] = last_json(log)
    elif stage["name"] == "tests":
        entry["result"] = tests_result(log)
    elif stage["name"] == "bench":  # stopped before its record: the items it printed
        entry["result"] = dict(partial=re.findall(r"^memgen bench: (.+)$", log, re.MULTILINE))
    if rc != 0:
        entry["log_tail"] = log[-3000:]
    return entry, log


def summary(record: dict) -> list[str]:
    """The table printed last: one line a stage, with its figure of merit."""
    rows = []
    for name, e in record["stages"].items():
        res = e.get("result") or {}
        if e.get("skipped"):
            what = f"skipped: {e['skipped']}"
        elif name == "bench" and "partial" in res:
            what = f"{len(res['partial'])} items printed before the limit (in the record)"
        elif name == "bench" and res:
            fr = {k: v.get("floor_fraction") for k, v in res.get("results", {}).items() if k.startswith("linear_d")}
            what = "floor fraction " + ", ".join(f"{k[8:]}: {v:.2f}" if v is not None else f"{k[8:]}: -"
                                                 for k, v in fr.items())
        elif name == "large" and res:
            what = (f"krylov_speedup={res['krylov_speedup']:.2f} "
                    f"max_abs_err={max(res['max_abs_err'].values()):.1e}")
        elif name == "denoisers" and res:
            what = f"ensemble {res['ensemble_s']:.3g} s, {res['speedup_vs_scan_loop']:.3g}x a scan loop of single models"
        elif name == "tests" and res:
            what = f"{res['passed']} passed, {res['failed']} failed, {res['error']} errors, {res['skipped']} skipped"
        elif name == "quick" and res:
            f32 = res.get("float32", {})
            what = f"floor_ratio={f32.get('floor_ratio', float('nan')):.2f} speedup_vs_naive={f32.get('speedup_vs_naive', float('nan')):.1f}"
        else:
            what = "no result"
        state = "TIMEOUT" if e.get("timed_out") else "ok" if e.get("rc") == 0 else "skip" if e.get("skipped") else f"rc={e.get('rc')}"
        rows.append(f"{name:10s} {state:8s} {e.get('seconds', 0):7.1f} s  {what}")
    return rows


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="every stage at toy sizes (a test of this script)")
    p.add_argument("--budget", type=float, default=470.0, help="seconds for all stages together (default 470)")
    p.add_argument("--out", help="the record's path (default benchmarks/results/<platform>-<device>-device-check.json)")
    p.add_argument("--only", help="comma-separated stages to run (default all): bench,large,denoisers,tests,quick")
    a = p.parse_args(argv)
    if not a.budget > 0:
        p.error(f"--budget must be > 0 seconds, got {a.budget:g}")
    t_start = time.perf_counter()
    out_dir = os.environ.get("OUT")  # the device tool's folder of files that come back
    work = Path(out_dir) if out_dir else Path(a.out).resolve().parent if a.out else ROOT / "benchmarks" / "results"
    work = work / "device-check-parts"
    todo = stages(a.tiny, work)
    names = [s["name"] for s in todo]
    only = names if a.only is None else [v.strip() for v in a.only.split(",") if v.strip()]
    if unknown := sorted(set(only) - set(names)):
        p.error(f"--only: unknown stage(s) {', '.join(unknown)}; stages are {','.join(names)}")
    work.mkdir(parents=True, exist_ok=True)  # after every option error: a refused call leaves nothing
    for f in work.glob("*.json"):  # never a stale result of an earlier call
        f.unlink()
    env = dict(os.environ, PYTHONUNBUFFERED="1", XLA_PYTHON_CLIENT_PREALLOCATE="false")  # test workers share the GPU
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))  # memgen from here
    acc = accelerator(env)
    record = dict(check="device_check", version=VERSION, tiny=a.tiny, budget_s=a.budget, commit=commit(),
                  timestamp=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  accelerator=acc, packages=packages(), python=sys.version.split()[0], stages={})
    print(f"device check: {acc.get('devices', acc.get('jax_error'))}; jax {acc.get('jax')}; "
          f"budget {a.budget:g} s", flush=True)
    logs = []
    chosen = [s for s in todo if s["name"] in only]
    for i, stage in enumerate(chosen):
        left = a.budget - (time.perf_counter() - t_start)
        later = sum(s["share"] for s in chosen[i + 1:])
        limit = left * stage["share"] / (stage["share"] + later)  # what earlier stages left over goes on
        if limit < 5:
            record["stages"][stage["name"]] = dict(skipped=f"{left:.0f} s of the budget left")
            continue
        print(f"device check: {stage['name']} (limit {limit:.0f} s) ...", flush=True)
        entry, log = run_stage(stage, limit, env)
        record["stages"][stage["name"]] = entry
        logs.append(f"===== {stage['name']}: rc={entry['rc']} {entry['seconds']} s\n$ {' '.join(stage['argv'])}\n{log}")
        print(summary(dict(stages={stage["name"]: entry}))[0], flush=True)
    record["wall_s"] = round(time.perf_counter() - t_start, 1)
    platform = (acc.get("devices") or ["unknown:unknown"])[0].split(":", 1)
    path = Path(a.out) if a.out else (ROOT / "benchmarks" / "results" /
                                      f"{slug(platform[0])}-{slug(platform[-1])}-device-check.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=1) + "\n"
    path.write_text(text)
    if out_dir:
        (Path(out_dir) / "device-check.json").write_text(text)
        (Path(out_dir) / "device-check-logs.txt").write_text("\n".join(logs))
    for f in work.glob("*.json"):
        f.unlink()
    work.rmdir()
    print(f"device check: {record['wall_s']} s; record {path}")
    for row in summary(record):
        print(row)
    ok = all(e.get("rc") == 0 for e in record["stages"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
