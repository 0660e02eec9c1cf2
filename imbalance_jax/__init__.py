"""imbalance_jax: class-imbalanced and long-tailed image classification in JAX/Flax.

The core install (``pip install imbalance_jax``: jax, jaxlib, chex, numpy) provides the pure-JAX loss
kernels, ``from imbalance_jax import losses``; the trainer and its data, model and evaluation packages
need the ``train`` extra (``pip install "imbalance_jax[train]"``). This module imports nothing, so
importing a subpackage pulls in only what that subpackage needs.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
