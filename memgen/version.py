"""memgen's version, from the installed package metadata (one definition for the package and its stores)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("memgen")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"
