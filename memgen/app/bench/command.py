"""``memgen bench``: its arguments and ``main``."""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import sys
from pathlib import Path

from .report import compare, format_table, load
from .suite import DEFAULT_CAP_S, SIZES, run_suite

DESCRIPTION = "memgen bench: a fixed, versioned accelerator benchmark suite, JSON record plus table."


def _sizes(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        out = ()
    if not out or min(out) < 8:
        raise argparse.ArgumentTypeError(
            f"expected a comma list of integers >= 8 such as 128,256, got {text!r}")
    return out


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return v


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="memgen bench", description=DESCRIPTION)
    p.add_argument("--quick", action="store_true",
                   help="d in (128, 256), repeat <= 3, K = 8 (< 2 min on 2 CPU cores)")
    p.add_argument("--sizes", type=_sizes, default=SIZES,
                   help="linear-scan sizes d, e.g. 128,256 (default all)")
    p.add_argument("--repeat", type=_positive_int, default=5,
                   help="steady-state repeats per item (default 5)")
    p.add_argument("--cap", type=_positive_float, default=DEFAULT_CAP_S,
                   help=f"per-item time cap in seconds; larger sizes are skipped (default {DEFAULT_CAP_S:g})")
    p.add_argument("--out", help="JSON record path (default bench-<platform>-<time>.json)")
    p.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                   help="print throughput ratios B/A and exit")
    return p


def main(argv=None) -> int:
    """``memgen bench [--quick] [--sizes 128,256] [--repeat N] [--cap S] [--out F] [--compare A B]``.

    Returns the exit status: 0 on success, 2 on bad arguments (one clear line on stderr).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    p = parser()
    try:
        a = p.parse_args(argv)
    except SystemExit as e:  # argparse has printed usage and the error (or --help)
        return int(e.code or 0)
    if a.compare:
        try:
            ra, rb = load(a.compare[0]), load(a.compare[1])
        except ValueError as e:
            print(f"memgen bench: error: --compare: {e}", file=sys.stderr)
            return 2
        print(compare(ra, rb))
        return 0
    out = a.out
    if out is None:
        import jax

        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = f"bench-{jax.default_backend()}-{stamp}.json"
    if Path(out).is_dir():
        print(f"memgen bench: error: --out {out!r} is a directory; give a file name", file=sys.stderr)
        return 2
    try:
        rec = run_suite(sizes=a.sizes, quick=a.quick, repeat=a.repeat, out=out, cap_s=a.cap)
    except ValueError as e:
        print(f"memgen bench: error: {e}", file=sys.stderr)
        return 2
    print(format_table(rec))
    print(f"wrote {out}")
    return 0
