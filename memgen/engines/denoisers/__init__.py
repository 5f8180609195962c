"""Convolutional denoisers as generative models (theory.md §5).

Data flow: ``specs`` (ImageField, Images, ConvDenoiser) -> ``images`` (FFT fields,
synthetic sets, loaders) -> ``model`` (bias-free BF-CNN or UNet, one image) -> ``train`` (pure AdamW
step, lax.scan, ensembles by vmap) -> ``sample`` (DDIM / ascent from shared noise) ->
``references`` (Wiener / empirical denoisers; m, q, Q are ``memgen.observables``) -> ``engine`` (the pair kernel and
``DenoiserEngine``, which ``memgen.scan`` runs like any engine).
"""

from .images import (
    field_eigen as field_eigen,
    field_spectrum as field_spectrum,
    fourier_basis as fourier_basis,
    load_images as load_images,
    sample_calpha as sample_calpha,
    sample_disks as sample_disks,
    sample_field as sample_field,
)
from .model import BFCNN as BFCNN, UNet as UNet
from ...specs import ConvDenoiser as ConvDenoiser, ImageField as ImageField, Images as Images
from .train import train_ensemble as train_ensemble, train_one as train_one, train_step as train_step

__all__ = [
    "ConvDenoiser",
    "ImageField",
    "Images",
    "BFCNN",
    "UNet",
    "sample_field",
    "field_spectrum",
    "field_eigen",
    "fourier_basis",
    "sample_disks",
    "sample_calpha",
    "load_images",
    "train_one",
    "train_step",
    "train_ensemble",
]
