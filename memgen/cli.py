"""``memgen``: scan | theory | figures | bench | info.

The CLI builds the very same spec objects as the library, so validation is identical; any
``ValueError`` becomes one line ``memgen: error: ...`` and exit status 2, with no traceback.
Scan options may also come from ``--config FILE.toml`` (keys are the long option names, with
dashes or underscores; ``resume = "DIR"``); options on the command line win.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from pathlib import Path

# Defaults of the main job (the README's first command): small enough for a laptop CPU.
SCAN_DEFAULTS = {
    "data": "spiked", "d": 200, "beta": "2", "rank": 1, "spikes": None, "alpha": "1", "k": 1,
    "directions": "random", "gamma": "0.1:8:24", "lam": "0,0.01,0.1,1", "seeds": 4, "seed": 0,
    "samples": 32, "out": None, "overwrite": False, "resume": None, "x64": False, "memory": None,
    "chunk": None, "batch": 8, "theory": None, "progress": True, "cache": True,
    "model": "linear", "preset": None, "size": "16x16", "source": "grace_hopper",
    "sampler": "ddim", "schedule": "ve", "steps": 10, "sigma_max": None, "sigma_min": None, "flow_time": None,
    "parameterisation": "x0", "mean": 10.0, "std": 1.0, "horizon": 2.0, "fresh": 10_000,
}
# --model diffusion: the LinearDiffusion spec's fields (None: the spec's default); --model onestep: OneStep's
DIFFUSION_OPTIONS = ("sampler", "schedule", "steps", "sigma_max", "sigma_min", "flow_time", "parameterisation")
MODEL_OPTIONS = {"diffusion": DIFFUSION_OPTIONS, "onestep": ("horizon", "fresh")}
CONV_DEFAULTS = {"gamma": "0.02,0.25,1,4", "lam": "0,0.001", "seeds": 2}  # --model conv: what differs


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
            raise ValueError(f"--{name}: expected a:b:n with finite {'0 < ' if log else ''}a < b and integer n >= 2 "
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
    cfg = {k.replace("-", "_"): v for k, v in cfg.get("scan", cfg).items()}
    allowed = set(SCAN_DEFAULTS) | {"no_progress"}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ValueError(f"--config: unknown keys {unknown}; allowed: {sorted(allowed)}")
    for k in ("overwrite", "x64", "theory", "progress", "no_progress", "cache"):
        if k in cfg and not isinstance(cfg[k], bool):
            raise ValueError(f"--config: {k} must be true or false, got {cfg[k]!r}")
    if "resume" in cfg and not isinstance(cfg["resume"], str):
        raise ValueError(f"--config: resume must be a store directory, as in --resume DIR, got {cfg['resume']!r}")
    if "no_progress" in cfg:
        cfg["progress"] = not cfg.pop("no_progress")
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
    "spiked": {"d", "beta", "rank", "spikes", "directions", "samples", "theory"},
    "powerlaw": {"d", "spikes", "alpha", "k", "directions", "samples", "theory"},
    "isotropic": {"d", "mean", "std", "samples", "theory"},
    "field": {"alpha", "preset", "size"},
    "images": {"preset", "size", "source"},
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
    from . import specs

    _check_applicable(opts)
    _refuse_model_options(opts)
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
        data = specs.Spiked(beta=strengths, **common)
        sweep = dict(beta=betas if len(betas) > 1 and opts["spikes"] is None else None)
    elif opts["data"] in ("field", "images"):
        return _image_specs(opts, alphas)
    elif opts["data"] == "isotropic":
        return _isotropic_specs(opts)
    elif opts["data"] == "powerlaw":
        spikes = () if opts["spikes"] is None else tuple(parse_range("spikes", opts["spikes"], log=False))
        data = specs.PowerLaw(alpha=alphas[0], k=opts["k"], beta=spikes, **common)
        sweep = dict(alpha=alphas if len(alphas) > 1 else None)
    else:
        raise ValueError(f"--data must be one of spiked, powerlaw, field, images; got {opts['data']!r}")
    if opts["model"] in ("conv", "onestep"):
        need = "image data (--data field or images)" if opts["model"] == "conv" else "--data isotropic"
        raise ValueError(f"--model {opts['model']} needs {need}, got --data {opts['data']}")
    model = _spectral_model(opts)
    grid = specs.Grid(gamma=parse_range("gamma", opts["gamma"]), lam=parse_range("lam", opts["lam"], log=False),
                       seeds=opts["seeds"], seed=opts["seed"], **sweep)
    grid.check(data)
    return data, model, grid


def _refuse_model_options(opts: dict) -> None:
    """Options of another model than --model are errors, not no-ops."""
    for kind, names in MODEL_OPTIONS.items():
        bad = [f"--{k.replace('_', '-')}" for k in names if k in opts.get("_given", set())]
        if bad and opts["model"] != kind:
            raise ValueError(f"{', '.join(bad)} {'applies' if len(bad) == 1 else 'apply'} only to --model {kind} "
                             f"(got --model {opts['model']})")


def _isotropic_specs(opts: dict):
    """--data isotropic with --model onestep (Halder's setting)."""
    from . import specs

    if opts["model"] != "onestep":
        raise ValueError(f"--data isotropic needs --model onestep, got --model {opts['model']}")
    data = specs.Isotropic(d=opts["d"], mean=opts["mean"], std=opts["std"])
    model = specs.OneStep(horizon=opts["horizon"], samples=opts["samples"], fresh=opts["fresh"])
    lam = opts["lam"] if "lam" in opts.get("_given", set()) else "0"  # the model has no regularisation
    grid = specs.Grid(gamma=parse_range("gamma", opts["gamma"]), lam=parse_range("lam", lam, log=False),
                      seeds=opts["seeds"], seed=opts["seed"])
    return data, model, grid


def _spectral_model(opts: dict):
    """--model linear|diffusion -> Linear or LinearDiffusion (diffusion options refused elsewhere)."""
    from . import specs

    if opts["model"] != "diffusion":
        return specs.Linear(samples=opts["samples"])
    fields = {k: opts[k] for k in DIFFUSION_OPTIONS if opts[k] is not None}
    return specs.LinearDiffusion(samples=opts["samples"], **fields)


def _image_specs(opts: dict, alphas):
    """--data field|images with --model conv."""
    from . import specs
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
        if len(alphas) > 1:
            raise ValueError(f"--alpha: one exponent for --data field, got {opts['alpha']!r}")
        data = ImageField(size=size, alpha=alphas[0])
    else:
        data = Images(source=opts["source"], size=size)
    if opts["preset"] not in (None, "quick"):
        raise ValueError(f"--preset must be 'quick', got {opts['preset']!r}")
    model = ConvDenoiser.quick() if opts["preset"] == "quick" else ConvDenoiser()
    given = opts.get("_given", set())  # only what the user left out gets the denoisers' defaults
    gamma = opts["gamma"] if "gamma" in given else CONV_DEFAULTS["gamma"]
    lam = opts["lam"] if "lam" in given else CONV_DEFAULTS["lam"]
    seeds = opts["seeds"] if "seeds" in given else CONV_DEFAULTS["seeds"]
    grid = specs.Grid(gamma=parse_range("gamma", gamma), lam=parse_range("lam", lam, log=False),
                       seeds=seeds, seed=opts["seed"])
    return data, model, grid


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line ``memgen: error: ...``, like every other error."""

    def error(self, message):
        self.exit(2, f"memgen: error: {message} (see {self.prog} --help)\n")


def _add_data_options(p: argparse.ArgumentParser, scan: bool) -> None:
    D = SCAN_DEFAULTS
    kinds = ["spiked", "powerlaw", "isotropic", "field", "images"] if scan else ["spiked", "powerlaw"]
    p.add_argument("--data", choices=kinds, help=f"data (default: {D['data']})")
    p.add_argument("--d", type=int, help=f"dimension (default: {D['d']})")
    p.add_argument("--beta", help=f"spike strength; a list sweeps it (default: {D['beta']})")
    p.add_argument("--rank", type=int, help=f"number of equal spikes (default: {D['rank']})")
    p.add_argument("--spikes", help="explicit strengths of several spikes, e.g. 4,2 (default: none; spiked: "
                   "--rank spikes of strength --beta)")
    p.add_argument("--alpha", help=f"power-law exponent; a list sweeps it{' (field: spectral exponent)' if scan else ''} "
                   f"(default: {D['alpha']})")
    p.add_argument("--k", type=int, help=f"power law without spikes: top population directions scored by Q "
                   f"(default: {D['k']})")
    if scan:
        p.add_argument("--mean", type=float, help=f"isotropic: every coordinate's mean (default: {D['mean']:g})")
        p.add_argument("--std", type=float, help=f"isotropic: every coordinate's std (default: {D['std']:g})")
    if scan:  # the asymptotic theory does not depend on them
        p.add_argument("--directions", choices=["random", "axis"], help=f"spike directions (default: {D['directions']})")
    p.add_argument("--gamma", help=f"loads n/d: a:b:n log-spaced or a list (default: {D['gamma']}"
                   + (f"; conv: {CONV_DEFAULTS['gamma']})" if scan else ")"))
    p.add_argument("--lam", help=f"regularisations in [0, 1e6], a list (default: {D['lam']}); diffusion: the "
                   "denoiser's ridge (0 = the exact Wiener denoiser)"
                   + (f"; conv: the weight decay of AdamW (default: {CONV_DEFAULTS['lam']})" if scan else ""))


def _add_model_options(p: argparse.ArgumentParser, scan: bool) -> None:
    D = SCAN_DEFAULTS
    kinds = ["linear", "diffusion", "onestep", "conv"] if scan else ["linear", "diffusion"]
    p.add_argument("--model", choices=kinds, help="generator: linear (x = (C + lam I)^(1/2) z) or diffusion (a "
                   "linear denoiser sampled as a diffusion model) for spiked|powerlaw"
                   + (", onestep (Halder's one-step denoiser) for isotropic, conv (a bias-free CNN denoiser) for "
                      "field|images" if scan else "") + f" (default: {D['model']})")
    p.add_argument("--sampler", choices=["ode", "ddim", "heun"], help="diffusion: exact probability-flow ODE, DDIM "
                   f"(Euler) or Heun (EDM) (default: {D['sampler']})")
    p.add_argument("--schedule", choices=["ve", "vp"], help="diffusion: VE Karras levels or VP (DDPM linear beta, "
                   f"T = 1000) (default: {D['schedule']})")
    p.add_argument("--steps", type=int, help="diffusion: N noise levels, then a final step to 0 "
                   f"(default: {D['steps']})")
    p.add_argument("--sigma-max", dest="sigma_max", type=float, help="diffusion (VE): starting noise level; inf "
                   "for the ode sampler (default: 80)")
    p.add_argument("--sigma-min", dest="sigma_min", type=float, help="diffusion (VE): smallest Karras level "
                   "(default: 0.002)")
    p.add_argument("--flow-time", dest="flow_time", type=float, help="diffusion: gradient-flow training time of "
                   "the denoiser from zero (default: none, trained to convergence; needs --lam 0)")
    p.add_argument("--parameterisation", choices=["x0", "eps"], help="diffusion with --flow-time: what the "
                   f"gradient flow trains (default: {D['parameterisation']})")
    if scan:
        p.add_argument("--horizon", type=float, help=f"onestep: the forward time T (default: {D['horizon']:g})")
        p.add_argument("--fresh", type=int, help="onestep: size of the fresh set of Halder's relative distance "
                       f"(default: {D['fresh']})")


def _mark_applicability(p: argparse.ArgumentParser) -> None:
    """Appends to each data- or model-specific option's help the kinds it applies to, from the
    tables the validation uses (``_APPLIES``, ``MODEL_OPTIONS``), so the two cannot drift."""
    for action in p._actions:
        dest = action.dest
        data = [k for k, opts in _APPLIES.items() if dest in opts]
        models = [k for k, opts in MODEL_OPTIONS.items() if dest in opts]
        if data and len(data) < len(_APPLIES) and action.help:
            action.help += f" [data: {', '.join(data)}]"
        if models and action.help:
            action.help += f" [model: {', '.join(models)}]"


def _variables() -> str:
    """The output part of ``memgen scan --help``, from the one declaration (``memgen.schema``)."""
    from .schema import VARS

    rows = "\n".join(f"  {name:<13} {var.description}" for name, var in VARS.items())
    return (f"output (DIR/results.nc, an xarray Dataset; plots study.png/.pdf and phase_q.png/.pdf):\n{rows}\n"
            f"  {'<v>_theory':<13} the asymptotic theory of <v> (where one exists; --no-theory to skip)\n"
            "  linear and diffusion models store m, q, w2, m_kad, mem_frac, kl, kl_rev, h2, Q, top_eig;\n"
            "  conv models m, m_heldout, q, Q, loss and the MSEs per noise level.\n")


def _scan_epilog() -> str:
    rows = "\n".join(f"  {k:<9} " + " ".join(f"--{o}" for o in sorted(v)) for k, v in _APPLIES.items())
    return (f"options that depend on --data (the others apply to all; one given to data that does not use it "
            f"is refused):\n{rows}\n  field and images need --model conv; there --lam is the weight decay of "
            f"AdamW.\n\n{_variables()}\nexample:\n  memgen scan --data spiked --beta 2 --d 400 --gamma 0.1:8:24 "
            f"--lam 0,0.01,0.1,1 --seeds 8 --out runs/spiked --theory\n")


def _parser() -> argparse.ArgumentParser:
    D = SCAN_DEFAULTS
    p = _Parser(prog="memgen", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("scan", help="simulate a (gamma, lam, seed, ...) grid and store it",
                       description="Simulate a (gamma, lam, seed, ...) grid and write it to a resumable store.",
                       epilog=_scan_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--config", metavar="FILE", help="TOML file whose keys are the long options below, with dashes "
                   "or underscores (resume = \"DIR\"); the command line wins (default: none)")
    _add_data_options(s, scan=True)
    _add_model_options(s, scan=True)
    s.add_argument("--preset", choices=["quick"], help="conv: small CPU-sized denoisers (default: none, the "
                   "full-size ConvDenoiser())")
    s.add_argument("--size", help=f"field|images: image size HxW (default: {D['size']})")
    s.add_argument("--source", help="images: .npy/.npz/folder of PNGs, or grace_hopper, disks, calpha "
                   f"(default: {D['source']})")
    s.add_argument("--seeds", type=int, help=f"independent repetitions (default: {D['seeds']}; conv: "
                   f"{CONV_DEFAULTS['seeds']})")
    s.add_argument("--seed", type=int, help=f"root seed (default: {D['seed']})")
    s.add_argument("--samples", type=int, help=f"generated samples per model and point (default: {D['samples']})")
    s.add_argument("--out", metavar="DIR", help="store directory, new or empty (not needed with --resume DIR)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--overwrite", action="store_true", default=None, help="replace the memgen store in --out "
                   "(default: an existing non-empty --out is refused)")
    g.add_argument("--resume", metavar="DIR", help="finish the interrupted store DIR (its spec.json gives the "
                   "data, model, grid, dtype, batch and theory; run options such as --memory may change)")
    s.add_argument("--x64", action="store_true", default=None, help="compute in float64 (default: float32)")
    s.add_argument("--memory", help="budget of one device, e.g. 4GB (default: half its free memory; CPU: half "
                   "the host RAM split between the CPU devices)")
    s.add_argument("--chunk", type=int, help="points per stored chunk, the unit of checkpointing and progress; "
                   "results do not depend on it (default: a few micro-batches per device)")
    s.add_argument("--batch", type=int, help="points evaluated at once per device; stored with the spec, as it "
                   f"fixes the arithmetic (default: {D['batch']})")
    th = s.add_mutually_exclusive_group()
    th.add_argument("--theory", action="store_true", default=None, help="store the asymptotic theory as "
                    "<var>_theory (default: on where a theory exists, i.e. for spiked and powerlaw data)")
    th.add_argument("--no-theory", dest="theory", action="store_false", default=None, help="do not store the theory (default: stored where it exists)")
    s.add_argument("--no-cache", dest="cache", action="store_false", default=None,
                   help="do not use the persistent compilation cache (default: compiled kernels are kept under "
                   "$MEMGEN_CACHE_DIR, else ~/.cache/memgen/jax, and reused by later runs)")
    s.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                   help="no progress bar (default: a progress bar on stderr)")

    _mark_applicability(s)
    t = sub.add_parser("theory", help="print the asymptotic theory on a grid",
                       description="Print the asymptotic theory on a grid. It is always computed in float64, "
                       "so there is no --x64.")
    _add_data_options(t, scan=False)
    _add_model_options(t, scan=False)
    t.add_argument("--format", choices=["table", "csv", "json"], default="table", help="(default: table)")
    _mark_applicability(t)

    f = sub.add_parser("figures", help="regenerate the figure set")
    f.add_argument("--out", metavar="DIR", default="memgen-figures", help="output folder (default: "
                   "./memgen-figures; the committed gallery lives in the repository's figures/ and is only "
                   "rewritten when you pass --out figures)")
    f.add_argument("--only", help="comma list of figures to (re)make, keeping the others' index entries "
                   "(order_parameters, phase_diagrams, latent_recovery, powerlaw, spectra, denoisers, benchmark, "
                   "linear_diffusion)")
    mode = f.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick", help="d = 200 (default)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full", help="the paper-sized set")

    sub.add_parser("info", help="devices and versions")
    sub.add_parser("bench", help="the versioned accelerator benchmark suite (see memgen bench --help)",
                   add_help=False)
    return p


_SPEC_OPTIONS = ("data", "d", "beta", "rank", "spikes", "alpha", "k", "directions", "gamma", "lam", "seeds", "seed",
                 "samples", "model", "preset", "size", "source", "x64", "out", "batch", "theory", "mean", "std",
                 *DIFFUSION_OPTIONS, *MODEL_OPTIONS["onestep"])


def _resume_specs(opts: dict):
    """--resume DIR: the specs (and dtype, batch, theory) come from DIR/spec.json, not the options."""
    given = [f"--{k}" for k in _SPEC_OPTIONS if k in opts["_given"]]
    if given:
        raise ValueError(f"--resume takes the spec from the store; drop {', '.join(given)}")
    from .store import read_spec, specs_of

    try:
        spec = read_spec(opts["resume"])
    except ValueError as e:
        raise ValueError(f"--resume: {e}") from None
    opts.update(out=opts["resume"], resume=True, x64=spec.get("dtype") == "float64", batch=spec.get("batch", 8),
                theory=bool(spec.get("theory", False)))
    return specs_of(spec)


def _cmd_scan(args) -> int:
    opts = _options(args)
    if opts["resume"] is not None:
        data, model, grid = _resume_specs(opts)
    else:
        opts["resume"] = False
        data, model, grid = build_specs(opts)
        if opts["theory"] is None:  # on wherever a theory exists
            from .theory import available

            opts["theory"] = available(data, model)
    from .scan import parse_memory, scan

    if opts["memory"] is not None:  # every option error before "--out is required"
        parse_memory(opts["memory"])
    if not opts["out"]:
        raise ValueError("--out is required: the directory to write the store to (or --resume DIR)")
    if opts["x64"]:  # the CLI owns its process: it may switch JAX's x64 mode on (the library never does)
        import jax

        jax.config.update("jax_enable_x64", True)
    if opts["cache"]:
        from .run.device import compilation_cache

        compilation_cache()
    mode = "resume" if opts["resume"] else "overwrite" if opts["overwrite"] else "new"
    ds = scan(data, model, grid, out=opts["out"], dtype="float64" if opts["x64"] else "float32",
              memory=opts["memory"], chunk=opts["chunk"], batch=opts["batch"], progress=opts["progress"], mode=mode,
              theory=opts["theory"])
    out = Path(opts["out"])
    from .report import summary

    print(summary(ds))
    from . import plots

    written = [out / "results.nc", *plots.save(plots.study(ds), out / "study"), *_phase_plots(ds, out)]
    shape = " x ".join(f"{ds.sizes[d]} {d}" for d in ("beta", "alpha", "gamma", "lam") if d in ds.dims)
    cache = "on: later runs of these shapes load them" if opts["cache"] else "off (--no-cache)"
    print(f"compiling took {ds.attrs['compile_seconds']:.1f} s (persistent cache {cache}), computing "
          f"{ds.attrs['compute_seconds']:.1f} s")
    print(f"wrote {', '.join(map(str, written))} ({shape} x {ds.sizes['seed']} seeds)")
    return 0


def _phase_plots(ds, out: Path) -> list[Path]:
    """phase_q.png/.pdf, and one pair per value of a swept beta or alpha; returns the paths written."""
    from . import plots

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
    opts = _options(args)
    data, model, grid = build_specs(opts)
    from .theory import theory, theory_table

    print(theory_table(theory(data, grid, model), args.format))
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
    if only is not None and "benchmark" not in only:  # the benchmark figure times compiling: no cache there
        from .run.device import compilation_cache

        compilation_cache()
    make_all(args.out, mode=args.mode or "quick", only=only)
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from .run.device import use_every_core

    use_every_core()
    if argv[:1] == ["bench"]:  # its own parser
        from .bench import main as bench_main

        return bench_main(argv[1:])
    args = _parser().parse_args(argv)
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
    except (ValueError, FloatingPointError, OSError) as e:
        msg = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename and e.strerror else str(e)
        print(f"memgen: error: {' '.join(msg.splitlines())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("memgen: interrupted; finished chunks are saved (use --resume)", file=sys.stderr)
        return 130


def entry() -> None:
    """The ``memgen`` command: ``main``, then exit. After Ctrl-C it exits at once (``os._exit``),
    not waiting for a kernel compile abandoned in its thread; finished chunks are on disk and
    the store's lock dies with the process."""
    rc = main()
    if rc == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(rc)


if __name__ == "__main__":
    entry()
