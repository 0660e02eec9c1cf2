"""Reproduction experiments: sweeps of ``imbalance_jax.main`` runs and the Markdown tables of their results.

- :mod:`experiments.sweeps` — the sweep file format (:class:`~experiments.sweeps.Sweep`) and one file per
  experiment of the papers (``experiments/sweeps/<name>.py``).
- :mod:`experiments.run` — ``python -m experiments.run <sweep> [--only=REGEX] [--dry_run]`` runs the cells,
  resumable: finished cells are skipped, interrupted ones resume from their checkpoints.
- :mod:`experiments.report` — ``python -m experiments.report <sweep>`` writes ``experiments/results/<sweep>.md``
  (mean ± std over seeds, missing cells, every cell's command and wall time).
"""
