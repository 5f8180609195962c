"""The figure set: one function per figure, ``make_all`` for all of them.

Every ``fig_*`` function computes what it shows (scans with ``memgen.scan``, theory with
``memgen.theory``), draws it with ``memgen.plots`` (simulation as points ± s.e.m. over seeds,
theory as lines) and writes ``<out_dir>/<name>.png`` and ``.pdf``. It returns the list of
paths written. ``make_all(out_dir="memgen-figures", mode)`` writes every figure plus
``figures.json``, an index recording, per figure, its files, the exact specs
(``memgen.specs.to_dict`` of data, model and grid) and the mode; at the top, the mode
(``"mixed"`` when ``only`` kept entries of another mode) and the ``SIZES`` row of each mode
present. Scan results are kept next to the figures as ``<out_dir>/data/<name>.nc`` (with
``<v>theory`` attached where a theory exists).

Sizes come from the table ``SIZES`` keyed by mode:

* ``"quick"``: all figures in about 4 minutes on 2 CPU cores (d = 200, 8 seeds, 8x8 images).
* ``"full"``: paper-sized linear grids (d = 1000, 16 seeds; about 30 minutes on 2 CPU cores)
  and wider, longer-trained denoisers (width 32, depth 6, 3000 steps, 4 seeds; still 8x8
  images, which is what a CPU trains in minutes).

The quick mode's denoisers are ``ConvDenoiser.quick()``'s size trained a little longer (2500
steps, DDIM with 32 samples per model); both modes start at n = 1, where a trained denoiser
copies its one training image (m near 1).
The power-law Q is the top-eigenvector recovery (``k = 1``): the theory's axis outliers
score each population axis alone, which is the subspace overlap only for k = 1.

Compile time dominates small scans, so the scans of one data spec share compiled kernels:
they use the same lam list and a fixed micro-batch (``common.fixed_batch``), and the spiked
figures reuse one data spec.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import jax

from .benchmark import fig_benchmark
from .common import CACHE, MODES, SIZES, record, sizes, spec_record
from .denoisers import fig_denoiser_spikes, fig_denoisers
from .halder import fig_halder
from .linear import (fig_latent_recovery, fig_linear_diffusion, fig_order_parameters, fig_phase_diagrams, fig_powerlaw,
                     fig_spectra, spiked_eigenvalues)


FIGURES = {
    "order_parameters": fig_order_parameters,
    "phase_diagrams": fig_phase_diagrams,
    "latent_recovery": fig_latent_recovery,
    "powerlaw": fig_powerlaw,
    "spectra": fig_spectra,
    "denoisers": fig_denoisers,
    "denoiser_spikes": fig_denoiser_spikes,
    "benchmark": fig_benchmark,
    "linear_diffusion": fig_linear_diffusion,
    "halder": fig_halder,
}


def make_all(out_dir="memgen-figures", mode: str = "quick", only=None) -> list[Path]:
    """Writes every figure (PNG + PDF) and ``figures.json`` into ``out_dir``.

    The default folder is ``memgen-figures``, not the repository's committed ``figures/``:
    overwriting those takes an explicit ``out_dir``. One line per figure (its name and
    seconds) goes to stderr. The index is rewritten after each figure, so an interrupted run
    keeps the entries of the figures it finished. With ``only``, the entries of the other
    figures already in ``out_dir/figures.json`` are kept, whatever mode made them (each entry
    records its mode): one figure can be remade alone.

    Args:
        out_dir: output folder (created).
        mode: ``"quick"`` (minutes on 2 CPU cores) or ``"full"`` (paper-sized): a key of
            ``SIZES`` (a caller may add its own row, as the tests do).
        only: names of the figures to make (default all; see ``FIGURES``).

    Returns:
        The paths written, ``figures.json`` last.
    """
    sizes(mode)
    names = list(FIGURES) if only is None else list(only)
    bad = [n for n in names if n not in FIGURES]
    if bad:
        raise ValueError(f"unknown figure(s) {bad}; known: {list(FIGURES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "figures.json"
    kept = []
    if only is not None and path.exists():
        kept = [e for e in json.loads(path.read_text()).get("figures", []) if e["name"] not in names]
    log: list = []
    files: list[Path] = []
    try:
        for i, name in enumerate(names, 1):
            t0 = time.perf_counter()
            files += FIGURES[name](out, mode=mode, log=log)
            _write_index(path, kept, log, out)
            print(f"memgen figures: [{i}/{len(names)}] {name} ({mode}) {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
    finally:
        CACHE.clear()
    return files + [path]


def _write_index(path: Path, kept: list, log: list, out: Path) -> None:
    from ... import __version__

    new = [{**e, "files": [_rel(p, out) for p in e["files"]]} for e in log]
    figures = sorted(kept + new, key=lambda e: list(FIGURES).index(e["name"]))
    modes = [m for m in SIZES if any(e["mode"] == m for e in figures)]
    index = {"mode": modes[0] if len(modes) == 1 else "mixed", "memgen": __version__,
             "jax": jax.__version__,
             "device": f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind} x{jax.device_count()}",
             "seconds": round(sum(e["seconds"] for e in figures), 2),
             "sizes": {m: _jsonable(SIZES[m]) for m in modes}, "figures": figures}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, path)


def _rel(p, out: Path) -> str:
    p = Path(p)
    return str(p.relative_to(out)) if p.is_relative_to(out) else str(p)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


__all__ = ["make_all", "FIGURES", "SIZES", "MODES", "fig_order_parameters", "fig_phase_diagrams",
           "fig_latent_recovery", "fig_powerlaw", "fig_spectra", "fig_denoisers", "fig_benchmark",
           "fig_linear_diffusion", "fig_halder", "spiked_eigenvalues", "record", "spec_record"]
