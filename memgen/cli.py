"""``memgen``: scan | theory | figures | bench | info.

The CLI builds the very same spec objects as the library, so validation is identical; any
``ValueError`` becomes one line ``memgen: error: ...`` and exit status 2, with no traceback.
Options may also come from ``--config FILE.toml`` (keys are the long option names, with
underscores); options on the command line win.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

# Defaults of the main job (the README's first command): small enough for a laptop CPU.
SCAN_DEFAULTS = {
    "data": "spiked", "d": 200, "beta": "2", "rank": 1, "spikes": None, "alpha": "1", "k": 1,
    "directions": "random", "gamma": "0.1:8:24", "lam": "0,0.01,0.1,1", "seeds": 4, "seed": 0,
    "samples": 32, "out": None, "overwrite": False, "resume": False, "x64": False, "memory": None,
    "chunk": None, "batch": 8, "theory": False, "progress": True,
    "model": "linear", "preset": None, "size": "16x16", "source": "grace_hopper",
}


def parse_range(name: str, text, log: bool = True) -> list[float]:
    """'a:b:n' -> n log-spaced values in [a, b] (log=True), or 'x,y,z' -> a list."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return [float(text)]
    if isinstance(text, list):
        text = ",".join(str(t) for t in text)
    s = str(text).strip()
    if ":" in s:
        parts = s.split(":")
        try:
            a, b, n = float(parts[0]), float(parts[1]), int(parts[2])
            ok = len(parts) == 3 and n >= 2 and math.isfinite(a) and math.isfinite(b) and a < b
            ok = ok and (a > 0 if log else True)
        except (ValueError, IndexError):
            ok = False
        if not ok:
            raise ValueError(f"--{name}: expected a:b:n with {'0 < ' if log else ''}a < b and integer n >= 2 "
                             f"({'log' if log else 'linearly'}-spaced), got {s!r}")
        import numpy as np

        vals = np.geomspace(a, b, n) if log else np.linspace(a, b, n)
        return [float(f"{v:.6g}") for v in vals]
    try:
        out = [float(x) for x in s.split(",") if x.strip() != ""]
    except ValueError:
        out = []
    if not out:
        raise ValueError(f"--{name}: expected a comma-separated list of numbers{' or a:b:n' if log else ''}, got {s!r}")
    return out


def _load_config(path: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--config: no such file {path!r}")
    try:
        cfg = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"--config: {path} is not valid TOML ({e})") from None
    cfg = cfg.get("scan", cfg)
    unknown = sorted(set(cfg) - set(SCAN_DEFAULTS))
    if unknown:
        raise ValueError(f"--config: unknown keys {unknown}; allowed: {sorted(SCAN_DEFAULTS)}")
    return cfg


def _options(args) -> dict:
    """Defaults < TOML < command line; ``_given`` names the options set explicitly."""
    opts = dict(SCAN_DEFAULTS)
    given = set()
    if getattr(args, "config", None):
        cfg = _load_config(args.config)
        opts.update(cfg)
        given |= set(cfg)
    for k in SCAN_DEFAULTS:
        v = getattr(args, k, None)
        if v is not None:
            opts[k] = v
            given.add(k)
    opts["_given"] = given
    return opts


# The options each kind of data uses; giving one it does not use is an error, not a no-op.
_APPLIES = {
    "spiked": {"d", "beta", "rank", "spikes", "directions", "samples", "memory", "batch", "theory"},
    "powerlaw": {"d", "spikes", "alpha", "k", "directions", "samples", "memory", "batch", "theory"},
    "field": {"alpha", "preset", "size", "memory", "batch"},
    "images": {"preset", "size", "source", "memory", "batch"},
}
_DATA_OPTIONS = set().union(*_APPLIES.values())


def _check_applicable(opts: dict) -> None:
    data, given = opts["data"], opts.get("_given", set())
    bad = sorted(given & _DATA_OPTIONS - _APPLIES[data])
    if bad:
        hint = " (power-law spikes: --spikes)" if "beta" in bad and data == "powerlaw" else ""
        raise ValueError(f"{', '.join('--' + b for b in bad)} do(es) not apply to --data {data}{hint}")
    if data == "spiked" and "spikes" in given and ({"rank"} & given or "," in str(opts["beta"])):
        raise ValueError("--spikes sets every spike strength: drop --rank and the --beta list")


def build_specs(opts: dict):
    """CLI/TOML options -> (data, model, grid), validated by the specs themselves."""
    from . import config

    _check_applicable(opts)
    betas = parse_range("beta", opts["beta"], log=False)
    alphas = parse_range("alpha", opts["alpha"], log=False)
    common = dict(d=opts["d"], directions=opts["directions"])
    if opts["data"] == "spiked":
        if opts["spikes"] is not None:
            strengths = tuple(parse_range("spikes", opts["spikes"], log=False))
        else:
            rank = opts["rank"]
            if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
                raise ValueError(f"--rank must be an integer >= 1, got {rank!r}")
            strengths = (betas[0],) * rank
        data = config.Spiked(beta=strengths, **common)
        sweep = dict(beta=betas if len(betas) > 1 and opts["spikes"] is None else None)
    elif opts["data"] in ("field", "images"):
        return _image_specs(opts, alphas)
    elif opts["data"] == "powerlaw":
        spikes = () if opts["spikes"] is None else tuple(parse_range("spikes", opts["spikes"], log=False))
        data = config.PowerLaw(alpha=alphas[0], k=opts["k"], beta=spikes, **common)
        sweep = dict(alpha=alphas if len(alphas) > 1 else None)
    else:
        raise ValueError(f"--data must be one of spiked, powerlaw, field, images; got {opts['data']!r}")
    if opts["model"] != "linear":
        raise ValueError(f"--model conv needs image data (--data field or images), got --data {opts['data']}")
    model = config.Linear(samples=opts["samples"])
    grid = config.Grid(gamma=parse_range("gamma", opts["gamma"]), lam=parse_range("lam", opts["lam"], log=False),
                       seeds=opts["seeds"], seed=opts["seed"], **sweep)
    grid.check(data)
    return data, model, grid


def _image_specs(opts: dict, alphas):
    """--data field|images with --model conv."""
    from . import config
    from .denoisers import ConvDenoiser, ImageField, Images

    if opts["model"] != "conv":
        raise ValueError(f"--data {opts['data']} needs --model conv")
    try:
        size = tuple(int(v) for v in str(opts["size"]).lower().split("x"))
    except ValueError:
        size = ()
    if len(size) != 2:
        raise ValueError(f"--size must be HxW such as 16x16, got {opts['size']!r}")
    if opts["data"] == "field":
        data = ImageField(size=size, alpha=alphas[0])
    else:
        data = Images(source=opts["source"], size=size)
    if opts["preset"] not in (None, "quick"):
        raise ValueError(f"--preset must be 'quick', got {opts['preset']!r}")
    model = ConvDenoiser.quick() if opts["preset"] == "quick" else ConvDenoiser()
    gamma = opts["gamma"] if opts["gamma"] != SCAN_DEFAULTS["gamma"] else "0.02,0.25,1,4"
    lam = opts["lam"] if opts["lam"] != SCAN_DEFAULTS["lam"] else "0,0.001"
    seeds = opts["seeds"] if opts["seeds"] != SCAN_DEFAULTS["seeds"] else 2
    grid = config.Grid(gamma=parse_range("gamma", gamma), lam=parse_range("lam", lam, log=False),
                       seeds=seeds, seed=opts["seed"])
    return data, model, grid


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML file with any of the options below (command line wins)")
    p.add_argument("--data", choices=["spiked", "powerlaw", "field", "images"], help="data (default spiked)")
    p.add_argument("--model", choices=["linear", "conv"], help="generator (default linear)")
    p.add_argument("--preset", choices=["quick"], help="conv: small CPU-sized denoisers")
    p.add_argument("--size", help="images: HxW (default 16x16)")
    p.add_argument("--source", help="images: .npy/.npz/folder of PNGs, or grace_hopper, disks, calpha")
    p.add_argument("--d", type=int, help="dimension (default 200)")
    p.add_argument("--beta", help="spike strength; a list sweeps it (default 2)")
    p.add_argument("--rank", type=int, help="number of equal spikes (default 1)")
    p.add_argument("--spikes", help="explicit strengths of several spikes, e.g. 4,2")
    p.add_argument("--alpha", help="power-law exponent; a list sweeps it (default 1)")
    p.add_argument("--k", type=int, help="power law: top population directions scored by Q")
    p.add_argument("--directions", choices=["random", "axis"], help="spike directions")
    p.add_argument("--gamma", help="loads n/d: a:b:n log-spaced or a list (default 0.1:8:24)")
    p.add_argument("--lam", help="regularisations, a list (default 0,0.01,0.1,1)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="memgen", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("scan", help="simulate a (gamma, lam, seed, ...) grid and store it")
    _add_data_options(s)
    s.add_argument("--seeds", type=int, help="independent repetitions (default 4)")
    s.add_argument("--seed", type=int, help="root seed (default 0)")
    s.add_argument("--samples", type=int, help="generated samples per model and point (default 32)")
    s.add_argument("--out", help="store directory (required)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--overwrite", action="store_true", default=None, help="replace an existing store")
    g.add_argument("--resume", metavar="DIR", help="finish the interrupted store DIR (its spec.json gives the "
                   "data, model and grid; run options such as --memory may change)")
    s.add_argument("--x64", action="store_true", default=None, help="compute in float64")
    s.add_argument("--memory", help="memory budget, e.g. 4GB (default: from the device)")
    s.add_argument("--chunk", type=int, help="points per stored chunk")
    s.add_argument("--batch", type=int, help="points evaluated at once per device (default 8)")
    s.add_argument("--theory", action="store_true", default=None, help="store the asymptotic theory alongside")
    s.add_argument("--no-progress", dest="progress", action="store_false", default=None)

    t = sub.add_parser("theory", help="print the asymptotic theory on a grid")
    _add_data_options(t)
    t.add_argument("--format", choices=["table", "csv", "json"], default="table")

    f = sub.add_parser("figures", help="regenerate the figure set")
    f.add_argument("--out", default="figures")
    f.add_argument("--only", help="comma list of figures to (re)make, keeping the others' index entries "
                   "(order_parameters, phase_diagrams, latent_recovery, powerlaw, spectra, denoisers, benchmark)")
    mode = f.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick")
    mode.add_argument("--full", dest="mode", action="store_const", const="full")

    sub.add_parser("info", help="devices and versions")
    sub.add_parser("bench", help="the versioned accelerator benchmark suite (see memgen bench --help)",
                   add_help=False)
    return p


_SPEC_OPTIONS = ("config", "data", "d", "beta", "rank", "spikes", "alpha", "k", "directions", "gamma", "lam",
                 "seeds", "seed", "samples", "model", "preset", "size", "source", "x64", "out", "batch")


def _resume_specs(args, opts):
    """--resume DIR: the specs (and dtype) come from DIR/spec.json, not the command line."""
    given = [f"--{k}" for k in _SPEC_OPTIONS if getattr(args, k, None) not in (None, False)]
    if given:
        raise ValueError(f"--resume takes the spec from the store; drop {', '.join(given)}")
    from . import config

    spec_file = Path(args.resume) / "spec.json"
    if not spec_file.is_file():
        raise ValueError(f"--resume: {args.resume!r} is not a memgen store (no spec.json)")
    spec = json.loads(spec_file.read_text())
    opts.update(out=args.resume, resume=True, x64=spec.get("dtype") == "float64", batch=spec.get("batch", 8))
    return tuple(config.from_dict(spec[k]) for k in ("data", "model", "grid"))


def _cmd_scan(args) -> int:
    opts = _options(args)
    if args.resume is not None:
        data, model, grid = _resume_specs(args, opts)
    else:
        opts["resume"] = False
        data, model, grid = build_specs(opts)
    from .engine import parse_memory, scan

    if opts["memory"] is not None:
        parse_memory(opts["memory"])
    if not opts["out"]:
        raise ValueError("--out is required: the directory to write the store to")
    ds = scan(data, model, grid, out=opts["out"], x64=opts["x64"], memory=opts["memory"], chunk=opts["chunk"],
              batch=opts["batch"], progress=opts["progress"], overwrite=opts["overwrite"], resume=opts["resume"])
    out = Path(opts["out"])
    if "w2" not in ds:  # a denoiser scan
        from . import plots

        plots.save(plots.phase_diagram(ds, "q"), out / "phase_q")
        print(f"wrote {out}/results.nc and {out}/phase_q.png")
        return 0
    if opts["theory"]:
        from .store import attach_theory
        from .theory import theory

        ds = attach_theory(ds, theory(data, grid), out)
    _phase_pngs(ds, out)
    print(f"wrote {out}/results.nc and {out}/phase_q.png ({ds.sizes.get('gamma')} gamma x {ds.sizes.get('lam')} lam "
          f"x {ds.sizes.get('seed')} seeds)")
    return 0


def _phase_pngs(ds, out: Path) -> None:
    from . import plots

    extra = next((d for d in ("beta", "alpha") if d in ds.dims), None)
    first = ds.isel({extra: 0}) if extra else ds
    plots.save(plots.phase_diagram(first, "q"), out / "phase_q")
    if extra:
        for v in ds[extra].values:
            plots.save(plots.phase_diagram(ds.sel({extra: v}), "q"), out / f"phase_q_{extra}{v:g}")


def _cmd_theory(args) -> int:
    opts = _options(args)
    data, _, grid = build_specs(opts)
    from .theory import theory, theory_table

    print(theory_table(theory(data, grid), args.format))
    return 0


def _cmd_info(args) -> int:
    import jax

    from . import __version__

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
    make_all(args.out, mode=args.mode or "quick", only=only)
    return 0


def _cpu_devices() -> None:
    """One XLA CPU device per usable core, unless the user chose a count or JAX already started.

    Scans shard their points over every device, so on a CPU this is what puts every core to
    work (denoiser ensembles: 1.5x faster on 2 cores than on one device; results are identical
    for any device count).
    It changes nothing on GPU/TPU runs, where the CPU is not a compute device.
    """
    import jax

    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "") or "JAX_NUM_CPU_DEVICES" in os.environ:
        return
    try:
        jax.config.update("jax_num_cpu_devices", len(os.sched_getaffinity(0)))
    except (RuntimeError, AttributeError):  # backend already initialised (in-process use), or no affinity API
        pass


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    _cpu_devices()
    if argv[:1] == ["bench"]:  # its own parser
        from .bench import main as bench_main

        return bench_main(argv[1:])
    args = _parser().parse_args(argv)
    if getattr(args, "x64", None):
        import jax

        jax.config.update("jax_enable_x64", True)
    handler = {"scan": _cmd_scan, "theory": _cmd_theory, "info": _cmd_info, "figures": _cmd_figures}[args.cmd]
    try:
        return handler(args)
    except (ValueError, FloatingPointError) as e:
        print(f"memgen: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("memgen: interrupted; finished chunks are saved (use --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
