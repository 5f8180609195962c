"""The README works as written: every command of its code blocks, top to bottom, in one fresh
folder, as a user types them (default device count, no x64). The two install commands are
checked against `.ci/run` and run without their `pip install` part (the suite runs inside
that very install)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

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


@pytest.mark.parametrize("kind,text", RUN, ids=[f"{i:02d}:{t.splitlines()[0][:50]}" for i, (_, t) in enumerate(RUN)])
def test_readme_command_runs_as_written(cwd, kind, text):
    """Each command exits 0 in the shared folder (later ones may use what earlier ones wrote)."""
    if kind == "python":
        cmd = [sys.executable, "-c", text]
    else:
        cmd = ["bash", "-c", "set -o pipefail; " + text]
    r = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=280)
    assert r.returncode == 0, f"{text}\n{r.stdout[-1500:]}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
