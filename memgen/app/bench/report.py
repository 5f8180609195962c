"""Bench records: write, load, the table, the comparison of two records."""

from __future__ import annotations

import json
import math
from pathlib import Path

def write(record: dict, path) -> None:
    """Writes the record as indented JSON (parent folders created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(record, indent=1) + "\n")


def load(path) -> dict:
    """Reads a record; ValueError if it is not one."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"no such file {str(path)!r}")
    try:
        rec = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not JSON ({e})") from None
    if not isinstance(rec, dict) or "suite_version" not in rec or "results" not in rec:
        raise ValueError(f"{path} is not a memgen bench record (no suite_version/results)")
    return rec


# ------------------------------------------------------------------------------ output


def _fmt(v, spec=".4g") -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _floor_note(r: dict) -> str:
    """Why a linear item has no floor, or that the floor and the scan used different devices."""
    if r.get("floor_error"):
        return f"  no floor: {r['floor_error']}"
    fd, sd = r.get("floor_devices"), r.get("scan_devices")
    if fd is not None and sd is not None and fd != sd:
        return f"  floor on {fd} device(s), scan on {sd}"
    return ""


def format_table(record: dict) -> str:
    """The record as a plain-text table, one line per item."""
    env = record["env"]
    lines = [f"memgen bench v{record['suite_version']}  {record['timestamp']}  device {env['device']}  "
             f"({env['host_cores']} host cores)  jax {env['jax']}  memgen {env['memgen']}  "
             f"{env['dtype']}, precision {env['matmul_precision']}",
             f"{'item':16s} {'work':>22s} {'compile [s]':>11s} {'median [s]':>10s} {'min [s]':>9s} "
             f"{'throughput':>12s} {'unit':14s} {'floor [s]':>9s} {'floor frac':>10s}"]
    for name, r in record["results"].items():
        if "skipped" in r:
            lines.append(f"{name:16s} skipped: {r['skipped']}")
            continue
        if name.startswith("linear_"):
            work = f"{r['points']} pts ({len(r['gamma'])}g x {len(r['lam'])}l x {r['seeds']}s)"
            lines.append(f"{name:16s} {work:>22s} {_fmt(r['compile_s'], '.3g'):>11s} "
                         f"{_fmt(r['run_median_s']):>10s} "
                         f"{_fmt(r['run_min_s']):>9s} {_fmt(r['throughput']):>12s} {r['unit']:14s} "
                         f"{_fmt(r.get('floor_s')):>9s} {_fmt(r.get('floor_fraction'), '.3f'):>10s}"
                         + _floor_note(r))
        elif name.startswith("lam_axis"):
            t1, tL = r["run_median_s"]
            work = f"d={r['d']}, 1 vs {r['lams'][1]} lams"
            lines.append(f"{name:16s} {work:>22s} {_fmt(max(r['compile_s']), '.3g'):>11s} {_fmt(tL):>10s} "
                         f"{'':>9s} {_fmt(r['throughput']):>12s} {r['unit']:14s}  "
                         f"time ratio {r['time_ratio']:.3g} "
                         f"(1 lam: {t1:.4g} s)")
        else:
            work = (f"{r['shape'][0]}x{r['shape'][1]} grid" if name == "theory"
                    else f"K={r['K']} x {r['steps']} steps")
            lines.append(f"{name:16s} {work:>22s} {_fmt(r['compile_s'], '.3g'):>11s} "
                         f"{_fmt(r['run_median_s']):>10s} "
                         f"{_fmt(r['run_min_s']):>9s} {_fmt(r['throughput']):>12s} {r['unit']:14s}")
    return "\n".join(lines)


def compare(a: dict, b: dict) -> str:
    """Throughput ratios b / a per item present in both (> 1: b is faster)."""
    da, db = a["env"]["device"], b["env"]["device"]
    lines = [f"a: {da}  ({a['timestamp']}, jax {a['env']['jax']}, memgen {a['env']['memgen']})",
             f"b: {db}  ({b['timestamp']}, jax {b['env']['jax']}, memgen {b['env']['memgen']})"]
    if a["suite_version"] != b["suite_version"]:
        lines.append(f"warning: suite versions differ ({a['suite_version']} vs {b['suite_version']}); "
                     "items may not measure the same work")
    lines.append(f"{'item':16s} {'a':>12s} {'b':>12s} {'unit':14s} {'b/a':>8s}  floor frac a -> b")
    for name in list(a["results"]) + [k for k in b["results"] if k not in a["results"]]:
        ra, rb = a["results"].get(name, {}), b["results"].get(name, {})
        ta, tb = ra.get("throughput"), rb.get("throughput")
        unit = ra.get("unit") or rb.get("unit") or ""
        ratio = _fmt(tb / ta, ".3g") if ta and tb else "–"
        note = ""
        if "skipped" in ra or "skipped" in rb:
            note = "skipped in " + " and ".join(k for k, r in (("a", ra), ("b", rb)) if "skipped" in r)
        elif not ra or not rb:
            note = "only in " + ("b" if not ra else "a")
        elif "floor_fraction" in ra or "floor_fraction" in rb:
            note = f"{_fmt(ra.get('floor_fraction'), '.3f')} -> {_fmt(rb.get('floor_fraction'), '.3f')}"
        lines.append(f"{name:16s} {_fmt(ta):>12s} {_fmt(tb):>12s} {unit:14s} {ratio:>8s}  {note}")
    return "\n".join(lines)
