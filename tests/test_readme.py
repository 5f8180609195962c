"""The README works as written: every command of its code blocks, top to bottom, in one fresh
folder, as a user types them (default device count, no x64). The two install commands are
checked against `.ci/run` and run without their `pip install` part (the suite runs inside
that very install)."""

import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.xdist_group("test_readme")  # its module-scoped fixture runs once, on one worker

REPO = pathlib.Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
ENV = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES", "JAX_ENABLE_X64")}


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def _commands() -> list[tuple[str, str]]:
    """(kind, text) of every README command in order: shell lines and python blocks."""
    out = []
    for m in re.finditer(r"```(bash|python)\n(.*?)```", README, re.S):
        if m.group(1) == "python":
            out.append(("python", m.group(2)))
            continue
        for line in m.group(2).splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                out.append(("bash", line))
    return out


COMMANDS = _commands()
INSTALL, TEST = COMMANDS[0][1], COMMANDS[1][1]


def test_the_two_commands_and_ci():
    """The README's first block is the two commands; .ci/run runs exactly the second."""
    assert INSTALL.startswith("pip install . && memgen scan "), INSTALL
    assert TEST == 'pip install -e ".[test]" && python -m pytest', TEST
    ci = [ln for ln in (REPO / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith(("#", "set ", "cd "))]
    assert ci == [TEST]


@pytest.fixture(scope="module")
def cwd(tmp_path_factory):
    d = tmp_path_factory.mktemp("readme")
    (d / "examples").symlink_to(REPO / "examples")
    return d


RUN = [("bash", INSTALL.split("&&", 1)[1].strip())] + COMMANDS[2:]


CONV = "memgen scan --data field --model conv --preset quick --out runs/conv"
UNET = "memgen scan --data field --model unet --preset quick --out runs/unet"


def _run(cwd, kind, text):
    cmd = [sys.executable, "-c", text] if kind == "python" else ["bash", "-c", "set -o pipefail; " + text]
    r = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=280)
    assert r.returncode == 0, f"{text}\n{r.stdout[-1500:]}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, r.stderr[-3000:]


@pytest.mark.parametrize("kind,text", RUN, ids=[f"{i:02d}:{t.splitlines()[0][:50]}" for i, (_, t) in enumerate(RUN)])
def test_readme_command_runs_as_written(cwd, kind, text):
    """Each command exits 0 in the shared folder (later ones may use what earlier ones wrote)."""
    _run(cwd, kind, text)


def _table(text: str) -> dict[str, list[float]]:
    """The conv summary table (``report.denoiser_summary``) -> column name: values per load, and
    ``<name>_sem``: the printed standard error over seeds (0 for the columns printed without one)."""
    rows = [ln.split() for ln in text.splitlines() if re.match(r"\s*[0-9.]+\s+\d+\s+-?[0-9.]+ ± ", ln)]
    cols = {"n": (1, None), "m": (2, 4), "m_heldout": (5, None), "q": (6, 8), "q_linear": (9, None), "Q_jac": (10, 12)}
    out = {}
    for name, (j, e) in cols.items():
        out[name] = [float(r[j]) for r in rows]
        out[name + "_sem"] = [float(r[e]) if e else 0.0 for r in rows]
    return out


@pytest.mark.parametrize("command", [CONV, UNET], ids=["bfcnn", "unet"])
def test_conv_preset_shows_the_transition_the_readme_prints(cwd, command):
    """The behaviour the preset shows (BF-CNN and UNet), on the README command's own store: one
    training image is copied (m at n = 1), two models then disagree (q low) and the Jacobian knows
    little of the latent directions (Q_jac low); by n = 512 m sits at its baseline, q and Q_jac
    rise, and the network denoises as well as the Wiener filter. With the issue's thresholds,
    and the README's table reproduced within its own spread: to 0.03, or 3 printed standard errors
    where they are larger. Another CPU rounds the float32 training differently, and a chaotic
    training then ends elsewhere within the seeds' spread (an AVX-512 machine moved the UNet's q at
    n = 128 by 0.054, sem 0.031); the checks above do not depend on the table."""
    import memgen

    out = cwd / command.split("--out ")[1]
    if not (out / "results.nc").exists():  # run alone (-k): make the store
        _run(cwd, "bash", command)
    ds = memgen.load(out).isel(lam=0).mean("seed").sortby("gamma")
    m, base, q, ql, Qj = (ds[v].values for v in ("m", "m_heldout", "q", "q_linear", "Q_jac"))
    assert list(ds.n.values) == [1, 4, 16, 128, 512]
    assert m[0] >= 0.9 and abs(m[-1] - base[-1]) <= 0.05, (m, base)  # copies at n = 1, not at n = 512
    assert q[-1] - q[0] >= 0.4, q
    assert Qj[-1] >= 0.7 and float(ds.Q_jac_heldout.min()) >= 0.9, (Qj, ds.Q_jac_heldout.values)
    # the linear model of the same images converges too, on its own line (one image each: q ~ 1/sqrt(d))
    assert abs(ql[0]) < 0.3 and ql[-1] > 0.8, ql
    # at n = 512 the network denoises held-out images as well as the optimal (Wiener) filter, to 10%
    ratio = ds.mse.values[-1] / ds.mse_wiener.values[-1]
    assert np.all(ratio < 1.1), ratio
    # negative controls: the same checks reject the perfect-model baselines, which have no trend
    # (fresh images copy nothing; the Wiener filter's Jacobian knows the latent directions at every n)
    assert not base[0] >= 0.9 and not base[-1] < base[0] - 0.3
    assert not ds.Q_jac_heldout.values[-1] > ds.Q_jac_heldout.values[0] + 0.3
    shown = _table(README.split(command, 1)[1].split("```text", 1)[1].split("```", 1)[0])
    assert shown["n"] == [1, 4, 16, 128, 512], shown
    for name, vals in (("m", m), ("m_heldout", base), ("q", q), ("q_linear", ql), ("Q_jac", Qj)):
        tol = np.maximum(0.03, 3 * np.asarray(shown[name + "_sem"]))
        assert np.all(np.abs(vals - np.asarray(shown[name])) <= tol), (name, vals, shown[name], tol)
