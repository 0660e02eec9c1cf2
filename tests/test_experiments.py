"""experiments/: the sweep format, the resumable runner and the Markdown report.

One tiny digits sweep (1 epoch, 2 methods × 2 seeds) really trains; everything else runs without training:
the report on hand-written cells, and every sweep file in experiments/sweeps/ validated by building each cell's
config from its command-line flags and tracing its model and losses.
"""

import json
import pathlib
import shlex

import numpy as np
import pytest

from configs import default as default_config
from experiments import report, run, sweeps
from experiments.sweeps import Setting, Sweep, tied

TINY_SWEEP = '''
from experiments.sweeps import Sweep

SWEEP = Sweep(
    name="tiny",
    base_config="configs/default.py",
    methods={"CE": {"loss.aux.asl.weight": 0.0}, "ASLoss (L2)": {}},
    seeds=(0, 1),
    common_overrides={"num_epochs": 1, "disable_progress_bar": True, "eval_batch_size": 64},
)
'''
EXPECTED_SWEEPS = ("asl_fourclass", "affinity_step", "tricdb_rho", "silk_grid", "silk_converged", "digits_sanity")
PAPER_SWEEPS = ("asl_fourclass", "affinity_step", "tricdb_rho", "silk_converged")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny sweep file and its runs dir, after a first invocation that runs only the CE cells."""
    root = tmp_path_factory.mktemp("tiny")
    path = root / "tiny.py"
    path.write_text(TINY_SWEEP)
    runs = root / "runs"
    status = run.main([str(path), f"--runs_dir={runs}", "--only=^ce/"])
    return path, runs, status


def _cell(sweep: Sweep, key: str) -> sweeps.Cell:
    return next(c for c in sweep.cells() if c.key == key)


def test_tiny_sweep_runs_skips_finished_cells_and_reports(tiny, capsys):
    path, runs, first_status = tiny
    sweep = sweeps.load_sweep(str(path))
    assert first_status == 0
    # --only=^ce/ ran the CE cells only.
    assert sorted(p.relative_to(runs / "tiny").as_posix() for p in runs.glob("tiny/*/*/*")) == [
        "ce/default/seed0", "ce/default/seed1"]
    ce_metrics = runs / "tiny/ce/default/seed0/metrics.json"
    before = ce_metrics.stat().st_mtime_ns
    capsys.readouterr()

    assert run.main([str(path), f"--runs_dir={runs}"]) == 0
    out = capsys.readouterr().out
    assert "tiny/ce/default/seed0: skipped" in out and "tiny/ce/default/seed1: skipped" in out
    assert "tiny/asloss-l2/default/seed1: finished in" in out
    assert "2 ran, 2 skipped, 0 failed" in out
    assert ce_metrics.stat().st_mtime_ns == before  # a finished cell is not rerun

    assert run.main([str(path), f"--runs_dir={runs}"]) == 0
    assert "0 ran, 4 skipped" in capsys.readouterr().out

    for cell in sweep.cells():
        workdir = cell.workdir(runs)
        assert (workdir / "command.txt").read_text().strip() == cell.command(workdir)
        assert float((workdir / "wall_time.txt").read_text()) > 0
        assert json.loads((workdir / "metrics.json").read_text())["epochs_trained"] == 1

    # The command reproduces the cell: its overrides, applied by hand to configs/default.py, give exactly the
    # config the run recorded.
    cell = _cell(sweep, "ce/default/seed1")
    flags = shlex.split((cell.workdir(runs) / "command.txt").read_text())
    assert flags[:3] == ["python", "-m", "imbalance_jax.main"] and "--config=configs/default.py" in flags
    expected = default_config.get_config()
    expected.num_epochs, expected.disable_progress_bar, expected.eval_batch_size = 1, True, 64
    expected.loss.aux.asl.weight, expected.seed = 0.0, 1
    recorded = json.loads((cell.workdir(runs) / "config.json").read_text())
    assert recorded == json.loads(expected.to_json_best_effort())

    text = report.render(sweep, report.collect(sweep, runs))
    accuracies = [json.loads((c.workdir(runs) / "metrics.json").read_text())["test"]["accuracy"]
                  for c in sweep.cells() if c.method == "CE"]
    mean, std = 100 * np.mean(accuracies), 100 * np.std(accuracies, ddof=1)
    ce_row = next(line for line in text.splitlines() if line.startswith("| CE |"))
    assert ce_row.split(" | ")[1] == f"{mean:.2f} ± {std:.2f}"
    assert "| n |" not in text and "## Missing cells (0)" in text
    for cell in sweep.cells():
        assert f"`{cell.command(cell.workdir(runs))}`" in text


def test_only_selects_by_cell_key_or_method_name(tiny, capsys):
    path, runs, _ = tiny
    sweep = sweeps.load_sweep(str(path))
    assert [c.key for c in run.select(sweep.cells(), "seed1$")] == ["ce/default/seed1", "asloss-l2/default/seed1"]
    assert [c.key for c in run.select(sweep.cells(), r"ASLoss \(L2\)")] == ["asloss-l2/default/seed0",
                                                                            "asloss-l2/default/seed1"]
    assert run.main([str(path), f"--runs_dir={runs}", "--dry_run", "--only=asloss"]) == 0
    out = capsys.readouterr().out
    assert "tiny/asloss-l2/default/seed0" in out and "tiny/ce/" not in out
    assert run.main([str(path), f"--runs_dir={runs}", "--only=nothing-matches"]) == 2


def test_shards_split_the_cells_without_overlap(tiny, capsys):
    path, runs, _ = tiny
    keys = [c.key for c in sweeps.load_sweep(str(path)).cells()]
    shown = []
    for i in range(3):
        assert run.main([str(path), f"--runs_dir={runs}", "--dry_run", f"--shard={i}/3"]) == 0
        out = capsys.readouterr().out
        shown.append([k for k in keys if f"tiny/{k}\n" in out])
    assert sorted(sum(shown, [])) == sorted(keys) and shown[0] == keys[0::3]
    assert run.parse_shard(None) is None and run.parse_shard("1/2") == (1, 2)
    for bad in ("2/2", "1", "a/b", "-1/2"):
        with pytest.raises(ValueError, match="--shard"):
            run.parse_shard(bad)


def test_a_failing_cell_gets_error_txt_and_the_sweep_goes_on(tmp_path, capsys):
    sweep = Sweep(name="fails", base_config="configs/default.py", seeds=(0,),
                  methods={"Too big": {"batch_size": 4096}},  # valid config, but larger than the training set
                  common_overrides={"num_epochs": 1, "disable_progress_bar": True})
    assert run.run_sweep(sweep, tmp_path) == 1
    cell = sweep.cells()[0]
    assert "larger than the training set" in (cell.workdir(tmp_path) / "error.txt").read_text()
    assert "FAILED" in capsys.readouterr().out
    assert sweeps.cell_status(cell, tmp_path) == "failed"
    assert "failed: " in report.render(sweep, report.collect(sweep, tmp_path))


def _fake_cell(cell: sweeps.Cell, runs: pathlib.Path, accuracy=None, command=None, error=None, checkpoint=False,
               imbalance=None):
    workdir = cell.workdir(runs)
    workdir.mkdir(parents=True)
    (workdir / "command.txt").write_text((command or cell.command(workdir)) + "\n")
    if accuracy is not None:
        test = {key: accuracy for key, _ in report.METRICS}
        test["few_shot_accuracy"] = None
        metrics = {"test": test, "epochs_trained": 3, "stopped_early": True}
        if imbalance:
            metrics["imbalance"] = imbalance
        (workdir / "metrics.json").write_text(json.dumps(metrics))
        (workdir / "wall_time.txt").write_text("12.5\n")
    if error:
        (workdir / "error.txt").write_text(f"Traceback ...\n{error}\n")
    if checkpoint:
        (workdir / "checkpoints" / "1").mkdir(parents=True)


def test_report_mean_std_missing_stale_and_grid_columns(tmp_path):
    sweep = Sweep(name="fake", base_config="configs/default.py", methods={"A": {}, "B (x)": {"loss.weight": 1.0}},
                  seeds=(0, 1, 2), grid={"data.imbalance.ratio": [10.0, 100.0]})
    cells = {c.key: c for c in sweep.cells()}
    for seed, acc in enumerate((0.5, 0.6, 0.7)):
        _fake_cell(cells[f"a/ratio=10.0/seed{seed}"], tmp_path, accuracy=acc)
    _fake_cell(cells["b-x/ratio=100.0/seed0"], tmp_path, accuracy=0.25)
    _fake_cell(cells["b-x/ratio=100.0/seed1"], tmp_path, accuracy=0.99, command="python -m something --else")
    _fake_cell(cells["b-x/ratio=100.0/seed2"], tmp_path, error="ValueError: boom")
    _fake_cell(cells["a/ratio=100.0/seed0"], tmp_path, checkpoint=True)

    results = report.collect(sweep, tmp_path)
    status = {r.cell.key: r.status for r in results}
    assert status["b-x/ratio=100.0/seed1"] == "stale" and status["b-x/ratio=100.0/seed2"] == "failed"
    assert status["a/ratio=100.0/seed0"] == "partial" and status["a/ratio=10.0/seed1"] == "done"
    text = report.render(sweep, results)
    lines = text.splitlines()
    assert "| Method | ratio | n | Accuracy | Balanced acc. | Macro F1 | Minority F1 | Many-shot acc. |" in text
    assert "| A | 10.0 | n=3 | 60.00 ± 10.00 | 60.00 ± 10.00 |" in text and "| — |" in text
    assert "| B (x) | 100.0 | n=1 | 25.00 | 25.00 |" in text  # the stale cell's 99% is not averaged in
    assert "| A | 100.0 | n=0 | — |" in text
    missing = lines[lines.index("## Missing cells (8)") + 2:]
    assert any("`b-x/ratio=100.0/seed2` — failed: ValueError: boom" in line for line in missing)
    assert any("`b-x/ratio=100.0/seed1` — stale" in line for line in missing)
    assert any("`a/ratio=100.0/seed0` — interrupted" in line for line in missing)
    assert "`a/ratio=10.0/seed1` (12.5 s, 3 epochs (stopped early))" in text
    out = tmp_path / "out" / "fake.md"
    sweep_file = tmp_path / "fake_sweep.py"
    sweep_file.write_text("from experiments.sweeps import Sweep\nSWEEP = Sweep(name='fake', base_config="
                          "'configs/default.py', methods={'A': {}, 'B (x)': {'loss.weight': 1.0}}, seeds=(0, 1, 2), "
                          "grid={'data.imbalance.ratio': [10.0, 100.0]})\n")
    assert report.main([str(sweep_file), f"--runs_dir={tmp_path}", f"--out={out}"]) == 0
    assert out.read_text() == report.render(sweep, results, sweep_arg=str(sweep_file))


def test_report_training_data_groups_cells_by_imbalance(tmp_path):
    sweep = Sweep(name="ir", base_config="configs/default.py", methods={"A": {}}, seeds=(0, 1),
                  grid={"data.imbalance.ratio": [10.0, 100.0]})
    cells = {c.key: c for c in sweep.cells()}
    ten = {"imbalance_ratio": 10.0, "balance_deviation": 0.25, "minority_classes": [5, 6]}
    _fake_cell(cells["a/ratio=10.0/seed0"], tmp_path, accuracy=0.5, imbalance=ten)
    _fake_cell(cells["a/ratio=10.0/seed1"], tmp_path, accuracy=0.5, imbalance=ten)
    _fake_cell(cells["a/ratio=100.0/seed0"], tmp_path, accuracy=0.5,
               imbalance={"imbalance_ratio": 100.0, "balance_deviation": 0.5, "minority_classes": [4, 5, 6]})
    _fake_cell(cells["a/ratio=100.0/seed1"], tmp_path, accuracy=0.5,
               imbalance={"imbalance_ratio": None, "balance_deviation": 0.5, "minority_classes": [4, 5, 6]})
    text = report.render(sweep, report.collect(sweep, tmp_path))
    assert "- IR = 10.0, BD = 0.250, minority classes [5, 6]: `ratio=10.0`" in text
    assert "- IR = 100.0, BD = 0.500, minority classes [4, 5, 6]: `a/ratio=100.0/seed0`" in text
    assert "- IR = ∞ (a class has no image), BD = 0.500, minority classes [4, 5, 6]: `a/ratio=100.0/seed1`" in text

    one = Sweep(name="one", base_config="configs/default.py", methods={"A": {}}, seeds=(0,))
    _fake_cell(one.cells()[0], tmp_path, accuracy=0.5, imbalance=ten)
    assert "- IR = 10.0, BD = 0.250, minority classes [5, 6]: every finished cell" in report.render(
        one, report.collect(one, tmp_path))
    assert "No finished cell recorded" in report.render(sweep, report.collect(sweep, tmp_path / "none"))


def test_report_per_class_recall_and_predictions(tmp_path):
    sweep = Sweep(name="pc", base_config="configs/default.py", methods={"A": {}}, seeds=(0, 1),
                  grid={"data.imbalance.ratio": [10.0]})
    for cell, confusion in zip(sweep.cells(), ([[8, 2, 0], [1, 9, 0], [0, 5, 5]], [[6, 4, 0], [0, 10, 0], [0, 3, 7]])):
        _fake_cell(cell, tmp_path, accuracy=0.5)
        metrics = json.loads((cell.workdir(tmp_path) / "metrics.json").read_text())
        metrics["test"].update(per_class_recall=[row[i] / sum(row) for i, row in enumerate(confusion)],
                               confusion=confusion)
        (cell.workdir(tmp_path) / "metrics.json").write_text(json.dumps(metrics))
        (cell.workdir(tmp_path) / "class_counts.json").write_text(
            json.dumps({"train": [100, 50, 10], "class_names": ["cat", "dog", "owl"]}))
    text = report.render(sweep, report.collect(sweep, tmp_path))
    assert "| Method | grid | seeds | cat | dog | owl |" in text
    assert "| training images | ratio=10.0 | | 100 | 50 | 10 |" in text
    assert "| A: recall % | ratio=10.0 | 2 | 70.0 | 95.0 | 60.0 |" in text
    assert "| A: predicted | ratio=10.0 | 2 | 8 | 16 | 6 |" in text


def test_runner_refuses_a_stale_cell(tmp_path, capsys):
    sweep = Sweep(name="stale", base_config="configs/default.py", methods={"A": {}}, seeds=(0,))
    _fake_cell(sweep.cells()[0], tmp_path, accuracy=0.5, command="python -m imbalance_jax.main --config=old.py")
    assert run.run_sweep(sweep, tmp_path) == 1
    assert "NOT RUN" in capsys.readouterr().out


def test_mean_std_is_the_sample_std():
    assert report.mean_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5, np.std([1, 2, 3, 4], ddof=1)))
    assert report.mean_std([0.3]) == (0.3, None)
    assert report.format_percent([]) == "—"
    with pytest.raises(ValueError, match="at least one"):
        report.mean_std([])


def test_overrides_round_trip_through_the_command_line():
    sweep = Sweep(name="types", base_config="configs/fmnist_lt_asl.py", seeds=(3,), methods={"M": {
        "data.imbalance.minority_classes": [0, 1], "early_stopping.enabled": True, "optimizer.learning_rate": 1e-4,
        "loss.aux.asl.layers": ("head_2", "head_last"), "loss.class_weighting.tau": "dynamic",
        "data.imbalance.ratio": 200}}, grid={"both": tied(("loss.aux.asl.constraint", "loss.aux.asl.weight"), [2.5])})
    cell = sweep.cells()[0]
    config = run.build_config(cell)
    assert config.data.imbalance.minority_classes == (0, 1) and config.early_stopping.enabled is True
    assert config.optimizer.learning_rate == 1e-4 and config.loss.aux.asl.layers == ("head_2", "head_last")
    assert config.data.imbalance.ratio == 200.0 and config.seed == 3
    assert config.loss.aux.asl.constraint == 2.5 and config.loss.aux.asl.weight == 2.5
    assert cell.key == "m/both=2.5/seed3"
    workdir = cell.workdir("/tmp/runs")
    assert shlex.split(cell.command(workdir))[3:] == cell.flags(workdir)


@pytest.mark.parametrize("overrides, message", [
    ({"loss.aux.asl.wieght": 0.0}, "--config.loss.aux.asl.wieght=0.0"),
    ({"loss.aux.asl.layers": ("head_4",)}, "'head_4' is not a feature"),
    ({"data.imbalance.ratio": "abc"}, "--config.data.imbalance.ratio=abc"),
    ({"model.classifier": "linear"}, "config.loss.aux.affinity needs config.model.classifier='affinity'"),
    ({"model.affinity.distance": "cosine"}, "config.model.affinity.distance must be one of"),
])
def test_validation_catches_bad_overrides(overrides, message):
    config = "configs/fmnist_lt_affinity.py" if any("affinity" in k or "classifier" in k for k in overrides) \
        else "configs/fmnist_lt_asl.py"
    sweep = Sweep(name="bad", base_config=config, methods={"M": overrides}, seeds=(0,))
    problems = run.validate_cells(sweep.cells())
    assert len(problems) == 1 and message in problems[0] and problems[0].startswith("bad/m/default/seed0: ")


@pytest.mark.parametrize("kwargs, message", [
    ({"methods": {}}, "non-empty dict"),
    ({"methods": {"A": {"seed": 1}}}, "set per cell"),
    ({"methods": {"A": {}, "a": {}}}, "share the directory"),
    ({"methods": {"A": {"config": "configs/nope.py"}}}, "does not exist"),
    ({"methods": {"A": {"loss..weight": 1.0}}}, "not a dotted config path"),
    ({"methods": {"A": {"loss.weight": None}}}, "a value must be"),
    ({"seeds": ()}, "non-empty tuple"),
    ({"seeds": (0, 0)}, "duplicates"),
    ({"name": "a b"}, "Sweep.name"),
    ({"grid": {"data.imbalance.ratio": []}}, "non-empty list"),
    ({"grid": {"x": [Setting("a", {"loss.weight": 1.0}), 2.0]}}, "mixes"),
    ({"grid": {"model.affinity.sigma": [1.0], "loss.aux.affinity.sigma": [1.0]}}, "also called 'sigma'"),
])
def test_sweep_rejects_bad_definitions(kwargs, message):
    args = {"name": "s", "base_config": "configs/default.py", "methods": {"A": {}}, **kwargs}
    with pytest.raises(ValueError, match=message):
        Sweep(**args)


def test_every_issue_sweep_exists_with_enough_seeds():
    assert set(EXPECTED_SWEEPS) <= set(sweeps.sweep_names())
    for name in EXPECTED_SWEEPS:
        sweep = sweeps.load_sweep(name)
        assert sweep.name == name and len(sweep.seeds) >= 2
    for name in PAPER_SWEEPS:  # each paper on its own protocol, 3 seeds
        assert len(sweeps.load_sweep(name).seeds) == 3
    assert len(sweeps.load_sweep("asl_fourclass").methods) == 6
    tricdb = sweeps.load_sweep("tricdb_rho")
    assert set(tricdb.methods) == {"CE", "CDB-CE", "TriCDB-CE", "LDAM-DRW", "Logit adjustment",
                                   "CDB-CE (val 100)", "TriCDB-CE (val 100)"}
    for cell in tricdb.cells():  # CDB's weights from 100 validation images per class only in the "(val 100)" rows
        assert (("data.val_per_class", 100) in cell.overrides) == ("(val 100)" in cell.method), cell.key
    assert len(sweeps.load_sweep("silk_grid").rows()) == 8
    silk = sweeps.load_sweep("silk_converged")  # the rows grayscale images can test: no colour term
    assert len(silk.cells()) == 12 and {dict(c.overrides)["data.sampler"] for c in silk.cells()} == {
        "random", "class_balanced"}
    assert all(dict(c.overrides)["loss.aux.colour_similarity.weight"] == 0.0 for c in silk.cells())


@pytest.mark.parametrize("name", sweeps.sweep_names())
def test_sweep_file_builds_every_cell_config(name):
    """A typo in an override path or value, or a missing feature layer, fails here."""
    sweep = sweeps.load_sweep(name)
    cells = sweep.cells()
    assert len({c.key for c in cells}) == len(cells) == len(sweep.rows()) * len(sweep.seeds)
    assert run.validate_cells(cells) == []


def test_paired_difference_interval_by_hand():
    # differences 1, 2, 3 points: mean 2, sd 1, half-width t(0.975, 2) * 1 / sqrt(3) = 4.303 / 1.732 = 2.484
    assert report.paired_difference([0.01, 0.02, 0.03]) == "+2.00 [-0.48, +4.48] (n=3)"
    assert report.paired_difference([-0.005]) == "-0.50 (n=1)"
    assert report.paired_difference([]) == "—"


def test_report_paired_differences_and_posthoc(tmp_path):
    sweep = Sweep(name="pairs", base_config="configs/default.py", methods={"Base": {}, "New": {"loss.weight": 1.0}},
                  seeds=(0, 1, 2), comparisons=(("New", "Base"),))
    cells = {c.key: c for c in sweep.cells()}
    for seed in range(3):
        _fake_cell(cells[f"base/default/seed{seed}"], tmp_path, accuracy=0.5 + 0.1 * seed)
        _fake_cell(cells[f"new/default/seed{seed}"], tmp_path, accuracy=0.51 + 0.1 * seed + 0.01 * seed)
    path = cells["base/default/seed0"].workdir(tmp_path) / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["posthoc"] = {"logit_adjustment": {"tau": 1.0, "metrics": {"test": {"balanced_accuracy": 0.6}}}}
    path.write_text(json.dumps(metrics))
    text = report.render(sweep, report.collect(sweep, tmp_path))
    assert "| New − Base | +2.00 [-0.48, +4.48] (n=3) |" in text
    assert "| Base | default | logit_adjustment | 1 | 50.00 | 60.00 |" in text
    with pytest.raises(ValueError, match="comparisons must be"):
        Sweep(name="bad", base_config="configs/default.py", methods={"A": {}}, comparisons=(("A", "B"),))


def test_results_md_blocks_are_rewritten_from_the_cells(tmp_path):
    sweep = Sweep(name="blocks", base_config="configs/default.py", methods={"Base": {}, "New": {"loss.weight": 1.0}},
                  seeds=(0,), comparisons=(("New", "Base"),))
    cells = {c.key: c for c in sweep.cells()}
    _fake_cell(cells["base/default/seed0"], tmp_path / "runs", accuracy=0.5)
    _fake_cell(cells["new/default/seed0"], tmp_path / "runs", accuracy=0.6)
    doc = tmp_path / "RESULTS.md"
    doc.write_text("# R\n<!-- table:blocks -->\nold\n<!-- /table -->\ntext\n<!-- paired:blocks -->\nx\n<!-- /paired -->\n")
    assert report.update_results_md(doc, sweep, report.collect(sweep, tmp_path / "runs"))
    text = doc.read_text()
    assert "old" not in text and "| Base | 50.00 |" in text and "| New − Base | +10.00 (n=1) |" in text
    assert text.startswith("# R\n<!-- table:blocks -->\n2/2 cells finished") and "\ntext\n" in text


def test_ctrl_c_stops_the_runner_with_one_line_saying_how_to_go_on(monkeypatch, capsys):
    from imbalance_jax.errors import Interrupted

    def interrupted(*args, **kwargs):
        raise Interrupted("interrupted; rerun the same command to resume from epoch 2 (checkpoint x/2)")

    monkeypatch.setattr(run, "run_sweep", interrupted)
    assert run.main(["digits_sanity", "--compilation_cache="]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sweep digits_sanity stopped: interrupted; rerun the same command to resume from epoch 2 "
                   "(checkpoint x/2)"]
