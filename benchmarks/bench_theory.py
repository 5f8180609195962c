"""Benchmark and cross-check of memgen.theory.

Default mode: times ``theory(Spiked, Grid)`` on a 200 x 200 (gamma, lam) grid. Compilation
(first call) is timed separately; steady state is ``min`` over repeats of the full call,
which ends in host arrays (so it includes ``block_until_ready``). Prints one JSON record
and, last, ``theory_grid_200x200_s=<x>``.

``--sim``: theory versus a plain float64 NumPy simulation at d >= 1000, with standard
errors over seeds: spiked q and Q, m(n, lam) for n <= 20 (fixed-n law, large d), the
proportional-load m, and power-law (alpha = 1, 2) q and top-1 overlap.

    python benchmarks/bench_theory.py [--x64] [--repeat 5]
    python benchmarks/bench_theory.py --sim --x64 [--d 1000] [--reps 4]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import timeit

import numpy as np


def bench(repeat: int) -> None:
    import jax

    from memgen import specs
    from memgen.theory import theory

    grid = specs.Grid(gamma=tuple(np.geomspace(0.05, 20.0, 200)), lam=tuple(np.linspace(0.0, 2.0, 200)))
    data = specs.Spiked(d=1000, beta=(2.0,))
    t0 = time.perf_counter()
    ds = theory(data, grid)
    first = time.perf_counter() - t0
    runs = timeit.repeat(lambda: jax.block_until_ready(theory(data, grid)["q"].values), number=1, repeat=repeat)
    run = min(runs)
    rec = {
        "benchmark": "theory_grid_200x200",
        "device": str(jax.devices()[0].device_kind),
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "dtype": str(ds["q"].dtype),
        "shape": [200, 200],
        "compile_plus_first_s": round(first, 4),
        "run_s": round(run, 4),
        "runs_s": [round(r, 4) for r in runs],
    }
    print(json.dumps(rec))
    print(f"theory_grid_200x200_s={run:.4f}")


# --------------------------------------------------------------------- simulation


def _fit(rng, sig_sqrt, n):
    x = rng.standard_normal((n, sig_sqrt.shape[0])) * sig_sqrt
    s, u = np.linalg.eigh(x.T @ x / n)
    return np.clip(s, 0, None), u, x


def _sim_pair(rng, sig, n, lams, nz):
    """q per lam, top-1 overlap with axis 0, and m per lam (proportional load)."""
    ss = np.sqrt(sig)
    (s1, u1, x1), (s2, u2, _) = _fit(rng, ss, n), _fit(rng, ss, n)
    z = rng.standard_normal((sig.shape[0], nz))
    c1, c2 = u1.T @ z, u2.T @ z
    qs, ms = [], []
    xn = np.linalg.norm(x1, axis=1)
    for lam in lams:
        g1 = u1 @ (np.sqrt(s1 + lam)[:, None] * c1)
        g2 = u2 @ (np.sqrt(s2 + lam)[:, None] * c2)
        n1, n2 = np.linalg.norm(g1, axis=0), np.linalg.norm(g2, axis=0)
        qs.append(np.mean(np.sum(g1 * g2, 0) / n1 / n2))
        ms.append(np.mean(np.abs(x1 @ g1 / xn[:, None] / n1[None, :]).max(0)))
    return qs, u1[0, -1] ** 2, ms


def _sim_m_fixed_n(rng, n, d, lam, nz):
    x = rng.standard_normal((n, d))
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    z = rng.standard_normal((d, nz))
    c = vt @ z
    gz = vt.T @ (np.sqrt(s**2 / n + lam)[:, None] * c) + np.sqrt(lam) * (z - vt.T @ c)
    cos = (x @ gz) / np.linalg.norm(x, axis=1)[:, None] / np.linalg.norm(gz, axis=0)[None, :]
    return np.abs(cos).max(0).mean()


def _mean_se(vals):
    v = np.asarray(vals, dtype=float)
    return v.mean(0), v.std(0, ddof=1) / np.sqrt(v.shape[0])


def sim(d: int, reps: int, nz: int) -> None:
    import jax
    import jax.numpy as jnp

    from memgen.theory import memorisation as mem
    from memgen.theory import powerlaw, spiked

    rng = np.random.default_rng(0)
    lams = [0.0, 0.1, 1.0]
    rows = []

    def row(kind, params, name, th, mean, se):
        rows.append((kind, params, name, float(th), float(mean), float(se)))

    # spiked: q, Q, m at proportional load
    beta = 2.0
    for gamma in (0.5, 1.0, 2.0):
        sig = np.ones(d)
        sig[0] += beta
        n = int(round(gamma * d))
        out = [_sim_pair(rng, sig, n, lams, nz) for _ in range(reps)]
        q_m, q_s = _mean_se([o[0] for o in out])
        o_m, o_s = _mean_se([o[1] for o in out])
        m_m, m_s = _mean_se([o[2] for o in out])
        row("spiked", f"beta={beta} gamma={gamma}", "Q", spiked.bbp_overlap(gamma, beta), o_m, o_s)
        tau1, tau2 = 1 + beta / d, 1 + (2 * beta + beta**2) / d
        for i, lam in enumerate(lams):
            row("spiked", f"gamma={gamma} lam={lam}", "q", spiked.convergence(gamma, lam), q_m[i], q_s[i])
            m_th = mem.memorisation_proportional(float(n), float(d), lam, tau1, tau2)
            row("spiked", f"gamma={gamma} lam={lam} n={n}", "m_prop", m_th, m_m[i], m_s[i])
    # fixed n, large d
    for n in (1, 2, 5, 20):
        for lam in (0.0, 0.5):
            vals = [_sim_m_fixed_n(rng, n, d, lam, nz) for _ in range(reps)]
            mm, ms = _mean_se(vals)
            row("fixed-n", f"n={n} lam={lam} d={d}", "m", mem.memorisation(float(n), lam), mm, ms)
    # power law
    pv = jax.jit(powerlaw.point_values)
    for alpha in (1.0, 2.0):
        sigj = powerlaw.powerlaw_spectrum(jnp.asarray(alpha), d)
        sig = np.asarray(sigj)
        for gamma in (0.5, 2.0):
            n = int(round(gamma * d))
            out = [_sim_pair(rng, sig, n, lams, nz) for _ in range(reps)]
            q_m, q_s = _mean_se([o[0] for o in out])
            o_m, o_s = _mean_se([o[1] for o in out])
            m_m, m_s = _mean_se([o[2] for o in out])
            row("powerlaw", f"alpha={alpha} gamma={gamma}", "Q1", powerlaw.axis_outlier(sigj, jnp.asarray(gamma), 0)[0], o_m, o_s)
            for i, lam in enumerate(lams):
                v = pv(sigj, jnp.asarray(gamma), jnp.asarray(lam))
                row("powerlaw", f"alpha={alpha} gamma={gamma} lam={lam}", "q", v["q"], q_m[i], q_s[i])
                row("powerlaw", f"alpha={alpha} gamma={gamma} lam={lam}", "q_trace", v["q_trace"], q_m[i], q_s[i])
                m_th = mem.memorisation_proportional(float(n), float(d), lam, float(sig.mean()), float((sig**2).mean()))
                row("powerlaw", f"alpha={alpha} gamma={gamma} lam={lam}", "m_prop", m_th, m_m[i], m_s[i])
    print(f"# theory vs NumPy simulation, d={d}, {reps} seeds x {nz} z; err/se = (theory - sim)/se")
    print(f"{'data':9s} {'params':36s} {'var':8s} {'theory':>9s} {'sim':>9s} {'se':>8s} {'err/se':>8s}")
    for kind, params, name, th, mean, se in rows:
        z = (th - mean) / se if se > 1e-9 else float("nan")
        print(f"{kind:9s} {params:36s} {name:8s} {th:9.5f} {mean:9.5f} {se:8.5f} {z:8.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sim", action="store_true", help="theory-vs-simulation table instead of timing")
    p.add_argument("--x64", action="store_true", help="enable float64 (recommended)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--d", type=int, default=1000)
    p.add_argument("--reps", type=int, default=4)
    p.add_argument("--nz", type=int, default=64)
    a = p.parse_args()
    import jax

    if a.x64:
        jax.config.update("jax_enable_x64", True)
    if a.sim:
        if a.d < 1000:
            p.error("--sim needs --d >= 1000")
        sim(a.d, a.reps, a.nz)
    else:
        bench(a.repeat)


if __name__ == "__main__":
    main()
