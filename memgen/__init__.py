"""memgen: memorisation versus generalisation in generative models, in JAX."""

from .config import Grid as Grid, Linear as Linear, PowerLaw as PowerLaw, Spiked as Spiked

from .version import __version__ as __version__

from .denoisers import ConvDenoiser as ConvDenoiser, ImageField as ImageField, Images as Images
from .scan import enable_x64 as enable_x64, scan as scan
from .theory import theory as theory, theory_table as theory_table
from .store import load as load
from .stats import mean_sem as mean_sem


def __getattr__(name):
    """``memgen.plots`` is imported on first use: ``import memgen`` does not load matplotlib."""
    if name == "plots":
        import importlib

        return importlib.import_module(".plots", __name__)
    raise AttributeError(f"module 'memgen' has no attribute {name!r}")
