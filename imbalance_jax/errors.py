"""Why a run stopped early: exceptions whose message is the one line ``python -m imbalance_jax.main`` prints.

Config problems are :class:`imbalance_jax.experiment.ConfigError` and missing data
:class:`imbalance_jax.data.DatasetError`; this module holds the others, raised by the workdir guard
(:mod:`imbalance_jax.workdir`), the checkpoints (:mod:`imbalance_jax.checkpoints`) and the epoch loop
(:mod:`imbalance_jax.train`).
"""

from __future__ import annotations


class RunError(RuntimeError):
    """A run that cannot start or go on. The message is one line: the cause, the path or step it concerns and
    the ways out."""


class WorkdirError(RunError):
    """The workdir is in use by another process, or holds a run of another config."""


class CheckpointError(RunError):
    """No checkpoint of the workdir can be read, or one does not fit the config's model."""


class DivergedError(RunError):
    """Training produced a non-finite loss or gradient (``config.nan_policy``)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says which epoch a rerun of the same command resumes from. A
    ``KeyboardInterrupt``, so that code catching ``Exception`` (a sweep runner) still stops."""
