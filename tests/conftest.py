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

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _no_dataset_downloads(monkeypatch):
    """No test reaches the network for a dataset: tfds' downloader refuses at once (offline it would retry for
    minutes). Tests that prepare a tfds dataset serve its files locally (tests/tfds_fakes.py)."""
    from tensorflow_datasets.core.download import downloader

    def refuse(self, url, destination_path, verify=True):
        raise ConnectionError(f"tests must not download datasets (tried {url})")

    monkeypatch.setattr(downloader._Downloader, "download", refuse)
