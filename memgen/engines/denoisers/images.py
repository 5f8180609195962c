"""Image data for the denoiser engine: Gaussian fields, synthetic sets, real image loaders.

* :func:`sample_field` draws a stationary Gaussian field exactly by FFT (theory.md §1):
  ``x = F^-1 (sqrt(P) F g)``, ``g ~ N(0, I)``, so ``Cov(x)`` is the circulant matrix with
  eigenvalues ``P`` (unit mean variance); :func:`fourier_basis` gives its real eigenbasis.
* :func:`sample_disks` and :func:`sample_calpha` are the two synthetic sets of Kadkhodaie et
  al. (2024) (own implementation): anti-aliased disks, and C^alpha contour images.
* :func:`load_images` reads ``.npy``/``.npz`` arrays or a folder of PNG/JPEG images (or the
  photograph shipped with matplotlib) as grayscale [N, H, W] in [0, 1].

Samplers are pure functions of ``(key, spec, n)`` for one data set; nothing here jits or
vmaps. Spec-derived constants (spectrum, basis) are float64 NumPy; callers cast.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ...specs import ImageField

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _float(dtype) -> np.dtype:
    """The requested real dtype, or JAX's default float (float64 under x64)."""
    return jnp.dtype(dtype) if dtype is not None else jnp.result_type(float)


# ------------------------------------------------------------------- Gaussian fields


def _freq_radius(size: tuple[int, int]) -> np.ndarray:
    """|f| in cycles per image on the FFT grid [H, W]."""
    h, w = size
    fy = np.fft.fftfreq(h) * h
    fx = np.fft.fftfreq(w) * w
    return np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def field_spectrum(spec: ImageField) -> np.ndarray:
    """Power spectrum P [H, W] on the FFT grid, P ∝ (|f| + f0)^-alpha, mean(P) = 1 (float64)."""
    p = (_freq_radius(spec.size) + spec.f0) ** (-spec.alpha)
    return p / p.mean()


def sample_field(key: jax.Array, spec: ImageField, n: int, dtype=None) -> jax.Array:
    """n independent draws of the field, exactly, by FFT.

    Args:
        key: PRNG key.
        spec: the field.
        n: number of images.
        dtype: real dtype of the output (default: JAX's default float).

    Returns:
        images [n, H, W] with covariance ``U diag(P) U^T`` (per-pixel variance mean(P) = 1).
    """
    g = jax.random.normal(key, (n, *spec.size), dtype=_float(dtype))
    gf = jnp.fft.fft2(g)
    amp = jnp.asarray(np.sqrt(field_spectrum(spec)), dtype=gf.dtype)
    return jnp.fft.ifft2(gf * amp[None]).real.astype(g.dtype)


def fourier_basis(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal real Fourier basis of R^(H W), sorted by increasing |f|.

    Each frequency pair {f, -f} contributes a cosine and a sine (only a cosine when
    f = -f on the grid, e.g. DC and Nyquist).

    Returns:
        U [d, d] with column j the j-th mode flattened row-major, and index [d, 2] of the
        frequency (fy, fx) of each column (float64 / int).
    """
    h, w = size
    ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    rad = _freq_radius(size)
    order = sorted(((rad[a, b], a, b) for a in range(h) for b in range(w)))
    seen, cols, index = set(), [], []
    for _, a, b in order:
        if (a, b) in seen:
            continue
        conj = ((-a) % h, (-b) % w)
        seen.update({(a, b), conj})
        phase = 2 * np.pi * (a * ii / h + b * jj / w)
        modes = [np.cos(phase)] if conj == (a, b) else [np.cos(phase), np.sin(phase)]
        for m in modes:
            cols.append((m / np.linalg.norm(m)).ravel())
            index.append((a, b))
    return np.stack(cols, axis=1), np.asarray(index)


def field_eigen(spec: ImageField) -> tuple[np.ndarray, np.ndarray]:
    """Exact eigendecomposition of the field covariance: (U [d, d], s [d]), s decreasing."""
    u, idx = fourier_basis(spec.size)
    p = field_spectrum(spec)
    return u, p[idx[:, 0], idx[:, 1]]


def spike_directions(size: tuple[int, int], r: int) -> np.ndarray:
    """r fixed smooth orthonormal directions [d, r] for planted spikes (float64).

    Gaussian bumps of width min(H, W) / 6, centred on a circle of radius min(H, W) / 4 about
    the image centre (r = 1: at the centre), orthonormalised in order (Gram-Schmidt by QR,
    signs positive). Smooth and local, so a small convolutional network can represent them,
    and not eigenvectors of a stationary field.
    """
    h, w = size
    yy, xx = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    width, radius = min(h, w) / 6, (min(h, w) / 4 if r > 1 else 0.0)
    cols = []
    for i in range(r):
        cy = h / 2 + radius * np.sin(2 * np.pi * i / r)
        cx = w / 2 + radius * np.cos(2 * np.pi * i / r)
        cols.append(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2)).ravel())
    q, rr = np.linalg.qr(np.stack(cols, axis=1))
    return q * np.sign(np.diagonal(rr))[None, :]


def plant_spikes(key: jax.Array, x: np.ndarray, v: np.ndarray, beta) -> np.ndarray:
    """Images x [n, H, W] plus ``sum_i sqrt(beta_i) h_i v_i`` per image, h ~ N(0, I_r) from ``key``.

    The normals are drawn in float32 (one stream for both precisions, as everywhere).
    """
    n = x.shape[0]
    h = np.asarray(jax.random.normal(key, (n, v.shape[1]), jnp.float32), np.float64)
    spikes = (h * np.sqrt(np.asarray(beta, np.float64))) @ v.T
    return (x + spikes.reshape(x.shape)).astype(x.dtype)


# ------------------------------------------------------------------- synthetic sets


def sample_disks(key: jax.Array, size: tuple[int, int], n: int, dtype=None, oversample: int = 4) -> jax.Array:
    """n anti-aliased disk images [n, H, W] in [0, 1] (Kadkhodaie et al. 2024, "disks").

    Random centre, radius, foreground and background intensities; pixels are averaged over an
    ``oversample``^2 sub-grid.
    """
    h, w = size
    k_c, k_r, k_f, k_b = jax.random.split(key, 4)
    dt = _float(dtype)
    rmax = min(h, w) / 2.0
    r = jax.random.uniform(k_r, (n,), dt, minval=1.5, maxval=rmax - 0.5)
    lo = r[:, None]
    hi = jnp.asarray([h, w], dt)[None, :] - r[:, None]
    c = lo + (hi - lo) * jax.random.uniform(k_c, (n, 2), dt)
    fg = jax.random.uniform(k_f, (n,), dt)
    bg = jax.random.uniform(k_b, (n,), dt)
    sub = (jnp.arange(oversample, dtype=dt) + 0.5) / oversample
    ys = (jnp.arange(h, dtype=dt)[:, None] + sub[None, :]).ravel()  # [h * o]
    xs = (jnp.arange(w, dtype=dt)[:, None] + sub[None, :]).ravel()
    d2 = (ys[None, :, None] - c[:, 0, None, None]) ** 2 + (xs[None, None, :] - c[:, 1, None, None]) ** 2
    inside = (d2 <= (r**2)[:, None, None]).astype(dt)
    cover = inside.reshape(n, h, oversample, w, oversample).mean(axis=(2, 4))
    return bg[:, None, None] + (fg - bg)[:, None, None] * cover


def sample_calpha(key: jax.Array, size: tuple[int, int], n: int, alpha: float = 2.0, dtype=None) -> jax.Array:
    """n C^alpha contour images [n, H, W] in [0, 1] (Kadkhodaie et al. 2024).

    A horizontal boundary ``c(j)`` is white noise integrated by the filter |k|^-alpha (a
    C^alpha-regular curve); pixels above and below take two random constant intensities.
    """
    h, w = size
    k_c, k_a, k_b = jax.random.split(key, 3)
    u = jax.random.uniform(k_c, (n, w), dtype=_float(dtype), minval=-1.0, maxval=1.0)
    dt = u.dtype
    kk = np.abs(np.fft.fftfreq(w) * w)
    kk[0] = 1.0
    uf = jnp.fft.fft(u, axis=-1)
    filt = jnp.asarray(kk ** (-alpha) / w, uf.dtype)
    curve = jnp.fft.ifft(uf * filt[None, :], axis=-1).real.astype(dt)
    curve = curve * h + h / 2.0
    rows = jnp.arange(h, dtype=dt)[None, :, None] + 0.5
    mask = jnp.clip(rows - curve[:, None, :] + 0.5, 0.0, 1.0)  # partial-pixel coverage
    a = jax.random.uniform(k_a, (n,), dt)
    b = jax.random.uniform(k_b, (n,), dt)
    return a[:, None, None] * mask + b[:, None, None] * (1.0 - mask)


# ------------------------------------------------------------------- real images


def builtin_image_path(name: str = "grace_hopper") -> Path:
    """Path of an image shipped inside matplotlib (no download)."""
    import matplotlib

    files = {"grace_hopper": "grace_hopper.jpg"}
    return Path(matplotlib.get_data_path()) / "sample_data" / files[name]


# Image sets shipped inside maintained packages' wheels (no download): name -> (package, what).
PACKAGED = {
    "digits": ("scikit-learn", "the 1,797 handwritten digits of sklearn.datasets.load_digits, 8x8"),
    "faces": ("scikit-image", "the 100 faces of skimage.data.lfw_subset, 25x25"),
    "brick": ("scikit-image", "non-overlapping patches of skimage.data.brick, a 512x512 texture"),
    "grass": ("scikit-image", "non-overlapping patches of skimage.data.grass, a 512x512 texture"),
    "gravel": ("scikit-image", "non-overlapping patches of skimage.data.gravel, a 512x512 texture"),
}


def packaged_images(name: str, size: tuple[int, int]) -> np.ndarray:
    """One of ``PACKAGED`` as grayscale float64 [N, H, W] in [0, 1]: whole images resized to
    ``size`` (digits, faces) or the non-overlapping ``size`` patches of a texture.

    Raises:
        ValueError: the package that ships the set is not installed (``pip install 'memgen[images]'``).
    """
    package = PACKAGED[name][0]
    try:
        if name == "digits":
            from sklearn.datasets import load_digits

            return np.stack([_resize(a, size) for a in load_digits().images / 16.0])
        import skimage.data
    except ImportError:
        raise ValueError(f"Images.source={name!r} needs {package}: pip install 'memgen[images]'") from None
    if name == "faces":  # lfw_subset holds 100 faces, then 100 non-faces
        return np.stack([_resize(a, size) for a in _gray(skimage.data.lfw_subset()[:100])])
    return patches(_gray(getattr(skimage.data, name)()), size)


def _gray(a: np.ndarray) -> np.ndarray:
    """[..., H, W] or [..., H, W, C] (uint8 or float) -> float64 grayscale in [0, 1]."""
    a = np.asarray(a)
    scale = 255.0 if a.dtype == np.uint8 else (65535.0 if a.dtype == np.uint16 else 1.0)
    a = a.astype(np.float64) / scale
    if a.ndim >= 3 and a.shape[-1] in (3, 4):
        a = a[..., :3].mean(axis=-1)
    elif a.ndim >= 3 and a.shape[-1] == 1:
        a = a[..., 0]
    return a


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre-crop to the aspect ratio of ``size``, then box-resample to (H, W)."""
    from PIL import Image

    h, w = size
    ih, iw = img.shape
    if ih * w > iw * h:  # too tall
        ch, cw = max(1, round(iw * h / w)), iw
    else:
        ch, cw = ih, max(1, round(ih * w / h))
    top, left = (ih - ch) // 2, (iw - cw) // 2
    crop = img[top : top + ch, left : left + cw]
    if crop.shape == (h, w):
        return crop
    im = Image.fromarray(crop.astype(np.float32), mode="F")
    return np.asarray(im.resize((w, h), resample=Image.Resampling.BOX), dtype=np.float64)


def patches(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """All non-overlapping (H, W) patches of one image [H0, W0] -> [N, H, W] (row-major)."""
    h, w = size
    ih, iw = (img.shape[0] // h) * h, (img.shape[1] // w) * w
    p = img[:ih, :iw].reshape(ih // h, h, iw // w, w).swapaxes(1, 2)
    return p.reshape(-1, h, w)


def load_images(source: str, size: tuple[int, int]) -> np.ndarray:
    """Load an image set as grayscale float64 [N, H, W] in [0, 1] (not yet centred).

    Args:
        source: ``"grace_hopper"`` (non-overlapping patches of matplotlib's sample
            photograph), one of ``PACKAGED`` (image sets inside scikit-learn's and
            scikit-image's wheels: ``memgen[images]``), a ``.npy``/``.npz`` file holding [N, H', W'] or [N, H', W', C]
            (the first array of an ``.npz``), or a folder of PNG/JPEG images.
        size: output (H, W); each image is centre-cropped to the aspect ratio and resized.

    Raises:
        ValueError: unreadable source, or no images in it.
    """
    import matplotlib.image as mimage

    if source == "grace_hopper":
        return patches(_gray(mimage.imread(builtin_image_path(source))), size)
    if source in PACKAGED:
        return packaged_images(source, size)
    path = Path(os.path.expanduser(source))
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"Images.source must hold PNG/JPEG images, found none in {str(path)!r}")
        imgs = [_gray(mimage.imread(f)) for f in files]
    elif path.suffix == ".npy" and path.is_file():
        imgs = _gray(np.load(path))
    elif path.suffix == ".npz" and path.is_file():
        with np.load(path) as z:
            imgs = _gray(z[z.files[0]])
    else:
        raise ValueError(f"Images.source must be an existing .npy/.npz file or image folder, got {source!r}")
    if len(imgs) == 0 or np.asarray(imgs[0]).ndim != 2:
        raise ValueError(f"Images.source must hold a stack of 2-D images, got {source!r}")
    return np.stack([_resize(np.asarray(a), size) for a in imgs])


def standardise(x: np.ndarray, ref: np.ndarray | None = None) -> np.ndarray:
    """Centre per pixel and scale to unit mean variance, with statistics of ``ref`` (default x)."""
    ref = x if ref is None else ref
    mean = ref.mean(axis=0)
    scale = np.sqrt(np.mean((ref - mean) ** 2))
    return (x - mean) / (scale if scale > 0 else 1.0)


__all__ = [
    "field_spectrum",
    "sample_field",
    "fourier_basis",
    "field_eigen",
    "sample_disks",
    "sample_calpha",
    "builtin_image_path",
    "load_images",
    "packaged_images",
    "PACKAGED",
    "patches",
    "standardise",
]
