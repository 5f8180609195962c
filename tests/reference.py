"""Plain float64 NumPy/SciPy references. Written independently: does not import memgen."""

import numpy as np
import scipy.linalg

# The suite compiles hundreds of small kernels and computes little: XLA's CPU compile is most
# of its time, and LLVM at -O1 halves it (a denoiser pair: 11.4 s -> 5.7 s compiling, the same
# 0.1 s running). Every test process gets it, subprocesses included, except the README's
# commands, which run as users type them.
FAST_COMPILE = "--xla_backend_optimization_level=1"


def xla_flags(devices: int | None = None) -> str:
    """XLA_FLAGS of a test process: quick compiles, and ``devices`` forced CPU devices (default:
    none forced, so memgen's CLI gives one per core)."""
    forced = f"--xla_force_host_platform_device_count={devices} " if devices else ""
    return forced + FAST_COMPILE


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


def w2_of(Sigma, S):
    """W2^2(N(0, Sigma), N(0, S)) / d through the eigenvalues of Sigma^(1/2) S Sigma^(1/2) (PSD)."""
    r = np.real(scipy.linalg.sqrtm(Sigma))
    ev = np.maximum(np.linalg.eigvalsh(r @ S @ r), 0)
    return (np.trace(Sigma) + np.trace(S) - 2 * np.sum(np.sqrt(ev))) / S.shape[0]


def gaussian_divergences(S, Sigma, dmu=None):
    """KL(S||Sigma)/d, KL(Sigma||S)/d and H^2 of N(dmu, S), N(0, Sigma) by slogdet and solve.

    S singular (smallest eigenvalue < 1e-12 of the largest): KLs +inf, H^2 = 1.
    """
    d = S.shape[0]
    dmu = np.zeros(d) if dmu is None else dmu
    ev = np.linalg.eigvalsh(S)
    if ev[0] <= 1e-12 * ev[-1]:
        return {"kl": np.inf, "kl_rev": np.inf, "h2": 1.0}
    ld_S, ld_T = np.linalg.slogdet(S)[1], np.linalg.slogdet(Sigma)[1]
    kl = 0.5 * (np.trace(np.linalg.solve(Sigma, S)) - d + ld_T - ld_S + dmu @ np.linalg.solve(Sigma, dmu)) / d
    kl_rev = 0.5 * (np.trace(np.linalg.solve(S, Sigma)) - d + ld_S - ld_T + dmu @ np.linalg.solve(S, dmu)) / d
    M = (S + Sigma) / 2
    ld_M = np.linalg.slogdet(M)[1]
    h2 = 1 - np.exp(0.25 * ld_S + 0.25 * ld_T - 0.5 * ld_M - 0.125 * dmu @ np.linalg.solve(M, dmu))
    return {"kl": kl, "kl_rev": kl_rev, "h2": h2}


def onestep_law(X0, XT, T):
    """Halder's one-step model by NumPy: centred least squares (pinv: minimum norm), then the law.

    Returns (mu [d], covariance [d, d]) of N(b0 + B e^-T xbar, c B B^T).
    """
    X0, XT = np.asarray(X0, np.float64), np.asarray(XT, np.float64)
    n, d = X0.shape
    m0, mT = X0.mean(0), XT.mean(0)
    B = (np.linalg.pinv(XT - mT, rcond=1e-10) @ (X0 - m0)).T
    b0 = m0 - B @ mT
    l = np.exp(-2 * T)
    c = l * X0.var(0, ddof=1).mean() + l * (1 - l)
    return b0 + B @ (np.exp(-T) * m0), c * B @ B.T


def halder_delta(train, fresh, mu, S, std=1.0):
    """Halder's Delta = e(train) - e(fresh) by the plain formulas (all terms, float64; small d only).

    e(D) = int kde_D^2 - 2 int p_G kde_D with bandwidth eps = std |D|^(-1/d), p_G = N(mu, S).
    """
    from scipy.stats import multivariate_normal

    def e(D):
        N, d = D.shape
        eps2 = std**2 * N ** (-2 / d)
        pairs = np.mean(multivariate_normal(np.zeros(d), 2 * eps2 * np.eye(d)).pdf(D[:, None, :] - D[None, :, :]))
        cross = np.mean(multivariate_normal(mu, S + eps2 * np.eye(d)).pdf(D))
        return pairs - 2 * cross

    return e(np.asarray(train, np.float64)) - e(np.asarray(fresh, np.float64))


def diffusion_operator(X, c, levels, scale, sampler):
    """The dense linear map z -> x of a DDIM (Euler) or Heun sampler with D = C (C + c + sigma^2)^-1.

    Args:
        X: training set [n, d]; c: ridge; levels: noise levels ending in 0; scale: x_T = scale z.
    """
    n, d = X.shape
    C = X.T @ X / n
    eye = np.eye(d)

    def drift(sigma):  # (I - D_sigma) / sigma
        return (eye - C @ np.linalg.inv(C + (c + sigma**2) * eye)) / sigma

    G = scale * eye
    for s_i, s_next in zip(levels[:-1], levels[1:]):
        a = drift(s_i)
        euler = eye + (s_next - s_i) * a
        if sampler == "heun" and s_next > 0:
            step = eye + 0.5 * (s_next - s_i) * (a + drift(s_next) @ euler)
        else:
            step = euler
        G = step @ G
    return G


def naive_point(Xa, Xb, z, lam, V, Sigma, Sigma_full=None, operator=sqrtm_generator):
    """Every order parameter of one point the way a researcher writes it: a dense operator per lam.

    ``operator(X, lam)`` is the model's map z -> x (default: sqrtm of C + lam I); ``Sigma`` is
    the bulk (for W2) and ``Sigma_full`` the whole population (for KL and H^2; default Sigma).
    """
    Sigma_full = Sigma if Sigma_full is None else Sigma_full
    out = {k: [] for k in ("m", "m_kad", "mem_frac", "q", "w2", "kl", "kl_rev", "h2")}
    for l in lam:
        Ga, Gb = operator(Xa, l), operator(Xb, l)
        xa, xb = z @ Ga.T, z @ Gb.T
        ma, mb = memorisation(xa, Xa), memorisation(xb, Xb)
        for k in ma:
            out[k].append((ma[k] + mb[k]) / 2)
        out["q"].append(cos(xa, xb).mean())
        if operator is sqrtm_generator:
            out["w2"].append((w2(Sigma, Xa, l) + w2(Sigma, Xb, l)) / 2)
        else:
            out["w2"].append((w2_of(Sigma, Ga @ Ga.T) + w2_of(Sigma, Gb @ Gb.T)) / 2)
        da = gaussian_divergences(Ga @ Ga.T, Sigma_full)
        db = gaussian_divergences(Gb @ Gb.T, Sigma_full)
        for k in da:
            out[k].append((da[k] + db[k]) / 2)
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
        env = dict(os.environ, XLA_FLAGS=xla_flags(n_dev), JAX_PLATFORMS="cpu")
        f = tmp_path / f"d{n_dev}.npz"
        subprocess.run([sys.executable, "-c", script, str(f), str(n_dev)], env=env, check=True, timeout=240)
        outs.append(np.load(f))
    return outs
