"""The application layer: the ``memgen`` command (``cli``, ``options``, ``parser``), the figure
set (``figures``) and the benchmark suite (``bench``).

Built on the library (specs, engines, run, store, scan, theory, plots), which never imports
it; ``import memgen`` does not load it.
"""
