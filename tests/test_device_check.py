"""benchmarks/device_check.sh: the one prepared call that makes memgen's record on a lent GPU.

No GPU here: what is checked is that the script works the first time one is lent (a device
call costs minutes of a 15-minute allowance): stages at toy sizes through the shell wrapper,
the record's fields, a stage stopped at its limit, bad options, the parsing of pytest's output.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _module():
    spec = importlib.util.spec_from_file_location("device_check", ROOT / "benchmarks" / "device_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tiny_stages_through_the_wrapper_write_one_record(tmp_path):
    out = tmp_path / "rec.json"
    r = subprocess.run(["bash", "benchmarks/device_check.sh", "--tiny", "--only", "large,tests", "--out", str(out)],
                       check=False, cwd=ROOT, capture_output=True, text=True, timeout=280,
                       env={**os.environ, "PYTHON": sys.executable})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rec = json.loads(out.read_text())
    assert rec["check"] == "device_check" and rec["tiny"] and rec["accelerator"]["backend"] == "cpu"
    assert rec["accelerator"]["device_count"] >= 1 and rec["packages"]["jax"]
    assert set(rec["stages"]) == {"large", "tests"}
    large, tests = rec["stages"]["large"], rec["stages"]["tests"]
    assert large["rc"] == 0 and large["result"]["d"] == 48 and large["result"]["krylov_speedup"] > 0
    assert max(large["result"]["max_abs_err"].values()) <= 1e-3
    assert tests["rc"] == 0 and tests["result"]["passed"] >= 1 and tests["result"]["failed"] == 0
    assert large["seconds"] + tests["seconds"] <= rec["wall_s"] <= rec["budget_s"]
    assert large["limit_s"] < 0.5 * rec["budget_s"]  # its share: the later stage keeps the larger part
    assert not (out.parent / "device-check-parts").exists()  # the stages' parts are in the record
    assert "krylov_speedup=" in r.stdout.splitlines()[-2] and "passed" in r.stdout.splitlines()[-1]


def test_a_stage_past_its_limit_is_recorded_and_stopped(tmp_path):
    dc = _module()
    stage = dict(name="bench", argv=[sys.executable, "-c", "import time; print('begun', flush=True); time.sleep(60)"],
                 share=1.0, json=tmp_path / "none.json")
    entry, log = dc.run_stage(stage, 3.0, dict(os.environ))
    assert entry["timed_out"] and entry["rc"] is None and entry["seconds"] < 30
    assert "begun" in log and "begun" in entry["log_tail"]
    assert "TIMEOUT" in dc.summary(dict(stages={"bench": entry}))[0]
    stage["argv"] = [sys.executable, "-c", "import sys, time; print('memgen bench: linear_d128: 9 points/s', "
                     "file=sys.stderr, flush=True); time.sleep(60)"]
    entry, _ = dc.run_stage(stage, 3.0, dict(os.environ))  # the bench's items printed before its limit are kept
    assert entry["result"] == {"partial": ["linear_d128: 9 points/s"]}
    assert "1 items printed" in dc.summary(dict(stages={"bench": entry}))[0]


@pytest.mark.parametrize("args,words", [(["--budget", "0"], "--budget must be > 0"),
                                        (["--only", "bench,nope"], "unknown stage(s) nope; stages are bench,")])
def test_bad_options_are_one_line_errors(args, words):
    r = subprocess.run([sys.executable, "benchmarks/device_check.py", *args], check=False, cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr
    assert not (ROOT / "benchmarks" / "results" / "device-check-parts").exists()  # refused before any file


def test_pytest_outcomes_are_read_from_its_verbose_output():
    dc = _module()
    xdist = ("[gw0] [ 10%] PASSED tests/test_a.py::test_one \n[gw1] [ 20%] FAILED tests/test_a.py::test_two[x-1] \n"
             "[gw0] [ 30%] SKIPPED tests/test_b.py::test_three \n[gw1] [ 40%] ERROR tests/test_b.py::test_four \n")
    plain = "tests/test_c.py::test_five PASSED                     [ 50%]\ntests/test_c.py::test_six FAILED [ 60%]\n"
    got = dc.tests_result(xdist + plain + "tests/test_c.py::test_seven ")  # cut off mid-line at the limit
    assert (got["passed"], got["failed"], got["error"], got["skipped"]) == (2, 2, 1, 1)
    assert got["failing"] == ["tests/test_a.py::test_two[x-1]", "tests/test_b.py::test_four",
                              "tests/test_c.py::test_six"]
    assert dc.tests_result("collected 0 items")["passed"] == 0
