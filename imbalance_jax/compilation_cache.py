"""JAX's persistent compilation cache for the entry points: a run that compiles the same step as an earlier run
(another seed of a sweep cell, a resumed run) loads the executable from disk instead of compiling it again.

``python -m experiments.run`` turns it on by default (``--compilation_cache``); ``python -m imbalance_jax.main``
when the environment variable ``JAX_COMPILATION_CACHE_DIR`` names a folder (JAX's own variable). Either way every
executable is cached, however short its compilation (JAX's default skips those under 1 s, which are most of ours).
The cache key covers the program, the jaxlib version, the XLA flags and the devices, so a stale entry is never used.
What it saves: ``experiments/benchmarks/compilation_cache.py``.
"""
from __future__ import annotations

import os

ENV_VAR = "JAX_COMPILATION_CACHE_DIR"
DEFAULT_DIR = os.path.join(os.path.expanduser("~"), ".cache", "imbalance_jax", "jax_compilation_cache")


def enable_compilation_cache(path: str) -> str:
    """Caches every compiled executable under ``path`` (created if needed); returns the absolute path."""
    import jax

    path = os.path.abspath(os.path.expanduser(path))
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def enable_from_environment() -> str | None:
    """``enable_compilation_cache($JAX_COMPILATION_CACHE_DIR)`` when that variable is set; else nothing."""
    path = os.environ.get(ENV_VAR, "")
    return enable_compilation_cache(path) if path else None
