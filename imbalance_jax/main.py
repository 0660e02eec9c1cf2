"""Entry point: ``python -m imbalance_jax.main --config=configs/default.py --workdir=runs/x``.

Any config field can be overridden, e.g. ``--config.num_epochs=2 --config.loss.aux.asl.weight=0``.
Set ``JAX_COMPILATION_CACHE_DIR=DIR`` to reuse compiled steps across runs (``imbalance_jax.compilation_cache``).
Multi-host: set ``--config.multi_host=True`` (or run under a cluster launcher that jax.distributed
auto-detects); ``jax.distributed.initialize()`` is called before anything touches the devices.

Every failure the user can act on ends with one line on stderr and a non-zero exit status: ``error: ...`` for an
unknown ``--config.<field>`` (with ml_collections' suggestion), a bad config value, missing data, a workdir in use
or trained with another config, unreadable checkpoints and a diverged run; Ctrl-C prints which epoch a rerun
resumes from and exits with 130.
"""

import os
import re
import shlex
import sys
from typing import Optional, Sequence

from absl import app, flags, logging
from ml_collections import config_flags

from imbalance_jax.xla_flags import set_default_xla_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, plots and the report.")
config_flags.DEFINE_config_file("config", None, "Path to a config file with get_config().", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])

EXIT_USAGE = 2  # an unknown --config.<field>
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT

_SUGGESTION = re.compile(r'Did you mean "([^"\\]+)" instead of "([^"\\]+)"')
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def unknown_field_message(argv: Sequence[str], error: BaseException) -> Optional[str]:
    """One line for the KeyError/AttributeError that ml_collections raises while parsing an override of a field
    the locked config does not have: the flag as written and, when ml_collections has one, its suggestion.
    None when the error does not name a component of a ``--config.<path>`` argument."""
    text = str(error).replace("\\'", "'").replace("\\n", "\n")
    suggestion = _SUGGESTION.search(text)
    names = _NAME.findall(text)
    if not names:
        return None
    bad = suggestion.group(2) if suggestion else names[0]
    config_file = next((arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")), "the config file")
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        path = arg[len("--config."):].split("=", 1)[0]
        parts = path.split(".")
        if bad not in parts:
            continue
        if suggestion:
            fixed = ".".join(suggestion.group(1) if p == bad else p for p in parts)
            return f"--config.{path}: no such field; did you mean --config.{fixed}?"
        return f"--config.{path}: no such field in {config_file}"
    return None


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing (its own errors print one 'FATAL Flags parsing error' line), with an unknown
    ``--config.<field>`` reported in one line instead of ml_collections' traceback."""
    try:
        return app.parse_flags_with_usage(argv)
    except (KeyError, AttributeError) as e:
        message = unknown_field_message(argv, e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _run(argv: Sequence[str]) -> None:
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
    from imbalance_jax.errors import RunError
    from imbalance_jax.experiment import ConfigError

    logging.info("JAX process %d/%d, devices: %s", jax.process_index(), jax.process_count(), jax.devices())
    command = " ".join(["python -m imbalance_jax.main", *(shlex.quote(arg) for arg in sys.argv[1:])])
    try:
        train.train_and_evaluate(FLAGS.config, FLAGS.workdir, command=command)
    except (ConfigError, DatasetError, RunError) as e:
        sys.exit(f"error: {e}")


def _initialize_multi_host() -> None:
    """``jax.distributed.initialize`` from JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, or the
    cluster's own environment (SLURM, Cloud TPU, ...) when none is set; an incomplete set stops the run."""
    from imbalance_jax import parallel

    try:
        parallel.initialize_distributed()
    except ValueError as e:
        sys.exit(f"error: {e}")


def _interrupted(error: KeyboardInterrupt) -> str:
    """The line for Ctrl-C: the training loop's own (which epoch a rerun resumes from), else the same question
    asked of the workdir (Ctrl-C before training began)."""
    from imbalance_jax.errors import Interrupted

    if isinstance(error, Interrupted):
        return str(error)
    try:
        from imbalance_jax.train import interrupted_message

        return interrupted_message(FLAGS.workdir)
    except Exception:  # noqa: BLE001 - nothing may hide the interruption itself
        return "interrupted"


def main(argv: Sequence[str]) -> None:
    try:
        _run(argv)
    except KeyboardInterrupt as e:
        print(_interrupted(e), file=sys.stderr, flush=True)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
