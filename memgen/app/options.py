"""The options of ``memgen scan`` and ``memgen theory``, and the specs they build.

Defaults < ``--config FILE.toml`` < the command line. The CLI builds the very same spec
objects as the library, so validation is identical; every error is a ``ValueError`` naming
the option.
"""

from __future__ import annotations

import math
from pathlib import Path

# Defaults of the main job (the README's first command): small enough for a laptop CPU.
SCAN_DEFAULTS = {
    "data": "spiked", "d": 200, "beta": "2", "rank": 1, "spikes": None, "alpha": "1", "k": 1,
    "directions": "random", "gamma": "0.1:8:24", "lam": "0,0.01,0.1,1", "seeds": 4, "seed": 0,
    "samples": 32, "out": None, "overwrite": False, "resume": None, "x64": False, "memory": None,
    "chunk": None, "batch": None, "theory": None, "progress": True, "cache": True,
    "model": "linear", "preset": None, "size": "16x16", "source": "grace_hopper",
    "sampler": "ddim", "schedule": "ve", "steps": 10, "sigma_max": None, "sigma_min": None, "flow_time": None,
    "parameterisation": "x0", "centre": None, "mean": 10.0, "std": 1.0, "horizon": 2.0, "fresh": 10_000,
    "method": "auto", "width": None, "depth": None,
    "coordinator": None, "num_processes": None, "process_id": None,  # many hosts (memgen.run.multihost)
}
# --model diffusion: the LinearDiffusion spec's fields (None: the spec's default); --model onestep: OneStep's
DIFFUSION_OPTIONS = ("sampler", "schedule", "steps", "sigma_max", "sigma_min", "flow_time", "parameterisation",
                     "centre")
DENOISERS = ("conv", "unet")  # --model for field|images: ConvDenoiser(network="bfcnn" | "unet")
MODEL_OPTIONS = {"linear": ("method",), "diffusion": DIFFUSION_OPTIONS, "onestep": ("horizon", "fresh"),
                 "conv": ("width", "depth"), "unet": ("width", "depth")}
CONV_DEFAULTS = {"gamma": "0.02,0.25,1,4", "lam": "0,0.001", "seeds": 2}  # --model conv: what differs
# --preset quick: a scan that shows memorisation -> generalisation in under a minute on 2 CPU cores
# (README): 8x8 fields with the spectrum of the denoiser figure, n = 1 ... 512 per model, and
# ConvDenoiser.quick(). What the user gives wins; what they leave out comes from here first.
# --preset full: the same at 16x16 (n = 1 ... 1024) with ConvDenoiser.full(), a UNet: 7 min on 2 CPU cores.
PRESETS = {"quick": {"size": "8x8", "alpha": "2", "gamma": "0.015625,0.0625,0.25,2,8", "lam": "0", "seeds": 2},
           "full": {"size": "16x16", "alpha": "2", "gamma": "0.00390625,0.015625,0.0625,0.5,4", "lam": "0",
                    "seeds": 2}}


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


def load_config(path: str) -> dict:
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
    for k in ("overwrite", "x64", "theory", "progress", "no_progress", "cache", "centre"):
        if k in cfg and not isinstance(cfg[k], bool):
            raise ValueError(f"--config: {k} must be true or false, got {cfg[k]!r}")
    if "resume" in cfg and not isinstance(cfg["resume"], str):
        raise ValueError(f"--config: resume must be a store directory, as in --resume DIR, got {cfg['resume']!r}")
    if "no_progress" in cfg:
        cfg["progress"] = not cfg.pop("no_progress")
    return cfg


def from_args(args) -> dict:
    """Defaults < TOML < command line; ``_given`` names the options set explicitly."""
    opts = dict(SCAN_DEFAULTS)
    given = set()
    if getattr(args, "config", None):
        cfg = load_config(args.config)
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
APPLIES = {
    "spiked": {"d", "beta", "rank", "spikes", "directions", "samples", "theory"},
    "powerlaw": {"d", "spikes", "alpha", "k", "directions", "samples", "theory"},
    "isotropic": {"d", "mean", "std", "samples", "theory"},
    "field": {"alpha", "preset", "size", "spikes"},
    "images": {"preset", "size", "source", "spikes"},
}
DATA_OPTIONS = set().union(*APPLIES.values())


def check_applicable(opts: dict) -> None:
    data, given = opts["data"], opts.get("_given", set())
    bad = sorted(given & DATA_OPTIONS - APPLIES[data])
    if bad:
        hint = " (power-law spikes: --spikes)" if "beta" in bad and data == "powerlaw" else ""
        raise ValueError(f"{', '.join('--' + b for b in bad)} do(es) not apply to --data {data}{hint}")
    if data == "spiked" and "spikes" in given and ({"rank"} & given or "," in str(opts["beta"])):
        raise ValueError("--spikes sets every spike strength: drop --rank and the --beta list")


def build_specs(opts: dict):
    """CLI/TOML options -> (data, model, grid), validated by the specs themselves."""
    from .. import specs

    check_applicable(opts)
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
        return _image_specs(opts)
    elif opts["data"] == "isotropic":
        return _isotropic_specs(opts)
    elif opts["data"] == "powerlaw":
        spikes = () if opts["spikes"] is None else tuple(parse_range("spikes", opts["spikes"], log=False))
        data = specs.PowerLaw(alpha=alphas[0], k=opts["k"], beta=spikes, **common)
        sweep = dict(alpha=alphas if len(alphas) > 1 else None)
    else:
        raise ValueError(f"--data must be one of spiked, powerlaw, field, images; got {opts['data']!r}")
    if opts["model"] in (*DENOISERS, "onestep"):
        need = "image data (--data field or images)" if opts["model"] in DENOISERS else "--data isotropic"
        raise ValueError(f"--model {opts['model']} needs {need}, got --data {opts['data']}")
    model = _spectral_model(opts)
    grid = specs.Grid(gamma=parse_range("gamma", opts["gamma"]), lam=parse_range("lam", opts["lam"], log=False),
                       seeds=opts["seeds"], seed=opts["seed"], **sweep)
    grid.check(data)
    return data, model, grid


def _refuse_model_options(opts: dict) -> None:
    """Options of another model than --model are errors, not no-ops."""
    mine = set(MODEL_OPTIONS.get(opts["model"], ()))
    for kind, names in MODEL_OPTIONS.items():
        bad = [k for k in names if k in opts.get("_given", set()) and k not in mine]
        if bad:
            kinds = [k for k, v in MODEL_OPTIONS.items() if bad[0] in v]
            raise ValueError(f"{', '.join('--' + k.replace('_', '-') for k in bad)} "
                             f"{'applies' if len(bad) == 1 else 'apply'} only to --model {' or '.join(kinds)} "
                             f"(got --model {opts['model']})")


def _isotropic_specs(opts: dict):
    """--data isotropic with --model onestep (Halder's setting), linear or diffusion."""
    from .. import specs

    if opts["model"] in DENOISERS:
        raise ValueError(f"--model {opts['model']} needs image data (--data field or images), got --data isotropic")
    data = specs.Isotropic(d=opts["d"], mean=opts["mean"], std=opts["std"])
    lam = opts["lam"]
    if opts["model"] == "onestep":
        model = specs.OneStep(horizon=opts["horizon"], samples=opts["samples"], fresh=opts["fresh"])
        lam = lam if "lam" in opts.get("_given", set()) else "0"  # the model has no regularisation
    else:
        model = _spectral_model(opts)
    grid = specs.Grid(gamma=parse_range("gamma", opts["gamma"]), lam=parse_range("lam", lam, log=False),
                      seeds=opts["seeds"], seed=opts["seed"])
    return data, model, grid


def _spectral_model(opts: dict):
    """--model linear|diffusion -> Linear or LinearDiffusion (diffusion options refused elsewhere)."""
    from .. import specs

    if opts["model"] != "diffusion":
        return specs.Linear(samples=opts["samples"], method=opts["method"])
    fields = {k: opts[k] for k in DIFFUSION_OPTIONS if opts[k] is not None}
    return specs.LinearDiffusion(samples=opts["samples"], **fields)


def _image_specs(opts: dict):
    """--data field|images with --model conv|unet."""
    from .. import specs
    from ..engines.denoisers import ConvDenoiser, ImageField, Images

    if opts["model"] not in DENOISERS:
        raise ValueError(f"--data {opts['data']} needs --model conv or unet")
    if opts["preset"] not in (None, *PRESETS):
        raise ValueError(f"--preset must be one of {', '.join(PRESETS)}, got {opts['preset']!r}")
    preset, given = PRESETS.get(opts["preset"], {}), opts.get("_given", set())

    def pick(name):  # the user's value, else the preset's, else the denoisers' default, else the main job's
        return opts[name] if name in given else preset.get(name, CONV_DEFAULTS.get(name, opts[name]))

    try:
        size = tuple(int(v) for v in str(pick("size")).lower().split("x"))
    except ValueError:
        size = ()
    if len(size) != 2:
        raise ValueError(f"--size must be HxW such as 16x16, got {pick('size')!r}")
    if opts["data"] == "field":
        alphas = parse_range("alpha", pick("alpha"), log=False)
        if len(alphas) > 1:
            raise ValueError(f"--alpha: one exponent for --data field, got {opts['alpha']!r}")
    spikes = () if opts["spikes"] is None else tuple(parse_range("spikes", opts["spikes"], log=False))
    data = (ImageField(size=size, alpha=alphas[0], beta=spikes) if opts["data"] == "field"
            else Images(source=opts["source"], size=size, beta=spikes))
    network = "unet" if opts["model"] == "unet" else "bfcnn"
    net = {k: opts[k] for k in ("width", "depth") if opts[k] is not None}
    if opts["preset"] == "quick":
        model = ConvDenoiser.quick(network, **net)
    elif opts["preset"] == "full":
        if network != "unet":
            raise ValueError("--preset full needs --model unet (the BF-CNN at 16x16 copied its one training image "
                             "only partly: m 0.87 at n = 1)")
        model = ConvDenoiser.full(**net)
    else:
        model = ConvDenoiser(network=network, **net)
    grid = specs.Grid(gamma=parse_range("gamma", pick("gamma")), lam=parse_range("lam", pick("lam"), log=False),
                       seeds=pick("seeds"), seed=opts["seed"])
    return data, model, grid


SPEC_OPTIONS = ("data", "d", "beta", "rank", "spikes", "alpha", "k", "directions", "gamma", "lam", "seeds", "seed",
                 "samples", "model", "preset", "size", "source", "x64", "out", "batch", "theory", "mean", "std",
                 *DIFFUSION_OPTIONS, *MODEL_OPTIONS["onestep"], *MODEL_OPTIONS["linear"], *MODEL_OPTIONS["conv"])


def resume_specs(opts: dict):
    """--resume DIR: the specs (and dtype, batch, theory) come from DIR/spec.json, not the options."""
    given = [f"--{k}" for k in SPEC_OPTIONS if k in opts["_given"]]
    if given:
        raise ValueError(f"--resume takes the spec from the store; drop {', '.join(given)}")
    from ..store import read_spec, specs_of

    try:
        spec = read_spec(opts["resume"])
    except ValueError as e:
        raise ValueError(f"--resume: {e}") from None
    # the batch too is the store's: scan(batch=None, mode="resume") takes it (store.stored_batch)
    opts.update(out=opts["resume"], resume=True, x64=spec.get("dtype") == "float64",
                theory=bool(spec.get("theory", False)))
    return specs_of(spec)
