"""The CLI in a subprocess (default float32, no x64): main job, theory, clear errors."""

import json
import os
import subprocess
import sys

import pytest
import xarray as xr

import reference as ref

from memgen.app.options import APPLIES, build_specs, from_args, parse_range
from memgen.app.parser import build_parser

ENV = dict(os.environ, XLA_FLAGS=ref.xla_flags(1), JAX_ENABLE_X64="0")


def memgen(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "memgen", *args], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=280)


def assert_one_line_error(r, message):
    """Exit status 2 and exactly one line ``memgen: error: ...`` containing ``message``."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("memgen: error: "), r.stderr
    assert message in lines[0], r.stderr


def in_process(capsys, *args) -> subprocess.CompletedProcess:
    """``memgen ARGS`` through ``cli.main`` in this process, for options refused before any compute
    (no process start: 2 s each). ``test_errors_in_a_real_process`` runs such errors as a
    subprocess, the way a user meets them."""
    from memgen.app import cli

    try:
        rc = cli.main(list(args))
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, out.out, out.err)


def test_scan_writes_store_and_png(tmp_path):
    """The main job's path: a store with the theory (on by default where it exists; the config
    test turns it off), the figures, the summary."""
    out = tmp_path / "run"
    r = memgen("scan", "--d", "24", "--gamma", "0.5:2:3", "--lam", "0,0.1", "--seeds", "2",
               "--samples", "4", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "q = 1/2 at gamma" in r.stdout and "BBP threshold" in r.stdout  # the summary
    ds = xr.open_dataset(out / "results.nc", engine="h5netcdf")
    assert ds.q.dtype.name == "float32" and ds.attrs["dtype"] == "float32"
    assert dict(ds.sizes) == {"gamma": 3, "lam": 2, "seed": 2}
    assert list(ds.gamma.values) == [0.5, 1.0, 2.0]
    assert "q_theory" in ds and "Q_theory" in ds
    assert (out / "phase_q.png").stat().st_size > 1000
    for name in ("results.nc", "study.png", "study.pdf", "phase_q.png", "phase_q.pdf"):  # the final line names them
        assert (out / name).is_file() and str(out / name) in r.stdout.splitlines()[-1], r.stdout
    ds.close()
    # the same command again is refused, with --overwrite it runs
    r = memgen("scan", "--d", "24", "--gamma", "0.5:2:3", "--out", str(out))
    assert r.returncode == 2 and "exists and is not empty" in r.stderr and "Traceback" not in r.stderr


def test_config_file(tmp_path):
    cfg = tmp_path / "scan.toml"
    cfg.write_text('d = 16\ngamma = [0.5, 2.0]\nlam = "0"\nseeds = 1\nsamples = 2\nno-progress = true\n'
                   'x64 = true\noverwrite = true\ntheory = false\n')
    for _ in range(2):  # the second run replaces the first's store: overwrite = true
        r = memgen("scan", "--config", str(cfg), "--out", str(tmp_path / "o"))
        assert r.returncode == 0, r.stderr
    assert "%" not in r.stderr  # no_progress: no progress bar
    ds = xr.open_dataset(tmp_path / "o" / "results.nc", engine="h5netcdf")
    assert dict(ds.sizes) == {"gamma": 2, "lam": 1, "seed": 1}
    assert ds.q.dtype.name == "float64" and ds.attrs["dtype"] == "float64"  # x64 = true
    assert "q_theory" not in ds  # theory = false (spiked data: on by default)
    ds.close()


@pytest.mark.parametrize("toml,message", [
    ("resume = true\n", "--config: resume must be a store directory, as in --resume DIR, got True"),
    ("no_progress = 1\n", "--config: no_progress must be true or false, got 1"),
    ("colour = 1\n", "--config: unknown keys ['colour']"),
    ('resume = "/nonexistent/store"\n', "--resume: '/nonexistent/store' is not a memgen store"),
    ('resume = "/nonexistent/store"\nd = 20\n', "--resume takes the spec from the store; drop --d"),
])
def test_config_file_errors(tmp_path, capsys, toml, message):
    (tmp_path / "c.toml").write_text(toml)
    assert_one_line_error(in_process(capsys, "scan", "--config", str(tmp_path / "c.toml")), message)


@pytest.mark.parametrize("args,message", [
    (["--d", "1"], "Spiked.d must be an integer >= 2, got 1"),
    (["--gamma", "0:1:3"], "--gamma: expected a:b:n with finite 0 < a < b and integer n >= 2"),
    (["--gamma", "1:inf:3"], "--gamma: expected a:b:n with finite 0 < a < b"),
    (["--gamma", "inf"], "Grid.gamma must be finite and > 0, got inf"),
    (["--lam", "nan"], "Grid.lam must be finite and >= 0, got nan"),
    (["--lam", "0,1e30"], "Grid.lam must be <= 1e6 (float32 keeps about 7 digits"),
    (["--beta", "inf"], "Spiked.beta must be finite and > 0, got inf"),
    (["--data", "powerlaw", "--alpha", "inf"], "PowerLaw.alpha must be finite and >= 0, got inf"),
    (["--data", "bogus"], "argument --data: invalid choice: 'bogus'"),
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
def test_bad_input_one_clear_message(capsys, args, message):
    assert_one_line_error(in_process(capsys, "scan", *args), message)


@pytest.mark.parametrize("args,message", [
    (["scan", "--seeds", "0", "--out", "x"], "Grid.seeds must be an integer >= 1, got 0"),
    (["scan", "--data", "bogus"], "argument --data: invalid choice: 'bogus'"),
    (["theory", "--gamma", "1", "--lam", "0", "--x64"], "unrecognized arguments: --x64"),
])
def test_errors_in_a_real_process(args, message):
    """The refusals above, as a user meets them: a ``memgen`` process that exits 2 with one line
    and no traceback."""
    assert_one_line_error(memgen(*args), message)


def test_theory_formats():
    r = memgen("theory", "--data", "spiked", "--beta", "2", "--gamma", "0.1:8:5", "--lam", "0,0.1", "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == 10 and {"gamma", "lam", "q", "Q", "w2", "top_eig"} <= set(rows[0])
    r = memgen("theory", "--gamma", "1", "--lam", "0", "--format", "csv")
    assert r.returncode == 0 and "0.720" in r.stdout  # q(1, 0) = 64 / (9 pi^2)


@pytest.mark.parametrize("args,message", [
    (["--data", "field"], "argument --data: invalid choice: 'field'"),
    (["--model", "conv"], "argument --model: invalid choice: 'conv'"),
    (["--steps", "3"], "--steps applies only to --model diffusion"),
    (["--model", "diffusion", "--data", "isotropic"], "no asymptotic theory for Isotropic data"),
    (["--model", "onestep"], "--model onestep needs --data isotropic, got --data spiked"),
    (["--model", "diffusion", "--sampler", "ddpm", "--schedule", "vp", "--sigma-max", "10"], "LinearDiffusion.sigma_max"),
    (["--model", "diffusion", "--sampler", "ode", "--schedule", "vp"], "LinearDiffusion.schedule must be 've'"),
    (["--preset", "quick"], "unrecognized arguments: --preset quick"),
    (["--size", "8x8"], "unrecognized arguments: --size 8x8"),
    (["--source", "disks"], "unrecognized arguments: --source disks"),
    (["--x64"], "unrecognized arguments: --x64"),
])
def test_theory_takes_only_theory_options(capsys, args, message):
    assert_one_line_error(in_process(capsys, "theory", "--gamma", "1", "--lam", "0", *args), message)


def _subparser(name):
    return build_parser()._subparsers._group_actions[0].choices[name]


def test_theory_parser_has_only_theory_options():
    theory = _subparser("theory")
    assert {o for a in theory._actions for o in a.option_strings} == {
        "-h", "--help", "--data", "--d", "--beta", "--rank", "--spikes", "--alpha", "--k", "--gamma", "--lam", "--format",
        "--model", "--sampler", "--schedule", "--steps", "--sigma-max", "--sigma-min", "--flow-time", "--parameterisation",
        "--centre", "--mean", "--std", "--horizon"}
    assert theory._option_string_actions["--model"].choices == ["linear", "diffusion", "onestep"]
    assert theory._option_string_actions["--data"].choices == ["spiked", "powerlaw", "isotropic"]
    assert "float64" in theory.description and "no --x64" in theory.description


def test_theory_of_every_gaussian_model(capsys):
    """memgen theory prints Halder's limits (no lam column), DDPM's MP theory and a sampler on a
    power law (the anisotropic equivalent: q and KL, no m or w2)."""
    from memgen.app import cli

    assert cli.main(["theory", "--data", "isotropic", "--d", "100", "--mean", "10", "--model", "onestep",
                     "--gamma", "0.25,10", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["n"] for r in rows] == [25, 1000] and "lam" not in rows[0]
    assert rows[0]["h2"] == 1.0 and abs(rows[1]["h2"] - 0.94321) < 1e-5  # lineardiff.md's public value
    assert cli.main(["theory", "--model", "diffusion", "--sampler", "ddpm", "--schedule", "vp", "--gamma", "2",
                     "--lam", "0", "--format", "json"]) == 0
    ddpm = json.loads(capsys.readouterr().out)[0]
    assert cli.main(["theory", "--model", "diffusion", "--schedule", "vp", "--gamma", "2", "--lam", "0",
                     "--format", "json"]) == 0
    ddim = json.loads(capsys.readouterr().out)[0]
    assert ddpm["q"] < ddim["q"] - 0.02  # fresh noise each step: the pair agrees less
    assert cli.main(["theory", "--data", "powerlaw", "--d", "60", "--model", "diffusion", "--steps", "5",
                     "--gamma", "2", "--lam", "0", "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert 0 < row["q"] < 1 and row["kl"] > 0 and "m" not in row and "w2" not in row


def test_broken_pipe_is_quiet():
    """`memgen theory ... | head -1`: the reader is gone before the output; no traceback."""
    rd, wr = os.pipe()
    os.close(rd)  # every write gets EPIPE, deterministically
    try:
        r = subprocess.run([sys.executable, "-m", "memgen", "theory", "--gamma", "0.5:2:20", "--lam", "0,0.1",
                            "--format", "csv"], stdout=wr, stderr=subprocess.PIPE, text=True, env=ENV, timeout=280)
    finally:
        os.close(wr)
    assert r.returncode in (0, 141) and r.stderr == "", r.stderr


def test_figures_help_says_where_the_output_goes():
    r = memgen("figures", "--help")
    text = " ".join(r.stdout.split())
    assert r.returncode == 0 and "default: ./memgen-figures" in text and "only rewritten when you pass --out figures" in text
    assert build_parser().parse_args(["figures"]).out == "memgen-figures"


def test_scan_help_documents_every_option():
    for action in _subparser("scan")._actions:
        if action.dest in ("help", "resume", "out"):
            continue
        assert action.help and "default" in action.help, action.option_strings
    r = memgen("scan", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "(required)" not in text and "not needed with --resume DIR" in text
    assert "(default: 1)" in text and "(default: random)" in text and "(default: a few micro-batches per device)" in text
    for data, opts in APPLIES.items():  # the epilog, generated from the table, verbatim
        assert f"  {data:<9} " + " ".join(f"--{o}" for o in sorted(opts)) in r.stdout
    for var in ("m", "q", "Q", "w2", "m_kad", "mem_frac", "top_eig"):
        assert f"\n  {var} " in r.stdout
    assert "weight decay of AdamW" in text and "example:" in text


def test_explicit_options_are_kept_for_conv_models():
    """Only options the user left out get the denoisers' defaults, even when equal to the linear default."""
    opts = from_args(build_parser().parse_args(["scan", "--data", "field", "--model", "conv", "--gamma", "0.1:8:24",
                                          "--lam", "0,0.01,0.1,1", "--seeds", "4"]))
    _, _, grid = build_specs(opts)
    assert grid.gamma == tuple(parse_range("gamma", "0.1:8:24")) and grid.lam == (0, 0.01, 0.1, 1) and grid.seeds == 4
    _, _, grid = build_specs(from_args(build_parser().parse_args(["scan", "--data", "field", "--model", "conv"])))
    assert grid.gamma == (0.02, 0.25, 1, 4) and grid.lam == (0, 0.001) and grid.seeds == 2


def test_preset_fills_only_what_the_user_left_out():
    from memgen.engines.denoisers import ConvDenoiser

    def specs(*extra):
        return build_specs(from_args(build_parser().parse_args(["scan", "--data", "field", "--model", "conv",
                                                                  "--preset", "quick", *extra])))
    data, model, grid = specs()
    assert (data.size, data.alpha, model) == ((8, 8), 2.0, ConvDenoiser.quick())
    assert [round(g * data.d) for g in grid.gamma] == [1, 4, 16, 128, 512] and grid.lam == (0,) and grid.seeds == 2
    data, _, grid = specs("--size", "4x4", "--alpha", "1.5", "--gamma", "0.5,1", "--lam", "0,0.1", "--seeds", "3")
    assert (data.size, data.alpha, grid.gamma, grid.lam, grid.seeds) == ((4, 4), 1.5, (0.5, 1), (0, 0.1), 3)
    data, _, _ = build_specs(from_args(build_parser().parse_args(  # no preset: the conv defaults, as before
        ["scan", "--data", "field", "--model", "conv"])))
    assert (data.size, data.alpha) == ((16, 16), 1.0)
    assert specs("--spikes", "4,1")[0].beta == (4.0, 1.0) and data.beta == ()  # planted spikes, scored by Q
    # --model unet: the same preset with a UNet; --width and --depth reach either network
    unet = build_specs(from_args(build_parser().parse_args(["scan", "--data", "field", "--model", "unet",
                                                            "--preset", "quick"])))[1]
    assert unet == ConvDenoiser.quick("unet") and (unet.network, unet.depth, unet.width) == ("unet", 2, 8)
    assert unet.steps == ConvDenoiser.quick().steps
    small = build_specs(from_args(build_parser().parse_args(["scan", "--data", "field", "--model", "unet",
                                                             "--width", "4", "--depth", "2"])))[1]
    assert (small.network, small.depth, small.width) == ("unet", 2, 4) and small.steps == ConvDenoiser().steps
    assert specs("--width", "6")[1] == ConvDenoiser.quick(width=6)
    # --preset full: 16x16, n = 1 ... 1024, a UNet that sees the whole image (README: its run)
    data, full, grid = build_specs(from_args(build_parser().parse_args(["scan", "--data", "field", "--model", "unet",
                                                                        "--preset", "full"])))
    assert (data.size, data.alpha, full) == ((16, 16), 2.0, ConvDenoiser.full())
    assert [round(g * data.d) for g in grid.gamma] == [1, 4, 16, 128, 1024] and grid.lam == (0,)
    assert (full.network, full.depth, full.width, full.steps) == ("unet", 3, 16, ConvDenoiser.quick().steps)


@pytest.mark.parametrize("out", ["file", "/proc/memgen-x"])
def test_out_that_cannot_be_a_store(tmp_path, out):
    if out == "file":
        out = tmp_path / "somefile"
        out.write_text("not a store")
    r = memgen("scan", "--d", "20", "--gamma", "1", "--lam", "0", "--seeds", "1", "--out", str(out))
    assert_one_line_error(r, str(out))


def test_info():
    r = memgen("info")
    assert r.returncode == 0 and '"backend": "cpu"' in r.stdout


def test_one_cpu_device_per_core_unless_the_user_chose():
    env = {k: v for k, v in ENV.items() if k != "JAX_NUM_CPU_DEVICES"} | {"XLA_FLAGS": ref.xla_flags()}
    r = subprocess.run([sys.executable, "-m", "memgen", "info"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["devices"]) == len(os.sched_getaffinity(0))
    r = memgen("info")  # ENV forces one host device: respected
    assert len(json.loads(r.stdout)["devices"]) == 1


def test_resume_takes_the_spec_from_the_store(tmp_path, capsys):
    out = tmp_path / "r"
    r = memgen("scan", "--d", "16", "--gamma", "0.5,2", "--lam", "0", "--seeds", "2", "--samples", "2",
               "--out", str(out), "--no-progress", "--theory")
    assert r.returncode == 0, r.stderr
    first = xr.open_dataset(out / "results.nc", engine="h5netcdf").load()
    for f in (out / "chunks").glob("*.npz"):  # as if interrupted: drop one chunk and the result
        f.unlink()
        break
    (out / "results.nc").unlink()
    (tmp_path / "c.toml").write_text(f'resume = "{out}"\nno_progress = true\n')  # = --resume DIR --no-progress
    r = memgen("scan", "--config", str(tmp_path / "c.toml"))
    assert r.returncode == 0, r.stderr
    again = xr.open_dataset(out / "results.nc", engine="h5netcdf").load()
    assert (first.q.values == again.q.values).all()
    assert "q_theory" in again and (first.q_theory.values == again.q_theory.values).all()  # the store's theory flag
    for args in (["--d", "20"], ["--theory"]):
        r = in_process(capsys, "scan", "--resume", str(out), *args)
        assert_one_line_error(r, f"--resume takes the spec from the store; drop {args[0]}")


def test_os_errors_are_one_line(monkeypatch, capsys):
    """Whatever the store does not turn into a ValueError: PermissionError, NotADirectoryError, ..."""
    from memgen.app import cli

    def fail(args):
        raise PermissionError(13, "Permission denied", "/ro/run")

    monkeypatch.setattr(cli, "_cmd_info", fail)
    assert cli.main(["info"]) == 2
    assert capsys.readouterr().err == "memgen: error: /ro/run: Permission denied\n"


@pytest.mark.parametrize("text,message", [
    ("{not json", "invalid JSON at line 1, column 2"),
    ("[1, 2]", "not a JSON object"),
    ('{"model": {"kind": "Linear"}, "grid": {"kind": "Grid"}}', "missing key 'data'"),
    ('{"data": {"kind": "Nope"}, "model": {"kind": "Linear"}, "grid": {"kind": "Grid"}}', "unknown spec kind 'Nope'"),
    ('{"data": {"kind": "Spiked", "colour": 1}, "model": {"kind": "Linear"}, "grid": {"kind": "Grid"}}',
     "Spiked: unknown fields ['colour']"),
    ('{"data": {"kind": "Spiked", "d": 1}, "model": {"kind": "Linear"}, "grid": {"kind": "Grid"}}',
     "Spiked.d must be an integer >= 2, got 1"),
])
def test_resume_names_what_is_wrong_with_spec_json(tmp_path, capsys, text, message):
    (tmp_path / "spec.json").write_text(text)
    assert_one_line_error(in_process(capsys, "scan", "--resume", str(tmp_path)),
                          f"--resume: {tmp_path / 'spec.json'}: {message}")


@pytest.mark.parametrize("args,message", [
    (["--data", "powerlaw", "--beta", "1,2"], "--beta do(es) not apply to --data powerlaw (power-law spikes: --spikes)"),
    (["--data", "spiked", "--alpha", "1,2"], "--alpha do(es) not apply to --data spiked"),
    (["--data", "field", "--model", "conv", "--d", "64"], "--d do(es) not apply to --data field"),
    (["--spikes", "4,2", "--rank", "2"], "--spikes sets every spike strength"),
    (["--memory", "0.5"], "memory must be a positive size"),
    (["--width", "8"], "--width applies only to --model conv or unet (got --model linear)"),
    (["--data", "field", "--model", "conv", "--preset", "full"], "--preset full needs --model unet"),
    (["--data", "field", "--model", "unet", "--depth", "9"], "ConvDenoiser.depth must be an integer in [1, 6] "
     "for network='unet' (encoder-decoder levels), got 9"),
])
def test_options_that_do_not_apply_are_refused(args, message, tmp_path, capsys):
    assert_one_line_error(in_process(capsys, "scan", *args, "--out", str(tmp_path / "x")), message)
    assert not (tmp_path / "x").exists()  # refused before the store is touched


def test_help_says_which_data_and_model_each_option_applies_to(monkeypatch):
    """--help and the validation read one table: changing it changes both."""
    from memgen.app import options

    helps = {a.dest: a.help for a in _subparser("scan")._actions}
    assert helps["beta"].endswith("[data: spiked]") and helps["steps"].endswith("[model: diffusion]")
    assert helps["horizon"].endswith("[model: onestep]") and "[data:" not in helps["gamma"]
    monkeypatch.setitem(options.APPLIES, "powerlaw", options.APPLIES["powerlaw"] | {"beta"})
    helps = {a.dest: a.help for a in _subparser("scan")._actions}
    assert helps["beta"].endswith("[data: spiked, powerlaw]")
    options.check_applicable({"data": "powerlaw", "_given": {"beta"}})  # the validation follows the same table
