"""Entry point: ``python -m imbalance_jax.main --config=configs/default.py --workdir=runs/x``.

Any config field can be overridden, e.g. ``--config.num_epochs=2 --config.loss.aux.asl.weight=0``.
Set ``JAX_COMPILATION_CACHE_DIR=DIR`` to reuse compiled steps across runs (``imbalance_jax.compilation_cache``).
Multi-host: set ``--config.multi_host=True`` (or run under a cluster launcher that jax.distributed
auto-detects); ``jax.distributed.initialize()`` is called before anything touches the devices.
"""

import os
import shlex
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from imbalance_jax.xla_flags import set_default_xla_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, plots and the report.")
config_flags.DEFINE_config_file("config", None, "Path to a config file with get_config().", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    set_default_xla_flags()  # before the first device use
    # orbax logs every checkpoint operation at INFO through absl; keep the console for the run itself.
    logging.get_absl_handler().addFilter(lambda record: "orbax" not in record.pathname
                                         or record.levelno >= logging.converter.STANDARD_WARNING)
    import jax
    import tensorflow as tf

    from imbalance_jax.compilation_cache import enable_from_environment

    enable_from_environment()

    # tf.data only feeds the pipeline: keep TensorFlow off any accelerator JAX uses.
    tf.config.set_visible_devices([], "GPU")
    if FLAGS.config.multi_host:
        _initialize_multi_host()
    from imbalance_jax import train
    from imbalance_jax.data import DatasetError
    from imbalance_jax.experiment import ConfigError

    logging.info("JAX process %d/%d, devices: %s", jax.process_index(), jax.process_count(), jax.devices())
    command = " ".join(["python -m imbalance_jax.main", *(shlex.quote(arg) for arg in sys.argv[1:])])
    try:
        train.train_and_evaluate(FLAGS.config, FLAGS.workdir, command=command)
    except (ConfigError, DatasetError) as e:
        sys.exit(f"error: {e}")


def _initialize_multi_host() -> None:
    """``jax.distributed.initialize`` from JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, or the
    cluster's own environment (SLURM, Cloud TPU, ...) when none is set; an incomplete set stops the run."""
    from imbalance_jax import parallel

    try:
        parallel.initialize_distributed()
    except ValueError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main)
