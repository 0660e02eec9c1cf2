"""CI check of the core install: run with a venv holding only jax, jaxlib, chex, numpy (and their own
dependencies) plus ``pip install --no-deps -e .``; exits non-zero when ``imbalance_jax.losses`` needs more.

Beyond the import, one loss is evaluated on random data and compared with a float64 loop, and the
trainer's dependencies are checked to be absent (so the check cannot pass by accident in a full venv).
"""
import importlib.util
import itertools
import sys

TRAIN_ONLY = ("flax", "optax", "orbax", "ml_collections", "tensorflow", "tensorflow_datasets", "sklearn",
              "matplotlib", "PIL", "tqdm")

present = [name for name in TRAIN_ONLY if importlib.util.find_spec(name) is not None]
if present:
    sys.exit(f"core-install check: this venv must not have the train extra, found {present}")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import imbalance_jax  # noqa: E402
from imbalance_jax import losses  # noqa: E402

rng = np.random.default_rng(0)
emb = rng.normal(size=(12, 3)).astype(np.float32)
labels = np.arange(12) % 3
got = float(losses.triplet_loss(jnp.asarray(emb), jnp.asarray(labels), margin=0.2, mining="all"))
e = emb.astype(np.float64)
hinges = [max(np.sum((e[a] - e[p]) ** 2) + 0.2 - np.sum((e[a] - e[n]) ** 2), 0.0)
          for a, p, n in itertools.product(range(12), repeat=3)
          if a != p and labels[a] == labels[p] and labels[n] != labels[a]]
expected = float(np.mean(hinges))
if not np.isclose(got, expected, rtol=1e-5, atol=1e-6):
    sys.exit(f"core-install check: triplet_loss gave {got}, a float64 loop gives {expected}")

loaded = sorted({m.split(".")[0] for m in sys.modules} & set(TRAIN_ONLY))
if loaded:
    sys.exit(f"core-install check: importing imbalance_jax.losses loaded {loaded}")
print(f"core install OK: imbalance_jax {imbalance_jax.__version__}, jax {jax.__version__}, "
      f"triplet_loss {got:.6f} (loop {expected:.6f})")
