"""``python -m memgen ...`` is the ``memgen`` command."""

from .app.cli import entry

entry()
