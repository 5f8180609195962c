"""Plain float64 NumPy/SciPy references. Written independently: does not import memgen."""

import numpy as np
import scipy.linalg


def sqrtm_generator(X, lam):
    """(C + lam I)^(1/2) with C = X^T X / n, by scipy.linalg.sqrtm (the naive route).

    A singular C + lam I (lam = 0 and n < d) is outside sqrtm's accuracy (~sqrt(eps)), so there
    the reference goes through the invertible n x n matrix X X^T instead.
    """
    X = np.asarray(X, np.float64)
    n, d = X.shape
    C = X.T @ X / n
    if lam == 0 and n < d:  # C^(1/2) = X^T (X X^T)^(-1/2) X / sqrt(n), X X^T invertible
        return X.T @ np.linalg.inv(np.real(scipy.linalg.sqrtm(X @ X.T))) @ X / np.sqrt(n)
    return np.real(scipy.linalg.sqrtm(C + lam * np.eye(d)))


def cos(a, b):
    return np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def memorisation(x, X):
    """m, m_kad, mem_frac of samples x [S, d] against training set X [n, d]."""
    c = np.abs(x @ X.T) / np.outer(np.linalg.norm(x, axis=1), np.linalg.norm(X, axis=1))
    xc = x - x.mean(1, keepdims=True)
    Xc = X - X.mean(1, keepdims=True)
    r = (xc @ Xc.T) / np.outer(np.linalg.norm(xc, axis=1), np.linalg.norm(Xc, axis=1))
    dist = np.linalg.norm(x[:, None, :] - X[None, :, :], axis=-1)
    dist.sort(axis=1)
    if X.shape[0] > 1:
        frac = np.mean(dist[:, 0] < dist[:, 1] / 3)
    else:
        frac = 1.0
    return {"m": c.max(1).mean(), "m_kad": r.max(1).mean(), "mem_frac": frac}


def latent_recovery(X, V):
    C = X.T @ X / X.shape[0]
    _, U = np.linalg.eigh(C)
    k = V.shape[1]
    return np.sum((U[:, -k:].T @ V) ** 2) / k


def w2(Sigma, X, lam):
    """W2^2(N(0, Sigma), N(0, C + lam I)) / d by sqrtm."""
    n, d = X.shape
    C = X.T @ X / n + lam * np.eye(d)
    if lam == 0 and n < d:  # tr (r C r)^(1/2) = tr (X Sigma X^T / n)^(1/2), an invertible n x n
        cross = np.real(scipy.linalg.sqrtm(X @ Sigma @ X.T / n))
    else:
        r = np.real(scipy.linalg.sqrtm(Sigma))
        cross = np.real(scipy.linalg.sqrtm(r @ C @ r))
    return (np.trace(Sigma) + np.trace(C) - 2 * np.trace(cross)) / d


def naive_point(Xa, Xb, z, lam, V, Sigma):
    """Every order parameter of one point the way a researcher writes it: sqrtm per lam."""
    out = {k: [] for k in ("m", "m_kad", "mem_frac", "q", "w2")}
    for l in lam:
        Ga, Gb = sqrtm_generator(Xa, l), sqrtm_generator(Xb, l)
        xa, xb = z @ Ga.T, z @ Gb.T
        ma, mb = memorisation(xa, Xa), memorisation(xb, Xb)
        for k in ma:
            out[k].append((ma[k] + mb[k]) / 2)
        out["q"].append(cos(xa, xb).mean())
        out["w2"].append((w2(Sigma, Xa, l) + w2(Sigma, Xb, l)) / 2)
    out = {k: np.array(v) for k, v in out.items()}
    out["Q"] = (latent_recovery(Xa, V) + latent_recovery(Xb, V)) / 2
    top = lambda X: np.linalg.eigvalsh(X.T @ X / X.shape[0])[-1]  # noqa: E731
    out["top_eig"] = (top(Xa) + top(Xb)) / 2
    return out


def results_on_devices(script: str, devices, tmp_path) -> list:
    """Runs ``script`` (argv: output .npz, device count) once per forced host device count.

    Returns the loaded .npz of each run, for bit-for-bit comparison across device counts.
    """
    import os
    import subprocess
    import sys

    outs = []
    for n_dev in devices:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n_dev}", JAX_PLATFORMS="cpu")
        f = tmp_path / f"d{n_dev}.npz"
        subprocess.run([sys.executable, "-c", script, str(f), str(n_dev)], env=env, check=True, timeout=240)
        outs.append(np.load(f))
    return outs
