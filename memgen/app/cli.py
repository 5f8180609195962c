"""``memgen``: scan | theory | figures | bench | info.

The CLI builds the very same spec objects as the library, so validation is identical; any
``ValueError`` becomes one line ``memgen: error: ...`` and exit status 2, with no traceback.
Scan options may also come from ``--config FILE.toml`` (keys are the long option names, with
dashes or underscores; ``resume = "DIR"``); options on the command line win. ``--coordinator
HOST:PORT --num-processes P --process-id I`` (or ``$MEMGEN_COORDINATOR``,
``$MEMGEN_NUM_PROCESSES``, ``$MEMGEN_PROCESS_ID``) run one scan over P processes on JAX's
distributed runtime (``memgen.run.multihost``).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

from ..run.multihost import ProcessFailed
from .options import build_specs, from_args, resume_specs
from .parser import build_parser


def _cmd_scan(args) -> int:
    opts = from_args(args)
    from ..run import multihost

    hosts = multihost.check(opts["coordinator"], opts["num_processes"], opts["process_id"])  # or the environment
    if opts["resume"] is not None:
        data, model, grid = resume_specs(opts)
    else:
        opts["resume"] = False
        data, model, grid = build_specs(opts)
        if opts["theory"] is None:  # on wherever a theory exists
            from ..theory import available

            opts["theory"] = available(data, model)
    from ..scan import parse_memory, scan

    if opts["memory"] is not None:  # every option error before "--out is required"
        parse_memory(opts["memory"])
    if not opts["out"]:
        raise ValueError("--out is required: the directory to write the store to (or --resume DIR)")
    if opts["x64"]:  # the CLI owns its process: it may switch JAX's x64 mode on (the library never does)
        import jax

        jax.config.update("jax_enable_x64", True)
    if opts["cache"]:
        from ..run.device import compilation_cache

        compilation_cache()
    mode = "resume" if opts["resume"] else "overwrite" if opts["overwrite"] else "new"
    if hosts is not None:  # before any JAX computation; every option error came first
        multihost.initialize(*hosts)
    ds = scan(data, model, grid, out=opts["out"], dtype="float64" if opts["x64"] else "float32",
              memory=opts["memory"], chunk=opts["chunk"], batch=opts["batch"], progress=opts["progress"], mode=mode,
              theory=opts["theory"])
    out = Path(opts["out"])
    if ds.attrs.get("process_index", 0) != 0:  # process 0 reports and draws; the others say what they did
        print(f"process {ds.attrs['process_index']} of {ds.attrs['process_count']}: computed "
              f"{ds.attrs['chunks_computed']} chunks in {ds.attrs['compute_seconds']:.1f} s (compiling "
              f"{ds.attrs['compile_seconds']:.1f} s); process 0 wrote {out / 'results.nc'}")
        return 0
    from ..report import summary

    print(summary(ds))
    from .. import plots

    written = [out / "results.nc", *plots.save(plots.study(ds), out / "study"), *_phase_plots(ds, out)]
    shape = " x ".join(f"{ds.sizes[d]} {d}" for d in ("beta", "alpha", "gamma", "lam") if d in ds.dims)
    cache = "on: later runs of these shapes load them" if opts["cache"] else "off (--no-cache)"
    print(f"compiling took {ds.attrs['compile_seconds']:.1f} s (persistent cache {cache}), computing "
          f"{ds.attrs['compute_seconds']:.1f} s")
    print(f"wrote {', '.join(map(str, written))} ({shape} x {ds.sizes['seed']} seeds)")
    return 0


def _phase_plots(ds, out: Path) -> list[Path]:
    """phase_q.png/.pdf, and one pair per value of a swept beta or alpha; returns the paths written."""
    from .. import plots

    if "lam" not in ds.dims:  # nothing to draw over (gamma, lam)
        return []
    def titled(sub):
        fig = plots.phase_diagram(sub, "q")
        fig.suptitle(f"{plots.describe(sub)}: mean q over seeds", fontsize=7)
        return fig

    extra = next((d for d in ("beta", "alpha") if d in ds.dims), None)
    first = ds.isel({extra: 0}) if extra else ds
    written = list(plots.save(titled(first), out / "phase_q"))
    if extra:
        for v in ds[extra].values:
            written += plots.save(titled(ds.sel({extra: v})), out / f"phase_q_{extra}{v:g}")
    return written


def _cmd_theory(args) -> int:
    opts = from_args(args)
    data, model, grid = build_specs(opts)
    from ..theory import theory, theory_table

    print(theory_table(theory(data, grid, model), args.format))
    return 0


def _cmd_info(args) -> int:
    import jax

    from .. import __version__

    info = {"memgen": __version__, "jax": jax.__version__, "backend": jax.default_backend(),
            "devices": [f"{d.platform}:{d.device_kind}" for d in jax.devices()],
            "x64": bool(jax.config.jax_enable_x64), "python": sys.version.split()[0]}
    for name in ("jaxlib", "numpy", "flax", "optax", "xarray", "matplotlib"):
        try:
            info[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001
            info[name] = "missing"
    print(json.dumps(info, indent=1))
    return 0


def _cmd_figures(args) -> int:
    from .figures import make_all

    only = None if args.only is None else [v.strip() for v in args.only.split(",") if v.strip()]
    if only is not None and "benchmark" not in only:  # the benchmark figure times compiling: no cache there
        from ..run.device import compilation_cache

        compilation_cache()
    make_all(args.out, mode=args.mode or "quick", only=only)
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from ..run.device import use_every_core

    use_every_core()
    if argv[:1] == ["bench"]:  # its own parser
        from .bench import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    # a StoreWarning (a corrupt chunk set aside, say) is one line too
    warnings.formatwarning = lambda message, category, *_a, **_k: f"memgen: warning: {message}\n"
    handler = {"scan": _cmd_scan, "theory": _cmd_theory, "info": _cmd_info, "figures": _cmd_figures}[args.cmd]
    try:
        rc = handler(args)
        sys.stdout.flush()  # a closed pipe shows up here, not at exit
        return rc
    except BrokenPipeError:  # `memgen theory ... | head -1`: the reader has what it wanted; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as the shell reports a process killed by it
    except (ValueError, FloatingPointError, OSError, ProcessFailed) as e:
        msg = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename and e.strerror else str(e)
        print(f"memgen: error: {' '.join(msg.splitlines())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("memgen: interrupted; finished chunks are saved (use --resume)", file=sys.stderr)
        return 130


def entry() -> None:
    """The ``memgen`` command: ``main``, then exit. After Ctrl-C (or any failure of a
    distributed scan) it exits at once (``os._exit``), not waiting for a kernel compile
    abandoned in its thread (leaving JAX's distributed runtime first, if it runs); finished
    chunks are on disk and the store's lock dies with the process."""
    rc = main()
    import jax

    if rc == 130 or (rc != 0 and jax.distributed.is_initialized()):  # a compile may be left in its thread
        sys.stdout.flush()
        sys.stderr.flush()
        from ..run.multihost import shutdown

        shutdown()  # a distributed scan: leave JAX's runtime with the others, which stop too
        os._exit(rc)
    sys.exit(rc)


if __name__ == "__main__":
    entry()
