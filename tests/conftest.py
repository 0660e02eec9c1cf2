"""Test setup: four fake CPU devices, so multi-device behaviour is tested without accelerators.

XLA_FLAGS must be set before JAX initialises its backends, hence at import time of conftest.
"""
import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from imbalance_jax.xla_flags import set_default_xla_flags  # noqa: E402

set_default_xla_flags()  # the entry points' flags: tests run what users run

import tensorflow as tf  # noqa: E402

# tf.data must never grab an accelerator or all host threads away from JAX in tests.
tf.config.set_visible_devices([], "GPU")
