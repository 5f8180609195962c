"""``memgen bench``: a fixed, versioned accelerator benchmark suite, JSON record plus table.

Items (suite version :data:`SUITE_VERSION`; change the version whenever an item's work changes):

- ``linear_d{d}``: ``memgen.scan`` of spiked data (beta = 2) on a fixed grid per d: gamma in
  (0.5, 1, 2, 4), 4 lams, seeds from :func:`seeds_for` (fewer at large d). The first call
  (compilation plus one run) is reported apart as ``compile_s``; then ``repeat`` steady-state
  calls, each ending in host arrays (so device work is finished when the clock stops). Gives
  median and min seconds and grid points/s. The **eigh floor** (:func:`eigh_floor`) is the
  LAPACK ``eigh`` memgen calls, of every matrix the grid decomposes (the grid's own
  covariances / Gram matrices, :func:`floor_matrices`), spread over the same devices the
  scan uses, min over repeats; ``floor_fraction = floor_s / run_min_s`` (1 = nothing but the
  unavoidable eigh). ``scan_devices``, ``floor_devices`` and ``floor_threads`` show what
  each side ran on.
- ``lam_axis_d256``: the same scan at d = 256 with 1 and with 16 lams; the time ratio shows
  what the lam axis costs (every lam comes from one eigh per dataset).
- ``theory``: ``memgen.theory`` on a 200 x 200 (gamma, lam) spiked grid, points/s.
- ``denoisers``: ``train_ensemble`` of K small ``ConvDenoiser`` models (sharded, vmapped),
  models * steps / s.

A size is skipped, with the reason recorded, when one grid point does not fit the memory
budget (``memgen.scan`` refuses it before compute), when the floor's host data would not fit
RAM, or when the time estimated from the previous
size (cost ~ points * d^3) exceeds ``cap_s``. ``compare(a, b)`` prints throughput ratios
b / a per item.

    memgen bench --quick --out benchmarks/results/cpu.json     # < 2 min on 2 CPU cores
    memgen bench --compare a.json b.json
"""

from .command import main as main, parser as parser
from .floor import eigh_floor as eigh_floor, floor_matrices as floor_matrices, training_sets as training_sets
from .report import compare as compare, format_table as format_table, load as load, write as write
from .suite import (DEFAULT_CAP_S as DEFAULT_CAP_S, GAMMAS as GAMMAS, LAMS as LAMS, QUICK_SIZES as QUICK_SIZES,
                    SIZES as SIZES, SUITE_VERSION as SUITE_VERSION, denoiser_item as denoiser_item,
                    environment as environment, floor_item as floor_item, lam_axis_item as lam_axis_item,
                    linear_grid as linear_grid, linear_item as linear_item, run_suite as run_suite,
                    seeds_for as seeds_for, theory_item as theory_item)
