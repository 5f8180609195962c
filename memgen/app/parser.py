"""The argument parser of the ``memgen`` command: its options, their help, the applicability tags."""

from __future__ import annotations

import argparse

from .options import APPLIES, CONV_DEFAULTS, MODEL_OPTIONS, SCAN_DEFAULTS

DESCRIPTION = "memgen: scan | theory | figures | bench | info."


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line ``memgen: error: ...``, like every other error."""

    def error(self, message):
        self.exit(2, f"memgen: error: {message} (see {self.prog} --help)\n")


def _add_data_options(p: argparse.ArgumentParser, scan: bool) -> None:
    D = SCAN_DEFAULTS
    kinds = ["spiked", "powerlaw", "isotropic", "field", "images"] if scan else ["spiked", "powerlaw", "isotropic"]
    p.add_argument("--data", choices=kinds, help=f"data (default: {D['data']})")
    p.add_argument("--d", type=int, help=f"dimension (default: {D['d']})")
    p.add_argument("--beta", help=f"spike strength; a list sweeps it (default: {D['beta']})")
    p.add_argument("--rank", type=int, help=f"number of equal spikes (default: {D['rank']})")
    p.add_argument("--spikes", help="explicit strengths of several spikes, e.g. 4,2 (default: none; spiked: "
                   "--rank spikes of strength --beta; field|images: planted along smooth bumps, scored by Q)")
    p.add_argument("--alpha", help=f"power-law exponent; a list sweeps it{' (field: spectral exponent)' if scan else ''} "
                   f"(default: {D['alpha']})")
    p.add_argument("--k", type=int, help=f"power law without spikes: top population directions scored by Q "
                   f"(default: {D['k']})")
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
    kinds = ["linear", "diffusion", "onestep", "conv", "unet"] if scan else ["linear", "diffusion", "onestep"]
    p.add_argument("--model", choices=kinds, help="generator: linear (x = (C + lam I)^(1/2) z) or diffusion (a "
                   "linear denoiser sampled as a diffusion model) for spiked|powerlaw|isotropic"
                   + ", onestep (Halder's one-step denoiser) for isotropic"
                   + (", conv (a bias-free CNN denoiser, BF-CNN) or unet (a bias-free UNet) for field|images"
                      if scan else "") + f" (default: {D['model']})")
    if scan:
        p.add_argument("--width", type=int, help="conv, unet: hidden channels (the UNet's finest level; it doubles "
                       "per level) (default: 16)")
        p.add_argument("--depth", type=int, help="conv: 3x3 layers (default: 5); unet: encoder-decoder levels, the "
                       "image side divisible by 2**depth (default: 3)")
    if scan:  # the theory does not depend on it
        p.add_argument("--method", choices=["auto", "eigh", "krylov"], help="linear: apply (C + lam I)^(1/2) through "
                       "one eigh per training set, or matrix-free (Lanczos: m, q, Q, top_eig to ~1e-5, w2 with its "
                       "error w2_err, no kl/kl_rev/h2; spiked|isotropic); auto takes krylov from d = 8192 up "
                       f"(default: {D['method']})")
    p.add_argument("--sampler", choices=["ode", "ddim", "heun", "ddpm"], help="diffusion: exact probability-flow ODE, "
                   "DDIM (Euler), Heun (EDM) or DDPM (ancestral: fresh noise each step, shared by the pair) "
                   f"(default: {D['sampler']})")
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
    p.add_argument("--centre", action="store_true", default=None, help="diffusion: a denoiser with an intercept "
                   "(centred covariance, its mean restored) (default: uncentred, like the linear generator)")
    p.add_argument("--horizon", type=float, help=f"onestep: the forward time T (default: {D['horizon']:g})")
    if scan:  # the theory's limits do not depend on it
        p.add_argument("--fresh", type=int, help="onestep: size of the fresh set of Halder's relative distance "
                       f"(default: {D['fresh']})")


def _mark_applicability(p: argparse.ArgumentParser) -> None:
    """Appends to each data- or model-specific option's help the kinds it applies to, from the
    tables the validation uses (``APPLIES``, ``MODEL_OPTIONS``), so the two cannot drift."""
    for action in p._actions:
        dest = action.dest
        data = [k for k, opts in APPLIES.items() if dest in opts]
        models = [k for k, opts in MODEL_OPTIONS.items() if dest in opts]
        if data and len(data) < len(APPLIES) and action.help:
            action.help += f" [data: {', '.join(data)}]"
        if models and action.help:
            action.help += f" [model: {', '.join(models)}]"


def _variables() -> str:
    """The output part of ``memgen scan --help``, from the one declaration (``memgen.schema``)."""
    from ..schema import VARS

    rows = "\n".join(f"  {name:<13} {var.description}" for name, var in VARS.items())
    return (f"output (DIR/results.nc, an xarray Dataset; plots study.png/.pdf and phase_q.png/.pdf):\n{rows}\n"
            f"  {'<v>_theory':<13} the asymptotic theory of <v> (where one exists; --no-theory to skip)\n"
            "  linear and diffusion models store m, q, w2, m_kad, mem_frac, kl, kl_rev, h2, Q, top_eig;\n"
            "  conv and unet models m, m_heldout, q, q_linear, Q, Q_heldout, Q_jac, Q_jac_heldout, loss and the MSEs per noise level.\n")


def _scan_epilog() -> str:
    rows = "\n".join(f"  {k:<9} " + " ".join(f"--{o}" for o in sorted(v)) for k, v in APPLIES.items())
    return (f"options that depend on --data (the others apply to all; one given to data that does not use it "
            f"is refused):\n{rows}\n  field and images need --model conv or unet; there --lam is the weight decay of "
            f"AdamW.\n\n{_variables()}\nexample:\n  memgen scan --data spiked --beta 2 --d 400 --gamma 0.1:8:24 "
            f"--lam 0,0.01,0.1,1 --seeds 8 --out runs/spiked --theory\n"
            "two processes (here on one host; on two, give process 0's address and a shared --out):\n"
            "  memgen scan --d 12 --gamma 1.25,1.5,2 --lam 0,0.1 --seeds 6 --samples 3 --batch 2 --chunk 1 "
            "--out runs/two --coordinator 127.0.0.1:12355 --num-processes 2 --process-id 1 &\n"
            "  memgen scan --d 12 --gamma 1.25,1.5,2 --lam 0,0.1 --seeds 6 --samples 3 --batch 2 --chunk 1 "
            "--out runs/two --coordinator 127.0.0.1:12355 --num-processes 2 --process-id 0\n")


def build_parser() -> argparse.ArgumentParser:
    D = SCAN_DEFAULTS
    p = _Parser(prog="memgen", description=DESCRIPTION)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("scan", help="simulate a (gamma, lam, seed, ...) grid and store it",
                       description="Simulate a (gamma, lam, seed, ...) grid and write it to a resumable store.",
                       epilog=_scan_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--config", metavar="FILE", help="TOML file whose keys are the long options below, with dashes "
                   "or underscores (resume = \"DIR\"); the command line wins (default: none)")
    _add_data_options(s, scan=True)
    _add_model_options(s, scan=True)
    s.add_argument("--preset", choices=["quick", "full"], help="conv, unet: a scan that shows memorisation -> "
                   "generalisation on a CPU. quick: ConvDenoiser.quick() on 8x8 images (fields: alpha 2), n = 1 ... "
                   "512, minutes; full (unet only): ConvDenoiser.full() on 16x16 images, n = 1 ... 1024. lam 0, 2 seeds, each "
                   "overridden by its own option (default: none, the full-size ConvDenoiser())")
    s.add_argument("--size", help=f"field|images: image size HxW (default: {D['size']})")
    s.add_argument("--source", help="images: .npy/.npz/folder of PNGs, or grace_hopper, disks, calpha, or (memgen[images]) "
                   "digits, faces, brick, grass, gravel "
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
    s.add_argument("--chunk", type=int, help="points per stored chunk, the unit of checkpointing and progress "
                   "(linear models: rounded up to whole units, the loads of a padding bucket for one seed); results do not "
                   "depend on it (default: a few micro-batches per device)")
    s.add_argument("--batch", type=int, help="points evaluated at once per device; stored with the spec, as it "
                   "fixes the arithmetic (default: 1 on a CPU; 8 on an accelerator, conv: 1 pair of denoisers)")
    th = s.add_mutually_exclusive_group()
    th.add_argument("--theory", action="store_true", default=None, help="store the asymptotic theory as "
                    "<var>_theory (default: on where a theory exists, i.e. for spiked and powerlaw data)")
    th.add_argument("--no-theory", dest="theory", action="store_false", default=None, help="do not store the theory (default: stored where it exists)")
    s.add_argument("--no-cache", dest="cache", action="store_false", default=None,
                   help="do not use the persistent compilation cache (default: compiled kernels are kept under "
                   "$MEMGEN_CACHE_DIR, else ~/.cache/memgen/jax, and reused by later runs)")
    s.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                   help="no progress bar (default: a progress bar on stderr)")
    h = s.add_argument_group(
        "many hosts", "P processes (one per host, or several on one host) split the chunks of one scan on JAX's\n"
        "distributed runtime: start every process with the same options, --out on a filesystem they\n"
        "all share, and its own --process-id; process 0 listens at --coordinator, holds the store's\n"
        "lock and writes results.nc. Each option may come from the environment instead:\n"
        "$MEMGEN_COORDINATOR, $MEMGEN_NUM_PROCESSES, $MEMGEN_PROCESS_ID (the command line wins).\n"
        "Results are bit-identical to one process; --resume works with any process count.")
    h.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0, which every process can "
                   "reach (default: $MEMGEN_COORDINATOR, else one process, no distributed runtime)")
    h.add_argument("--num-processes", dest="num_processes", metavar="P", help="how many processes run the scan "
                   "(default: $MEMGEN_NUM_PROCESSES)")
    h.add_argument("--process-id", dest="process_id", metavar="I", help="this process's index, 0..P-1 "
                   "(default: $MEMGEN_PROCESS_ID)")

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
                   "(order_parameters, phase_diagrams, latent_recovery, powerlaw, spectra, denoisers, denoiser_spikes, "
                   "benchmark, linear_diffusion, halder)")
    mode = f.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick", help="d = 200 (default)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full", help="the paper-sized set")

    sub.add_parser("info", help="devices and versions")
    sub.add_parser("bench", help="the versioned accelerator benchmark suite (see memgen bench --help)",
                   add_help=False)
    return p
