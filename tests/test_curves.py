"""experiments/curves.py reads a finished cell's event files and prints its per-epoch curves and plateau epoch."""
from __future__ import annotations

import pytest

from experiments import curves, sweeps

TRIPLET_TAG = "train/triplet/fraction_active"


def _finished_cell(cell: sweeps.Cell, runs, scalars: dict[str, list[float]]) -> None:
    import tensorflow as tf

    workdir = cell.workdir(runs)
    workdir.mkdir(parents=True)
    (workdir / sweeps.COMMAND_FILE).write_text(cell.command(workdir) + "\n")
    (workdir / sweeps.METRICS_FILE).write_text("{}")
    writer = tf.summary.create_file_writer(str(workdir / "tensorboard"))
    with writer.as_default():
        for tag, values in scalars.items():
            for epoch, value in enumerate(values, start=1):
                tf.summary.scalar(tag, value, step=epoch)
    writer.close()


def test_plateau_epoch_is_the_first_epoch_within_tolerance_of_the_best():
    assert curves.plateau_epoch({1: 0.5, 2: 0.795, 3: 0.8, 4: 0.7}, tolerance=0.01) == 2
    assert curves.plateau_epoch({1: 0.5, 2: 0.79, 3: 0.8}, tolerance=0.001) == 3
    assert curves.plateau_epoch({}, tolerance=0.01) is None
    loss = {1: 2.0, 2: 1.205, 3: 1.2, 4: 1.6}
    assert curves.plateau_epoch(loss, tolerance=0.01, minimize=True) == 2
    assert curves.best_value(loss, minimize=True) == 1.2 and curves.best_value(loss) == 2.0


@pytest.mark.parametrize("tag, lower", [("val/loss", True), ("train/loss_ce", True),
                                        ("test/expected_calibration_error", True), ("val/balanced_accuracy", False),
                                        ("train/triplet/fraction_active", False)])
def test_losses_and_errors_are_lower_is_better(tag, lower):
    assert curves.lower_is_better(tag) is lower


def test_curves_of_one_method_from_event_files(tmp_path, capsys):
    runs = tmp_path / "runs"
    sweep = sweeps.load_sweep("tricdb_rho")
    cells = {c.method: c for c in sweep.cells() if c.grid_slug == "ratio=100.0" and c.seed == 0}
    _finished_cell(cells["TriCDB-CE"], runs, {TRIPLET_TAG: [0.18, 0.07, 0.03], "val/balanced_accuracy": [0.7, 0.85, 0.86]})
    _finished_cell(cells["CE"], runs, {"val/balanced_accuracy": [0.6, 0.8, 0.81], "val/loss": [1.0, 0.5, 0.9]})

    assert curves.main(["tricdb_rho", f"--runs_dir={runs}", f"--tag={TRIPLET_TAG}", "--tag=val/balanced_accuracy",
                        "--method=TriCDB-CE"]) == 0
    text = capsys.readouterr().out
    assert "### TriCDB-CE (tricdb-ce/ratio=100.0/seed0)" in text and "### CE " not in text
    assert "| 1 | 0.1800 | 0.7000 |" in text and "| 3 | 0.0300 | 0.8600 |" in text
    assert "- val/balanced_accuracy: best 0.8600; first within 0.01 of it at epoch 2" in text

    out = tmp_path / "curves.md"
    assert curves.main(["tricdb_rho", f"--runs_dir={runs}", f"--out={out}"]) == 0
    written = out.read_text()
    assert "### TriCDB-CE" in written and "### CE (ce/ratio=100.0/seed0)" in written

    assert curves.main(["tricdb_rho", f"--runs_dir={runs}", f"--tag={TRIPLET_TAG}", "--method=CE"]) == 0
    assert f"- {TRIPLET_TAG}: not logged by this run" in capsys.readouterr().out
    assert curves.main(["tricdb_rho", f"--runs_dir={runs}", "--tag=val/loss", "--method=CE"]) == 0
    assert "- val/loss: best (lowest) 0.5000; first within 0.01 of it at epoch 2" in capsys.readouterr().out


def test_unknown_method_names_the_allowed_ones(tmp_path, capsys):
    with pytest.raises(SystemExit):
        curves.main(["tricdb_rho", f"--runs_dir={tmp_path}", "--method=Focal"])
    err = capsys.readouterr().err
    assert "--method Focal is not a method of tricdb_rho" in err and "TriCDB-CE" in err


def test_one_workdir_with_a_wildcard_tag(tmp_path, capsys):
    import tensorflow as tf

    run = tmp_path / "run"
    writer = tf.summary.create_file_writer(str(run / "tensorboard"))
    with writer.as_default():
        for epoch, weights in enumerate([(1.0, 1.0, 1.0), (0.0, 1.5, 1.5)], start=1):
            for c, w in enumerate(weights):
                tf.summary.scalar(f"train/class_weight/{c}", w, step=epoch)
            tf.summary.scalar("train/accuracy", 0.5 + 0.1 * epoch, step=epoch)
    writer.close()

    assert curves.main([f"--workdir={run}", "--tag=train/class_weight/*"]) == 0
    text = capsys.readouterr().out
    header = "| epoch | train/class_weight/0 | train/class_weight/1 | train/class_weight/2 |"
    assert header in text and "| 2 | 0.0000 | 1.5000 | 1.5000 |" in text and "train/accuracy" not in text

    with pytest.raises(SystemExit):
        curves.main(["tricdb_rho", f"--workdir={run}"])
    assert "not both" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        curves.main([f"--workdir={tmp_path / 'missing'}"])
    assert "has no tensorboard/ directory" in capsys.readouterr().err
