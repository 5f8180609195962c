"""memgen.app.figures: every figure function runs end to end on tiny grids and is indexed.

The drawing itself is tested in test_plots.py; here only the wiring: each figure writes a PNG
and a PDF, ``figures.json`` lists every file with the exact specs it was made from, and the
mode/figure names are validated. ``mode="tiny"`` keeps the whole module to well under a minute.
"""

import json
import time
from pathlib import Path

import pytest

from memgen import specs
from memgen.app import figures

pytestmark = pytest.mark.xdist_group("test_figures")  # its module-scoped fixture runs once, on one worker

# The test-only sizes (seconds; the numbers mean nothing): a row the tests add to SIZES.
TINY = dict(
    diff_models=(("ode", 1), ("ddim", 3)), diff_d=16,
    d=16, gamma=(0.7, 0.9, 2), lam=(0.0, 0.1), lam_show=(0.0, 0.1), seeds=2, samples=4, beta=2.0,
    betas=(1.0, 2.0), alphas=(0.5, 1.5), pl_k=1, theory_points=12,
    spec_d=40, spec_gammas=(0.5, 2.0),
    img_size=(8, 8), img_gamma=(0.125, 1.0), img_lam=(0.0,), img_seeds=1, img_k=1,  # k of the spikes: one compile
    denoiser=dict(depth=2, width=2, steps=4, batch=4, sample_steps=2, samples=5, test=2),
    pair_n=(8, 64), pair_show=4, spike_betas=(1.0, 4.0),
    bench_d=(8, 16), bench_seeds=2, naive_seeds=1,
    halder_d=10, halder_gamma=(0.5, 4.0, 2), halder_seeds=2, halder_fresh=50,
)


@pytest.fixture(scope="module", autouse=True)
def tiny_mode():
    figures.SIZES["tiny"] = TINY
    yield
    del figures.SIZES["tiny"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    out = tmp_path_factory.mktemp("figs")
    files = figures.make_all(out, mode="tiny")
    return out, files, json.loads((out / "figures.json").read_text())


def test_every_figure_writes_png_and_pdf(made):
    out, files, _ = made
    assert files[-1] == out / "figures.json"
    stems = {p.with_suffix("") for p in files[:-1]}
    for stem in stems:
        for ext in (".png", ".pdf"):
            p = stem.with_suffix(ext)
            assert p.exists() and p.stat().st_size > 1000, p
    names = {p.name for p in stems}
    for name in ("order_parameters", "phase_diagrams", "latent_recovery", "powerlaw", "spectra",
                 "denoisers", "denoiser_spikes", "benchmark", "linear_diffusion"):
        assert name in names
    assert any(n.startswith("denoisers_samples_field_") for n in names)
    assert any(n.startswith("denoisers_samples_hopper_") for n in names)
    assert {f"denoiser_spikes_samples_{t}_n64" for t in ("strong", "weak", "digits")} <= names
    # the PNG really is a PNG
    assert (out / "order_parameters.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_index_lists_files_and_specs(made):
    out, files, index = made
    assert index["mode"] == "tiny" and list(index["sizes"]) == ["tiny"]
    assert [e["name"] for e in index["figures"]] == list(figures.FIGURES)
    listed = {f for e in index["figures"] for f in e["files"]}
    assert listed == {str(p.relative_to(out)) for p in files[:-1]}
    for e in index["figures"]:
        assert e["mode"] == "tiny" and e["specs"]
        for s in e["specs"]:
            assert set(s) >= {"data", "model", "grid"}
            # specs round-trip: they are exactly what the figure was made from
            data = specs.from_dict(s["data"])
            grid = specs.from_dict(s["grid"])
            assert isinstance(grid, specs.Grid) and data.d >= 2
            if s["model"] is not None:
                specs.from_dict(s["model"])
    by = {e["name"]: e for e in index["figures"]}
    assert by["latent_recovery"]["specs"][0]["grid"]["beta"] == list(TINY["betas"])
    assert by["powerlaw"]["specs"][0]["grid"]["alpha"] == list(TINY["alphas"])
    assert by["powerlaw"]["specs"][0]["data"]["kind"] == "PowerLaw"
    assert by["denoisers"]["specs"][0]["model"]["kind"] == "ConvDenoiser"
    assert [s["data"].get("beta") for s in by["denoiser_spikes"]["specs"][:3]] == [[4.0], [1.0], None]
    bench = by["benchmark"]["seconds_per_point"]
    assert len(bench) == 3 and all(len(v) == len(TINY["bench_d"]) for v in bench.values())
    assert all(t > 0 for v in bench.values() for t in v.values())


def test_scan_results_are_kept_with_theory(made):
    import xarray as xr

    out, _, _ = made
    with xr.open_dataset(out / "data" / "order_parameters.nc", engine="h5netcdf") as ds:
        assert {"q", "m", "Q", "q_theory", "Q_theory"} <= set(ds.data_vars)
        assert not ds["q_theory"].isnull().any()


def test_bad_mode_and_name(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        figures.make_all(tmp_path, mode="huge")
    with pytest.raises(ValueError, match="unknown figure"):
        figures.make_all(tmp_path, mode="tiny", only=["nope"])
    assert not (tmp_path / "figures.json").exists()


def test_sizes_table_is_complete():
    keys = set(figures.SIZES["quick"])
    for mode in figures.SIZES:
        assert set(figures.SIZES[mode]) == keys, mode
    full = figures.SIZES["full"]
    assert full["d"] >= 1000 and full["seeds"] >= 16 and max(full["bench_d"]) >= 512


def test_remaking_one_figure_keeps_the_index_of_the_others(made, tmp_path):
    out, _, index = made
    import shutil

    copy = tmp_path / "figs"
    shutil.copytree(out, copy)
    figures.make_all(copy, mode="tiny", only=["spectra"])
    new = json.loads((copy / "figures.json").read_text())
    assert [e["name"] for e in new["figures"]] == [e["name"] for e in index["figures"]]
    by_old = {e["name"]: e for e in index["figures"]}
    for e in new["figures"]:
        if e["name"] != "spectra":
            assert e == by_old[e["name"]]


def _fake_figures(monkeypatch, calls):
    """Every figure function replaced by one that writes a stub PNG and its index entry."""
    def fake(name):
        def fig(out_dir, mode="quick", log=None):
            calls.append((name, mode))
            t0 = time.perf_counter()
            p = Path(out_dir) / f"{name}.png"
            p.write_bytes(b"png")
            figures.record(log, name, [p], figures.spec_record(), mode, t0)
            return [p]
        return fig

    for name in list(figures.FIGURES):
        monkeypatch.setitem(figures.FIGURES, name, fake(name))


def test_default_out_is_not_the_committed_figures(tmp_path, monkeypatch, capsys):
    calls = []
    _fake_figures(monkeypatch, calls)
    monkeypatch.chdir(tmp_path)
    files = figures.make_all(mode="tiny")
    assert files[-1] == Path("memgen-figures") / "figures.json" and files[-1].exists()
    assert not (tmp_path / "figures").exists()
    assert [c[0] for c in calls] == list(figures.FIGURES)
    # progress: one line per figure, in order, with its name and seconds
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("memgen figures:")]
    n = len(figures.FIGURES)
    assert len(lines) == n
    for i, (name, line) in enumerate(zip(figures.FIGURES, lines), 1):
        assert line.startswith(f"memgen figures: [{i}/{n}] {name} (tiny) ") and line.endswith(" s"), line


@pytest.mark.parametrize("old_mode, new_mode", [("full", "quick"), ("quick", "full"), ("quick", "quick")])
def test_only_keeps_the_other_entries_whatever_the_mode(tmp_path, monkeypatch, old_mode, new_mode):
    calls = []
    _fake_figures(monkeypatch, calls)
    figures.make_all(tmp_path, mode=old_mode)
    old = {e["name"]: e for e in json.loads((tmp_path / "figures.json").read_text())["figures"]}
    figures.make_all(tmp_path, mode=new_mode, only=["denoisers", "benchmark"])
    assert calls[-2:] == [("denoisers", new_mode), ("benchmark", new_mode)]
    index = json.loads((tmp_path / "figures.json").read_text())
    assert [e["name"] for e in index["figures"]] == list(figures.FIGURES)
    for e in index["figures"]:
        if e["name"] in ("denoisers", "benchmark"):
            assert e["mode"] == new_mode and e["files"] == [f"{e['name']}.png"]
        else:
            assert e == old[e["name"]]  # kept as it was, with the mode that made it
    assert index["mode"] == (new_mode if new_mode == old_mode else "mixed")
    assert set(index["sizes"]) == {old_mode, new_mode}
    assert index["sizes"][new_mode] == json.loads(json.dumps(figures.SIZES[new_mode]))
