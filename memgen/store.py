"""Results on disk: chunk files written atomically, resume, and labelled xarray Datasets.

A store is a directory::

    DIR/spec.json            what produced it (data, model, grid, dtype); checked on resume
    DIR/chunks/*.npz         one file per finished chunk: flat point indices + every variable
    DIR/results.nc           the assembled Dataset (netCDF), written when the scan completes

Each chunk file is written to a temporary name and renamed (atomic on POSIX), so a scan killed
at any moment leaves only whole chunks; ``--resume`` recomputes only the points no chunk holds.
Because every random draw depends on a point's coordinates alone, the resumed result is
bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import io
import json
import os
import shutil
import socket
import uuid
import warnings
import zipfile
from pathlib import Path

import numpy as np
import xarray as xr

from . import engines, schema, specs
from . import theory as theory_mod
from .schema import SPEC_ATTR

RESULTS = "results.nc"


def spec_dict(data, model, grid, dtype, batch: int | None = None, theory: bool = False,
              arithmetic: int = 1) -> dict:
    """Everything that fixes the numbers: specs, dtype and the micro-batch (see grid.plan);
    whether the store carries the theory (``"theory": true``, absent otherwise); and the
    engine's ``arithmetic`` revision (``Engine.arithmetic``; absent at 1), so that a store is
    never finished by kernels that round differently from those that began it."""
    out = {"data": specs.to_dict(data), "model": specs.to_dict(model), "grid": specs.to_dict(grid),
           "dtype": str(np.dtype(dtype))}
    if batch is not None:
        out["batch"] = batch
    if theory:
        out["theory"] = True
    if arithmetic != 1:
        out["arithmetic"] = arithmetic
    return out


def stored_batch(path: str | os.PathLike) -> int | None:
    """The micro-batch a store at ``path`` was written with, or None (no store there, or none
    recorded): what ``scan(batch=None, mode="resume")`` resumes with, so that a store written
    under another default (8 on a CPU before 2026-12-02) finishes with its own arithmetic."""
    if not (Path(path) / SPEC).is_file():
        return None
    batch = read_spec(path).get("batch")
    return batch if isinstance(batch, int) and not isinstance(batch, bool) else None


def specs_of(spec: dict) -> tuple:
    """(data, model, grid) of a spec dict (``spec_dict``'s inverse)."""
    return tuple(specs.from_dict(spec[k]) for k in ("data", "model", "grid"))


def spec_from_attrs(ds: xr.Dataset):
    """(data, model, grid) rebuilt from a Dataset's attrs."""
    return specs_of(json.loads(ds.attrs[SPEC_ATTR]))


MARKER = ".memgen-store"  # written when memgen creates a store: only then may --overwrite delete it
LOCK = ".memgen-lock"  # flock'ed by the one process writing the store
SPEC = "spec.json"
CHUNKS = "chunks"
# What memgen writes into a store: --overwrite deletes these and refuses anything else.
OWN = (MARKER, LOCK, SPEC, CHUNKS, RESULTS, "study.png", "study.pdf", "phase_*.png", "phase_*.pdf")


class StoreWarning(UserWarning):
    """A chunk file that cannot be read (truncated, empty, bad CRC): skipped or recomputed."""


def spec_hash(spec: dict) -> str:
    """Hash of everything that fixes the numbers of a store (the ``theory`` flag does not)."""
    numeric = {k: v for k, v in spec.items() if k != "theory"}
    return hashlib.sha256(json.dumps(numeric, sort_keys=True).encode()).hexdigest()[:16]


def read_spec(path: str | os.PathLike) -> dict:
    """The spec.json of store ``path``, validated (ValueError naming the file and the defect)."""
    f = Path(path) / SPEC
    if not f.is_file():
        raise ValueError(f"{str(path)!r} is not a memgen store (no {SPEC})")
    try:
        spec = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{f}: not readable ({e})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{f}: invalid JSON at line {e.lineno}, column {e.colno} ({e.msg})") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{f}: not a JSON object")
    missing = [k for k in ("data", "model", "grid") if k not in spec]
    if missing:
        raise ValueError(f"{f}: missing key {', '.join(repr(k) for k in missing)}")
    try:
        specs_of(spec)
        np.dtype(spec["dtype"])
    except KeyError as e:
        raise ValueError(f"{f}: missing key {e}") from None
    except (ValueError, TypeError, AttributeError) as e:
        raise ValueError(f"{f}: {e}") from None
    return spec


def _own(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pat) for pat in OWN)


class Store:
    """A results directory being written (or resumed) by this process, and only this one - or
    by the processes of one distributed scan (``join``).

    Use as a context manager: the store is locked (an OS file lock on ``DIR/.memgen-lock``,
    released by the OS if the process dies, so a killed scan never blocks ``--resume``) from
    construction until ``close``. A second writer is refused while the first lives. The lock
    file holds the holder's session token (and pid, host, process count): the other processes
    of a distributed scan ``join`` the store only with that token, which process 0 made and
    sent them, and check it again before every chunk they write.

    Args:
        session: the token written into the lock file (default: a fresh one).
        processes: how many processes write this store (process 0 holds the lock).
    """

    def __init__(self, path: str | os.PathLike, spec: dict, *, mode: str = "new", session: str | None = None,
                 processes: int = 1):
        overwrite, resume = mode == "overwrite", mode == "resume"
        self._setup(path, spec, session or uuid.uuid4().hex, rank=None)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"out={str(self.path)!r} is a file, not a store directory; choose another out")
        if resume and not (self.path / SPEC).exists():
            raise ValueError(f"resume: nothing to resume at {str(self.path)!r} (no memgen store there)")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ValueError(f"out={str(self.path)!r}: cannot write there ({e.strerror})") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise ValueError(f"out={str(self.path)!r} is being written by another memgen process{_holder(self.path)}; "
                             "wait for it to finish, or choose another out") from None
        try:
            info = {"session": self.session, "pid": os.getpid(), "host": socket.gethostname(), "processes": processes}
            os.ftruncate(self._lock, 0)
            os.pwrite(self._lock, json.dumps(info).encode(), 0)
            os.fsync(self._lock)
            self._open(overwrite, resume)
        except BaseException:
            self.close()
            raise

    def _setup(self, path, spec: dict, session: str, rank: int | None) -> None:
        self.path = Path(path)
        self.spec = spec
        self.hash = spec_hash(spec)
        self.chunks = self.path / CHUNKS
        self.session = session
        self.rank = rank  # None: the lock holder; else the process of a distributed scan that joined
        self._lock = None

    @classmethod
    def join(cls, path: str | os.PathLike, spec: dict, *, session: str, rank: int) -> "Store":
        """The store that process 0 of a distributed scan holds (``Store(..., session=...)``), for
        process ``rank``: admitted only while its lock file holds ``session``, and only for
        ``spec``. It writes chunks; process 0 alone deletes, sets aside and assembles.

        Raises:
            ValueError: no store there (``path`` is not on a filesystem every process shares),
                another spec, or another session (an independent scan holds it).
        """
        self = cls.__new__(cls)
        self._setup(path, spec, session, rank)
        if not (self.path / SPEC).is_file():
            raise ValueError(f"out={str(self.path)!r}: process {rank} does not see the store that process 0 "
                             "created; out must be a directory every process shares (a network filesystem)")
        if read_spec(self.path) != spec:
            raise ValueError(f"out={str(self.path)!r}: process {rank} was given another spec than process 0; "
                             "start every process with the same options")
        self._check_session()
        self.chunks.mkdir(exist_ok=True)
        return self

    def _check_session(self) -> None:
        """Joined processes: refuses to write unless the lock file still holds our session."""
        if self.rank is None:
            return
        if _lock_info(self.path).get("session") != self.session:
            raise ValueError(f"out={str(self.path)!r} is no longer held by this distributed scan (another memgen "
                             f"process took it{_holder(self.path)}); process {self.rank} stops writing")

    def _open(self, overwrite: bool, resume: bool) -> None:
        entries = sorted(p.name for p in self.path.iterdir() if p.name != LOCK)
        if entries and overwrite:
            if not (self.path / MARKER).exists():
                raise ValueError(f"overwrite: {str(self.path)!r} is not a store memgen created (no {MARKER}); "
                                 "refusing to delete it, choose another out")
            read_spec(self.path)
            foreign = [e for e in entries if not _own(e)]
            if foreign:
                raise ValueError(f"overwrite: refusing to delete {str(self.path / foreign[0])!r}, which memgen "
                                 "did not write; move it away or choose another out")
            for e in entries:
                p = self.path / e
                shutil.rmtree(p) if p.is_dir() else p.unlink()
            entries = []
        if entries and not resume:
            raise ValueError(f"out={str(self.path)!r} exists and is not empty; pass mode='overwrite' "
                             "(--overwrite) to replace it or mode='resume' (--resume) to finish it")
        if entries:  # resume
            old = read_spec(self.path)
            if old != self.spec:
                diff = [k for k in sorted(set(old) | set(self.spec)) if old.get(k) != self.spec.get(k)]
                if diff == ["arithmetic"]:
                    raise ValueError(
                        f"resume: the store at {str(self.path)!r} was begun by another memgen, whose kernels round "
                        f"differently (arithmetic revision {old.get('arithmetic', 1)}, this memgen's "
                        f"{self.spec.get('arithmetic', 1)}); finish it with that version, or use --overwrite or "
                        "another --out")
                raise ValueError(f"resume: the store at {str(self.path)!r} was written by another spec "
                                 f"(differs in {', '.join(diff)}); use --overwrite or another --out")
            for tmp in self.path.glob("**/*.tmp"):  # half-written by a killed writer: we hold the lock
                tmp.unlink()
        if not (self.path / MARKER).exists():
            _atomic_write(self.path / MARKER, json.dumps({"memgen_store": 1}).encode())
        if not (self.path / SPEC).exists():
            _atomic_write(self.path / SPEC, json.dumps(self.spec, indent=1).encode())
        self.chunks.mkdir(exist_ok=True)

    def close(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def write_chunk(self, index: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """One finished chunk, atomically, tagged with the spec's hash (and, from a process of a
        distributed scan, named after it: ``c<first point>-p<process>-<random>.npz``)."""
        self._check_session()
        buf = io.BytesIO()
        np.savez(buf, index=index, spec_hash=np.array(self.hash), **values)
        who = "" if self.rank is None else f"p{self.rank}-"
        _atomic_write(self.chunks / f"c{int(index[0]):09d}-{who}{uuid.uuid4().hex[:8]}.npz", buf.getvalue())

    def read(self, engine, size: int) -> tuple[dict, np.ndarray]:
        """(flat arrays, done mask) of the chunks on disk; corrupt chunks are set aside to be recomputed."""
        return read_chunks(self.path, empty(engine, size), self.hash, set_aside=self.rank is None)

    def finish(self, ds: xr.Dataset) -> None:
        if self.rank is not None:
            raise RuntimeError("only the store's lock holder (process 0) assembles results.nc")
        tmp = _tmp_name(self.path / RESULTS)
        ds.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, self.path / RESULTS)


def _lock_info(path: Path) -> dict:
    """What the lock file says of its holder ({} when empty or unreadable)."""
    try:
        info = json.loads((Path(path) / LOCK).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _holder(path: Path) -> str:
    """`` (pid N on HOST, one of P processes)``, or ``""`` when the lock file does not say."""
    info = _lock_info(path)
    if not {"pid", "host"} <= set(info):
        return ""
    many = f", process 0 of a scan over {info['processes']} processes" if info.get("processes", 1) > 1 else ""
    return f" (pid {info['pid']} on {info['host']}{many})"


def _tmp_name(path: Path) -> Path:
    """A temporary name beside ``path``, unique to this process and call."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _atomic_write(path: Path, payload: bytes) -> None:
    tmp = _tmp_name(path)
    with open(tmp, "wb") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def empty(engine, size: int) -> dict[str, np.ndarray]:
    """NaN arrays [size, *trailing] of the engine's dtype, one per declared variable."""
    return {k: np.full((size, *(len(engine.coords[d]) for d in dims)), np.nan, engine.dtype)
            for k, dims in engine.variables.items()}


def read_chunks(path: Path, flat: dict[str, np.ndarray], expect: str,
                set_aside: bool = False) -> tuple[dict, np.ndarray]:
    """Fills ``flat`` (arrays [size, *trailing], NaN) from every chunk file; returns it and the done mask.

    A chunk that cannot be read is named in a ``StoreWarning`` and skipped (``set_aside``:
    moved to ``chunks/corrupt/`` so that its points are recomputed, and nothing is deleted).
    A chunk computed for another spec (its hash is not ``expect``) raises ValueError: the store
    is inconsistent, and mixing it in would relabel numbers silently.
    """
    size = len(next(iter(flat.values())))
    done = np.zeros(size, bool)
    for f in sorted((Path(path) / CHUNKS).glob("*.npz")):
        try:
            with open(f, "rb") as fh, np.load(fh) as z:  # our handle: np.load leaks its own on a bad zip
                tag = str(z["spec_hash"]) if "spec_hash" in z.files else None
                idx = np.asarray(z["index"])
                vals = {k: np.asarray(z[k]) for k in flat}
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:
            what = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            if set_aside:
                (f.parent / "corrupt").mkdir(exist_ok=True)
                os.replace(f, f.parent / "corrupt" / f.name)
                warnings.warn(f"{f}: unreadable chunk ({what}); moved to {f.parent / 'corrupt'} and its points "
                              "will be recomputed", StoreWarning, stacklevel=2)
            else:
                warnings.warn(f"{f}: unreadable chunk ({what}); skipped (NaN), --resume recomputes it",
                              StoreWarning, stacklevel=2)
            continue
        ok = tag == expect and idx.ndim == 1 and (idx.size == 0 or (idx.min() >= 0 and idx.max() < size))
        ok = ok and all(v.shape == (idx.size, *flat[k].shape[1:]) for k, v in vals.items())
        if not ok:
            raise ValueError(f"{f} was computed for another spec than {Path(path) / SPEC} (spec hash {tag}, "
                             f"expected {expect}): the store is inconsistent; move that chunk away or --overwrite")
        for k, v in vals.items():
            flat[k][idx] = v
        done[idx] = True
    return flat, done


def load(path: str | os.PathLike) -> xr.Dataset:
    """Reads a store, by its directory or its ``results.nc``: the finished results, or a partial
    store (NaN where not yet computed; ``attrs["complete"] == 0``; unreadable chunks skipped
    with a ``StoreWarning``).

    Raises:
        ValueError: ``path`` is not a memgen store, or its files belong to different specs.
    """
    path = Path(path)
    if path.name == RESULTS and path.is_file():
        path = path.parent
    if not path.is_dir():
        raise ValueError(f"load: {str(path)!r} is not a memgen store directory")
    try:
        spec = read_spec(path)
    except ValueError as e:
        raise ValueError(f"load: {e}") from None
    if (path / RESULTS).exists():
        try:
            with xr.open_dataset(path / RESULTS, engine="h5netcdf") as ds:
                ds = ds.load()
        except (OSError, ValueError) as e:
            raise ValueError(f"load: {path / RESULTS} is not readable ({e}); delete it and --resume to rebuild it") \
                from None
        stored = ds.attrs.get(SPEC_ATTR)
        if stored is None or spec_hash(json.loads(stored)) != spec_hash(spec):
            raise ValueError(f"load: {path / RESULTS} was not written for {path / SPEC} (another spec); "
                             "the store is inconsistent")
        return ds
    engine = _engine(spec)
    flat, done = read_chunks(path, empty(engine, engines.point_count(engine)), spec_hash(spec))
    ds = assembler(engine, spec)(flat)
    ds.attrs["complete"] = int(done.all())
    return ds


def _engine(spec: dict):
    return engines.build(*specs_of(spec), spec["dtype"])


def assembler(engine, spec: dict, theory: xr.Dataset | None = None):
    """flat arrays -> the store's Dataset (``schema.assemble``), with the theory when the spec
    asks for it (``theory``, or computed from the spec)."""
    if spec.get("theory") and theory is None:
        theory = theory_mod.theory(engine.data, engine.grid, engine.model)

    def assemble(flat):
        ds = schema.assemble(engine, flat, spec)
        return ds if theory is None else attach_theory(ds, theory)

    return assemble


def attach_theory(ds: xr.Dataset, th: xr.Dataset) -> xr.Dataset:
    """Adds theory variables as ``<v>_theory`` on the scan's coordinates."""
    extra = {f"{k}_theory": v.reindex_like(ds, method=None) for k, v in th.data_vars.items()}
    return schema.annotate(ds.assign(extra))
