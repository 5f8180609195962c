"""``memgen.scan``: validate, plan, run chunk by chunk, store, assemble - for any engine.

Contract: the one entry point a user calls. Validation happens here and in the engine's
constructor, before any compute; batching and devices are ``memgen.run``'s; files are
``store``'s; what a point is belongs to the engine (``memgen.engines``).
"""

from __future__ import annotations

import base64
import contextlib
import os
import sys
from functools import partial

import jax
import numpy as np
import xarray as xr

from . import engines
from . import store as store_mod
from . import theory as theory_mod
from .specs import Grid, Linear
from .run import loop, multihost
from .run.plan import for_devices, plan

_PARSE_MEMORY = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9,
                 "T": 1e12, "TB": 1e12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
MODES = ("new", "overwrite", "resume")


def parse_memory(value) -> int:
    """'4GB', '512MiB', 1e9 -> bytes (int > 0)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        num, unit = float(value), ""
    else:
        s = str(value).strip().upper().replace(" ", "")
        i = len(s) - len(s.lstrip("0123456789.e+-E"))
        num_s, unit = s[:i], s[i:]
        try:
            num = float(num_s)
        except ValueError:
            num = -1.0
    if unit not in _PARSE_MEMORY or not np.isfinite(num) or num * _PARSE_MEMORY.get(unit, 0) < 1:
        raise ValueError(f"memory must be a positive size such as 4GB or 512MiB, got {value!r}")
    return int(num * _PARSE_MEMORY[unit])


def enable_x64() -> None:
    """Turns on float64 for the whole program: call it at the start, before creating arrays
    (JAX's x64 mode is one global setting). Then ``scan(..., dtype="float64")`` works."""
    jax.config.update("jax_enable_x64", True)


def check_dtype(dtype) -> np.dtype:
    """float32 or float64; float64 only in JAX's x64 mode (ValueError otherwise)."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.dtype("float32"), np.dtype("float64")):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    if dt == np.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype=float64 needs JAX's x64 mode: call memgen.enable_x64() (or set JAX_ENABLE_X64=1) "
                         "at the start of the program; memgen never flips it for you")
    return dt


def check_run_options(chunk, batch, mode) -> None:
    """Validates the run options (ValueError naming the option)."""
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


def scan(data, model=None, grid: Grid | None = None, *, out: str | os.PathLike | None = None,
         dtype="float32", memory=None, chunk: int | None = None, batch: int | None = None, mode: str = "new",
         progress: bool = True, theory: bool = False) -> xr.Dataset:
    """Order parameters over a whole grid, for any model kind.

    Args:
        data: ``Spiked`` or ``PowerLaw`` (linear model), ``ImageField`` or ``Images``
            (denoisers).
        model: ``Linear`` (default) or ``ConvDenoiser``.
        grid: ``Grid`` (default ``Grid()``).
        out: store directory, written chunk by chunk (None: in memory only).
        dtype: ``"float32"`` (default) or ``"float64"`` (needs JAX's x64 mode, see
            ``memgen.enable_x64``; memgen never changes JAX's global configuration).
        memory: budget for what one device holds at once, bytes or '4GB' (default: from the
            device).
        chunk: points per stored chunk, the unit of checkpointing and progress; stored
            exactly, or rounded up to whole units where an engine computes several points
            together (the linear engine's eigh route: a bucket's loads of one seed); default: a few
            micro-batches per device.
        batch: points evaluated at once per device (a point is a pair of models). Results
            are bit-identical for any chunk size, device count and resume history at equal
            batch; a batch over ``memory`` is refused before compute. Default: on resume,
            the store's; else ``default_batch``, 1 on a CPU and the engine's on an accelerator
            (8; denoisers 1).
        mode: what to do with ``out``: ``"new"`` (refuse a non-empty one), ``"overwrite"``
            (delete only a store memgen created, and only what memgen wrote into it) or
            ``"resume"`` (compute only the points its chunks lack).
        progress: show a progress bar.
        theory: also store the asymptotic theory as ``<var>_theory`` (computed before the
            scan starts, so a theory error never arrives after the compute; kept on resume).

    Several processes: when the caller has started JAX's distributed runtime
    (``jax.distributed.initialize``, so that ``jax.process_count() > 1``), every process
    calls ``scan`` with the same arguments and an ``out`` that all of them see (a shared
    filesystem). They split the chunks (each runs its share on its own local devices and
    writes its own chunk files; process 0 holds the store's lock and writes results.nc), and
    every process returns the same Dataset, bit-identical to a one-process scan of the same
    spec. ``mode="resume"`` works with any number of processes. An error in one process
    stops the others with its message (``memgen.run.multihost.ProcessFailed``).

    Returns:
        ``xarray.Dataset`` with dims in canonical order ``(beta|alpha)?, gamma, lam, seed,
        sigma?``; variables as declared by the engine (see ``memgen.schema.VARS``). Linear: m,
        q, w2, m_kad, mem_frac [..., gamma, lam, seed] and Q, top_eig [..., gamma, seed].
        Denoisers: m, m_heldout, q, q_linear, Q, Q_heldout, Q_jac, Q_jac_heldout, loss [gamma, lam, seed]
        and mse, mse_wiener, mse_empirical [gamma, lam, seed, sigma].

    Raises:
        ValueError: on any invalid input, before compute.
        FloatingPointError: a non-finite order parameter, naming its grid coordinates.
        memgen.run.multihost.ProcessFailed: another process of a distributed scan failed.
    """
    model = Linear() if model is None else model
    grid = Grid() if grid is None else grid
    with multihost.session() as session:  # several JAX processes: an error here stops them all
        check_run_options(chunk, batch, mode)
        if session is not None and out is None:
            raise ValueError(f"out: a scan over {session.size} processes writes its chunks into one store; pass "
                             "out= (--out), a directory every process sees")
        dt = check_dtype(dtype)
        engine = engines.build(data, model, grid, dt)
        if batch is None and mode == "resume" and out is not None:  # the batch the store was written with
            batch = store_mod.stored_batch(out)
        batch = default_batch(engine) if batch is None else batch
        budget = None if memory is None else parse_memory(memory)
        th = theory_mod.theory(data, grid, model) if theory else None  # fails before any compute
        engine.validate()
        run = execute if session is None else partial(distributed, session)
        return run(engine, out=out, memory=budget, chunk=chunk, batch=batch, progress=progress, mode=mode,
                   theory=th)


def default_batch(engine) -> int:
    """The micro-batch of ``scan(batch=None)``: 1 on a CPU, ``engine.batch`` on an accelerator.

    On a CPU a vmap over points buys no parallelism (the devices are the cores, and LAPACK
    calls loop one matrix at a time anyway: ``linalg``) and costs compile time and memory:
    measured on 2 cores (``memgen scan`` with and without ``--batch 1``), the main job compiled
    in 2.8 s instead of 5.0 and computed in 1.5 s instead of 2.5; the README's one-step scan
    6.7 s and 1.8 s instead of 13.3 s and 2.6 s; the linear scan at d = 1024 (5 gamma x 4 lam x
    4 seeds, one device) ran in 6.3 s instead of 8.4. (At d = 256 on one device a batch of 8
    ran 15% faster.) On a GPU the vmap is what fills the device. The choice follows the
    platform, never the device count: the same spec gives the same numbers on 1 or many CPU
    devices.
    """
    return 1 if jax.default_backend() == "cpu" else engine.batch


def execute(engine, *, out, memory, chunk, batch, progress, mode, theory: xr.Dataset | None = None) -> xr.Dataset:
    """Plan (refusing what does not fit, before compute), then run the missing chunks into the store."""
    spec = store_mod.spec_dict(engine.data, engine.model, engine.grid, engine.dtype, batch, theory=theory is not None,
                                arithmetic=engine.arithmetic)
    size = engines.point_count(engine)
    devices = jax.local_device_count()

    def chunks(done):
        return plan(engine, itemsize=engine.dtype.itemsize, batch=batch, devices=devices, memory=memory,
                    chunk=chunk, done=done)

    todo = chunks(None)  # memory errors before the store is touched
    runner = loop.Runner(engine)
    assemble = store_mod.assembler(engine, spec, theory)
    if out is None:
        flat = store_mod.empty(engine, size)
        with loop.interruptible():
            for c, res in loop.run_chunks(runner, todo, progress=progress):
                for k, v in res.items():
                    flat[k][c.index] = v
        return _timed(assemble(flat), runner)
    with store_mod.Store(out, spec, mode=mode) as store:
        flat, done = store.read(engine, size)  # resumed points come from disk, once
        try:
            with loop.interruptible():  # Ctrl-C acts between whole chunk writes, never lost
                for c, res in loop.run_chunks(runner, chunks(done), progress=progress):
                    store.write_chunk(c.index, res)
                    for k, v in res.items():
                        flat[k][c.index] = v
        except KeyboardInterrupt:
            print(f"\ninterrupted: finished chunks are saved; continue with --resume {out}", file=sys.stderr)
            raise
        ds = assemble(flat)
        store.finish(ds)
    return _timed(ds, runner)


def distributed(session, engine, *, out, memory, chunk, batch, progress, mode,
                theory: xr.Dataset | None = None) -> xr.Dataset:
    """``execute`` for one of the processes of a JAX distributed runtime (``memgen.run.multihost``).

    Process 0 opens the store (the lock, the new/overwrite/resume checks, corrupt chunks set
    aside), reads what is done and publishes a fresh session token, the spec's hash and the
    done mask; the others join the store with that token (``Store.join``). Every process then
    plans the same chunks (laid out for the largest local device count), takes its contiguous,
    cost-balanced share (``multihost.assign``), runs it on its own local devices and writes its
    own chunk files. After a barrier, process 0 reads every chunk, checks that no point is
    missing, writes results.nc and tells the others, which read it back: every process returns
    the Dataset. Process 0 shows the progress of its own share.
    """
    spec = store_mod.spec_dict(engine.data, engine.model, engine.grid, engine.dtype, batch, theory=theory is not None,
                                arithmetic=engine.arithmetic)
    size = engines.point_count(engine)
    counts = multihost.local_counts()
    rank, nproc = session.rank, session.size

    def chunks(done):
        return plan(engine, itemsize=engine.dtype.itemsize, batch=batch, devices=max(counts), memory=memory,
                    chunk=chunk, done=done)

    chunks(None)  # memory errors before the store is touched
    runner = loop.Runner(engine)
    with contextlib.ExitStack() as stack:
        if rank == 0:
            store = stack.enter_context(store_mod.Store(out, spec, mode=mode, session=multihost.new_token(),
                                                        processes=nproc))
            _, done = store.read(engine, size)
            session.publish("open", {"session": store.session, "hash": store.hash,
                                     "done": base64.b64encode(np.packbits(done)).decode()})
        opened = session.wait("open")
        if opened["hash"] != store_mod.spec_hash(spec):
            raise ValueError(f"process {rank} was given another spec than process 0 (spec hash "
                             f"{store_mod.spec_hash(spec)}, process 0's {opened['hash']}); start every process with "
                             "the same options")
        if rank != 0:
            store = stack.enter_context(store_mod.Store.join(out, spec, session=opened["session"], rank=rank))
        done = np.unpackbits(np.frombuffer(base64.b64decode(opened["done"]), np.uint8), count=size).astype(bool)
        todo = chunks(done)
        owner = multihost.assign([len(c.index) * engine.point_bytes(c.bucket, 4) for c in todo], counts)
        mine = [for_devices(c, len(runner.devices)) for c, p in zip(todo, owner) if p == rank]
        try:
            with loop.interruptible():  # Ctrl-C acts between whole chunk writes, never lost
                for c, res in loop.run_chunks(runner, mine, progress=progress and rank == 0,
                                              desc=f"memgen scan (process 0 of {nproc})"):
                    store.write_chunk(c.index, res)
                    session.check()  # another process failed: stop here too
                session.barrier("computed")
        except KeyboardInterrupt:
            print(f"\ninterrupted: finished chunks are saved; continue with --resume {out}", file=sys.stderr)
            raise
        except multihost.ProcessFailed as e:
            raise multihost.ProcessFailed(f"{e}; finished chunks are saved, continue with --resume {out}") from None
        if rank == 0:
            flat, done = store.read(engine, size)
            if not done.all():
                raise ValueError(f"out={str(out)!r}: {int((~done).sum())} points are missing after every process "
                                 f"finished (a chunk lost on the shared filesystem?); continue with --resume {out}")
            ds = store_mod.assembler(engine, spec, theory)(flat)
            store.finish(ds)
            session.publish("finished", True)
        else:
            session.wait("finished")
    if rank != 0:
        ds = store_mod.load(out)
    ds.attrs.update(process_index=rank, process_count=nproc, chunks_computed=len(mine))
    return _timed(ds, runner)


def _timed(ds: xr.Dataset, runner) -> xr.Dataset:
    """Records this run's compile and compute seconds (``memgen scan`` prints them)."""
    ds.attrs.update(compile_seconds=round(runner.compile_seconds, 2), compute_seconds=round(runner.compute_seconds, 2))
    return ds


__all__ = ["scan", "enable_x64", "parse_memory", "MODES"]
