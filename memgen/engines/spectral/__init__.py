"""Spectral models: one ``eigh`` of the training covariance per model, a gain per eigen-direction.

``fit`` (the eigendecomposition, covariance or Gram route, padded rows) -> ``gains`` (the
linear generator's square root; linear diffusion's samplers and schedules) -> ``engine``
(the pair kernel, the key layout, the padding ladder, the memory model).
"""
