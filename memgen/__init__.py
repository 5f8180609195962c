"""memgen: memorisation versus generalisation in generative models, in JAX."""

from importlib.metadata import PackageNotFoundError, version

from .config import Grid as Grid, Linear as Linear, PowerLaw as PowerLaw, Spiked as Spiked

try:
    __version__ = version("memgen")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"
