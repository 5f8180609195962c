"""memgen: memorisation versus generalisation in generative models, in JAX."""

from .specs import (
    ConvDenoiser as ConvDenoiser,
    Grid as Grid,
    ImageField as ImageField,
    Images as Images,
    Isotropic as Isotropic,
    Linear as Linear,
    LinearDiffusion as LinearDiffusion,
    OneStep as OneStep,
    PowerLaw as PowerLaw,
    Spiked as Spiked,
)
from .version import __version__ as __version__
from .scan import enable_x64 as enable_x64, scan as scan
from .theory import theory as theory, theory_table as theory_table
from .store import load as load
from .stats import mean_sem as mean_sem


def __getattr__(name):
    """``memgen.plots`` and ``memgen.app`` are imported on first use: ``import memgen`` loads
    neither matplotlib nor the application (and no flax/optax: the denoiser engine loads them)."""
    if name in ("plots", "app"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'memgen' has no attribute {name!r}")
