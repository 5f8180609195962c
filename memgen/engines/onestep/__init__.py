"""Halder's one-step model (arXiv 2411.17807): OLS with intercept from one forward-noised copy of
each training point back to it; the generated law is Gaussian.

``model`` (the fit and its law) -> ``engine`` (the pair kernel, keys, memory model).
"""
