"""Never a silently wrong run: each mistake of issue #11 reproduced, with the behaviour it now gets.

| mistake | test |
|---|---|
| rerun a finished workdir with another loss | test_rerun_with_another_loss_is_refused_and_writes_nothing (+ _through_the_cli) |
| rerun with another learning rate and more epochs | test_rerun_with_another_learning_rate_and_more_epochs_is_refused, test_allow_config_change_... |
| rerun with another head width | test_rerun_with_another_head_width_is_one_message |
| two runs at once in one workdir | test_a_live_lock_refuses_a_second_run (+ _process), test_a_stale_lock_is_taken_over_... |
| --config.optimizer.learning_rate=1e6 | test_huge_learning_rate_stops_within_a_few_steps_through_the_cli, test_non_finite_step_... |
| newest checkpoint truncated / corrupted | test_truncated_newest_checkpoint_falls_back_..., test_flipped_bytes_..., test_no_readable_... |
| --config.foo=1 or a misspelt field | test_unknown_config_field_is_one_line |
| Ctrl-C | test_ctrl_c_says_which_epoch_a_rerun_resumes_from |

Digits, one device, tiny batches: a finished two-epoch run is trained once per module and copied.
"""

import glob
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from imbalance_jax import checkpoints, experiment, train, workdir
from imbalance_jax.errors import CheckpointError, DivergedError, Interrupted, WorkdirError
from imbalance_jax.experiment import ConfigError
from imbalance_jax.evaluation import outputs
from test_train import REPO, tiny_config

OUTPUT_FILES = ("config.json", "fingerprint.json", "metrics.json", "report.md")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished two-epoch run (checkpoints of epochs 1 and 2) and its metrics."""
    path = tmp_path_factory.mktemp("finished") / "run"
    metrics = train.train_and_evaluate(tiny_config(num_epochs=2), str(path))
    return path, metrics


@pytest.fixture
def run_copy(finished, tmp_path):
    """A private copy of the finished run."""
    target = tmp_path / "run"
    shutil.copytree(finished[0], target)
    return target


def _snapshot(path):
    return {name: (path / name).read_bytes() for name in OUTPUT_FILES if (path / name).exists()}


def _strict_json(text):
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


# --------------------------------------------------------------------------------------------- workdir guard
def test_rerun_with_another_loss_is_refused_and_writes_nothing(run_copy):
    before = _snapshot(run_copy)
    with pytest.raises(WorkdirError) as info:
        train.train_and_evaluate(tiny_config(num_epochs=2, **{"loss.name": "focal"}), str(run_copy))
    message = str(info.value)
    assert 'loss.name "ce" -> "focal"' in message and "\n" not in message
    assert "new --workdir" in message and "--config.allow_config_change=True" in message
    assert _snapshot(run_copy) == before  # config.json, metrics.json and report.md still describe the CE run
    assert not (run_copy / workdir.LOCK_FILE).exists()


def test_workdir_guard_refuses_before_the_data_is_loaded(run_copy, monkeypatch):
    def load_data(*args, **kwargs):
        raise AssertionError("the data was loaded before the workdir guard refused the run")

    monkeypatch.setattr(experiment, "splits_from_config", load_data)
    with pytest.raises(WorkdirError, match=r'loss.name "ce" -> "focal"'):
        train.train_and_evaluate(tiny_config(num_epochs=2, **{"loss.name": "focal"}), str(run_copy))


def test_a_config_without_a_required_field_is_refused_before_the_workdir_guard_reads_it(run_copy):
    config = tiny_config(num_epochs=2)
    del config["checkpoint"]
    with pytest.raises(ConfigError, match=r"missing required top-level field\(s\) \['checkpoint'\]"):
        train.train_and_evaluate(config, str(run_copy))


def test_rerun_with_another_learning_rate_and_more_epochs_is_refused(run_copy):
    before = _snapshot(run_copy)
    config = tiny_config(num_epochs=3, **{"optimizer.learning_rate": 0.01})
    with pytest.raises(WorkdirError) as info:
        train.train_and_evaluate(config, str(run_copy))
    message = str(info.value)
    assert "num_epochs 2 -> 3 (the cosine schedule decays over num_epochs)" in message
    assert "optimizer.learning_rate 0.003 -> 0.01" in message
    assert "checkpoints up to epoch 2" in message
    assert _snapshot(run_copy) == before


def test_allow_config_change_continues_the_run_and_records_the_change(run_copy):
    config = tiny_config(num_epochs=3, allow_config_change=True, **{"optimizer.learning_rate": 0.01})
    metrics = train.train_and_evaluate(config, str(run_copy))
    assert metrics["epochs_trained"] == 3
    change = {"epoch": 2, "fields": {"num_epochs": {"old": 2, "new": 3},
                                     "optimizer.learning_rate": {"old": 0.003, "new": 0.01}}}
    recorded = json.loads((run_copy / "config.json").read_text())
    assert recorded["config_changes"] == [change] and recorded["allow_config_change"] is True
    assert recorded["optimizer"]["learning_rate"] == 0.01
    assert json.loads((run_copy / "metrics.json").read_text())["config_changes"] == [change]
    report = (run_copy / "report.md").read_text()
    assert "config changed after epoch 2 (allow_config_change): num_epochs 2 -> 3; optimizer.learning_rate " \
           "0.003 -> 0.01" in report
    # The same command again: nothing differs from the recorded config any more; the history stays.
    again = train.train_and_evaluate(config, str(run_copy))
    assert again["config_changes"] == [change] and again["test"] == metrics["test"]


def test_rerun_with_another_head_width_is_one_message(run_copy):
    before = _snapshot(run_copy)
    with pytest.raises(WorkdirError, match=r"model\.head_widths \[32, 2\] -> \[48, 2\]"):
        train.train_and_evaluate(tiny_config(num_epochs=2, **{"model.head_widths": (48, 2)}), str(run_copy))
    # Even allowed, a config change cannot reshape the checkpoint: one message, nothing written.
    config = tiny_config(num_epochs=2, allow_config_change=True, **{"model.head_widths": (48, 2)})
    with pytest.raises(CheckpointError) as info:
        train.train_and_evaluate(config, str(run_copy))
    message = str(info.value)
    assert message.startswith(f"checkpoint {run_copy}/checkpoints/2 does not fit this config's model: "
                              "params/head/dense0/bias (32,) in the checkpoint, (48,) for this config")
    assert "use a new --workdir" in message and "\n" not in message
    assert _snapshot(run_copy) == before
    assert sorted(os.listdir(run_copy / "checkpoints")) == ["1", "2"]


def test_a_workdir_from_before_the_fingerprint_is_compared_with_its_config_json(run_copy):
    (run_copy / workdir.FINGERPRINT_FILE).unlink()
    with pytest.raises(WorkdirError, match=r"config in .*config\.json\): loss\.name \"ce\" -> \"focal\""):
        train.train_and_evaluate(tiny_config(num_epochs=2, **{"loss.name": "focal"}), str(run_copy))


def test_safe_fields_and_num_epochs_rules():
    recorded = experiment.flatten_config(tiny_config(num_epochs=10))
    safe = tiny_config(num_epochs=10, eval_batch_size=32, disable_progress_bar=False, nan_policy="skip_step",
                       **{"checkpoint.max_to_keep": 5, "evaluation.few_shot_threshold": 5})
    assert experiment.computation_changes(recorded, safe, trained_epochs=10) == []
    for field in experiment.SAFE_FIELDS:
        assert field in recorded, f"SAFE_FIELDS names {field}, which the config does not have"

    def changed(trained, **overrides):
        return [c.path for c in experiment.computation_changes(recorded, tiny_config(**overrides), trained)]

    assert changed(10, num_epochs=20) == ["num_epochs"]  # cosine: the schedule depends on num_epochs
    constant = experiment.flatten_config(tiny_config(num_epochs=10, **{"optimizer.schedule": "constant"}))
    for schedule in ("constant", "multistep"):
        base = tiny_config(num_epochs=10, **{"optimizer.schedule": schedule})
        recorded_s = experiment.flatten_config(base)
        longer = tiny_config(num_epochs=20, **{"optimizer.schedule": schedule})
        assert experiment.computation_changes(recorded_s, longer, trained_epochs=10) == [], schedule
    shorter = tiny_config(num_epochs=4, **{"optimizer.schedule": "constant"})
    assert [c.reason for c in experiment.computation_changes(constant, shorter, trained_epochs=6)] == \
        ["the checkpoints are already at epoch 6"]
    assert experiment.computation_changes(constant, shorter, trained_epochs=3) == []
    progressive = tiny_config(num_epochs=20, **{"optimizer.schedule": "constant", "data.sampler": "progressive"})
    assert [c.path for c in experiment.computation_changes(
        {**constant, "data.sampler": "progressive"}, progressive, trained_epochs=10)] == ["num_epochs"]
    assert changed(10, num_epochs=10, seed=1) == ["seed"]
    assert changed(10, num_epochs=10, batch_size=64) == ["batch_size"]
    # A field that the recorded config lacks (a workdir from an older version) counts unless it is safe.
    older = {k: v for k, v in recorded.items() if k not in ("nan_policy", "loss.focal_gamma")}
    assert [c.describe() for c in experiment.computation_changes(older, tiny_config(num_epochs=10), 10)] == \
        ["loss.focal_gamma (absent) -> 2.0"]


def test_config_options_are_checked():
    for field, value, message in [("nan_policy", "ignore", "config.nan_policy='ignore' is not valid; allowed: "
                                                           "['skip_step', 'stop']"),
                                  ("nan_max_consecutive_skips", 0, "config.nan_max_consecutive_skips=0 must be a "
                                                                   "positive integer"),
                                  ("checkpoint.max_to_keep", 0, "config.checkpoint.max_to_keep=0 must be a positive "
                                                                "integer"),
                                  ("checkpoint.max_to_keep", -1, "config.checkpoint.max_to_keep=-1 must be a "
                                                                 "positive integer")]:
        with pytest.raises(experiment.ConfigError, match=re.escape(message)):
            experiment.check(tiny_config(**{field: value}))


# ------------------------------------------------------------------------------------------------------ lock
def test_a_live_lock_refuses_a_second_run(tmp_path):
    lock = tmp_path / workdir.LOCK_FILE
    holder = {"pid": os.getpid(), "host": os.uname().nodename, "started": workdir._process_start(os.getpid()),
              "since": "2024-01-01 00:00:00"}
    lock.write_text(json.dumps(holder))
    with pytest.raises(WorkdirError) as info:
        train.train_and_evaluate(tiny_config(), str(tmp_path))
    assert str(info.value) == (f"{tmp_path} is in use by process {os.getpid()} on {holder['host']} (since "
                               f"2024-01-01 00:00:00) (lock file {lock}): wait for it to finish, or use another "
                               "--workdir")
    assert json.loads(lock.read_text()) == holder  # the other run's lock is left alone
    assert not (tmp_path / "config.json").exists() and not (tmp_path / "checkpoints").exists()


def test_a_lock_from_another_host_is_not_taken_over(tmp_path):
    (tmp_path / workdir.LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere.example"}))
    with pytest.raises(WorkdirError, match=r"locked by process 1 on elsewhere\.example .*a host this machine "
                                           r"cannot check: if that run has ended, delete .*\.lock"):
        with workdir.locked(str(tmp_path)):
            pass


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_stale_lock_is_taken_over_with_a_warning(run_copy, finished, caplog):
    pid = _dead_pid()
    (run_copy / workdir.LOCK_FILE).write_text(json.dumps({"pid": pid, "host": os.uname().nodename}))
    with caplog.at_level(logging.WARNING):
        metrics = train.train_and_evaluate(tiny_config(num_epochs=2), str(run_copy))
    assert f"process {pid} on {os.uname().nodename}" in caplog.text and "taking over its stale lock" in caplog.text
    assert metrics == finished[1]  # the finished run is re-evaluated as before
    assert not (run_copy / workdir.LOCK_FILE).exists()


def test_the_lock_is_exclusive_and_released(tmp_path):
    with workdir.locked(str(tmp_path)):
        assert json.loads((tmp_path / workdir.LOCK_FILE).read_text())["pid"] == os.getpid()
        with pytest.raises(WorkdirError, match="is in use by process"):
            with workdir.locked(str(tmp_path)):
                pass
    assert not (tmp_path / workdir.LOCK_FILE).exists()


# -------------------------------------------------------------------------------------------- divergence
def _nan_batch_in(monkeypatch, epoch: int, index: int):
    """train.train_batches with NaN images in batch ``index`` of ``epoch``."""
    real = train.train_batches

    def batches(*args, **kwargs):
        for i, batch in enumerate(real(*args, **kwargs)):
            if kwargs["epoch"] == epoch and i == index:
                batch = {**batch, "image": np.full_like(batch["image"], np.nan)}
            yield batch
    monkeypatch.setattr(train, "train_batches", batches)


def _count_steps(monkeypatch) -> list:
    calls = []
    real = train.compile_steps

    def counting(exp):
        train_fn, eval_fn = real(exp)

        def counted(state, batch):
            calls.append(1)
            return train_fn(state, batch)
        return counted, eval_fn
    monkeypatch.setattr(train, "compile_steps", counting)
    return calls


def test_non_finite_step_stops_the_run_within_a_few_steps(tmp_path, monkeypatch):
    _nan_batch_in(monkeypatch, epoch=1, index=3)
    calls = _count_steps(monkeypatch)
    with pytest.raises(DivergedError) as info:
        train.train_and_evaluate(tiny_config(num_epochs=3), str(tmp_path))
    steps = train.build_experiment(tiny_config()).steps_per_epoch
    bad_step = steps + 4
    assert str(info.value) == (
        f"training diverged: non-finite classification_loss=nan at step {bad_step} (epoch 2, batch 4 "
        f"of {steps}); the last good checkpoint is epoch 1 ({tmp_path}/checkpoints/1). Lower "
        "--config.optimizer.learning_rate or set --config.optimizer.grad_clip_norm, or skip such steps with "
        "--config.nan_policy=skip_step")
    assert len(calls) <= bad_step + train.NONFINITE_CHECK_LAG  # stopped within the check's lag
    assert not (tmp_path / "metrics.json").exists()  # nothing reports results of a diverged state
    report = (tmp_path / "report.md").read_text()
    assert "(diverged)" in report and f"**the run diverged**: training diverged: non-finite" in report
    assert os.listdir(tmp_path / "checkpoints") == ["1"]


def test_skip_step_skips_the_update_counts_it_and_finishes(tmp_path, monkeypatch):
    _nan_batch_in(monkeypatch, epoch=0, index=2)
    metrics = train.train_and_evaluate(tiny_config(nan_policy="skip_step"), str(tmp_path))
    text = (tmp_path / "metrics.json").read_text()
    assert _strict_json(text)["skipped_steps"] == metrics["skipped_steps"] == 1
    assert np.isfinite(metrics["train"]["loss"]) and np.isfinite(metrics["test"]["loss"])
    assert "1 training step(s) had a non-finite loss or gradient and were skipped" in \
        (tmp_path / "report.md").read_text()


def test_skip_step_leaves_the_state_unchanged_but_counts_the_step():
    import jax
    from imbalance_jax import parallel

    exp = train.build_experiment(tiny_config(nan_policy="skip_step"))
    skip_fn, _ = train.compile_steps(exp)
    stop_fn, _ = train.compile_steps(train.build_experiment(tiny_config()))
    batches = train.train_batches(exp.splits.train, exp.train_options, num_classes=10, sampler="random", seed=0,
                                  epoch=0, num_epochs=1)
    good = parallel.to_global(next(iter(batches)), exp.data_sharding)
    # A finite step is the same under both policies, to the bit (nan_policy is a safe field to change).
    after_skip, _ = skip_fn(train.initial_state(exp), good)
    after_stop, _ = stop_fn(train.initial_state(exp), good)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(after_skip), jax.device_get(after_stop))
    before = jax.device_get((after_skip.params, after_skip.opt_state, after_skip.batch_stats))
    bad = {**jax.device_get(good), "image": np.full(good["image"].shape, np.inf, np.float32)}
    state, metrics = skip_fn(after_skip, parallel.to_global(bad, exp.data_sharding))
    assert float(metrics["nonfinite"]) == 1.0 and int(state.step) == 2
    jax.tree.map(np.testing.assert_array_equal, jax.device_get((state.params, state.opt_state,
                                                                 state.batch_stats)), before)


def test_skip_step_gives_up_after_too_many_skips_in_a_row(tmp_path):
    config = tiny_config(nan_policy="skip_step", nan_max_consecutive_skips=3, **{"optimizer.learning_rate": 1e6})
    with pytest.raises(DivergedError, match=r"^training diverged: 3 steps in a row were skipped "
                                            r"\(config\.nan_max_consecutive_skips=3\), the last at step \d+ \(epoch "
                                            r"1, batch \d+ of \d+\) with non-finite .*; no checkpoint was saved "
                                            r"before it\. Lower --config\.optimizer\.learning_rate"):
        train.train_and_evaluate(config, str(tmp_path))
    assert "3 training step(s) had a non-finite loss" in (tmp_path / "report.md").read_text()


def test_json_outputs_are_strict_with_non_finite_values_flagged(tmp_path):
    path = str(tmp_path / "m.json")
    outputs.write_json(path, {"val": {"loss": float("inf"), "accuracy": 0.5, "per_class": [1.0, float("nan")]},
                              "n": np.float32(2.5)})
    assert _strict_json(open(path).read()) == {"val": {"loss": None, "accuracy": 0.5, "per_class": [1.0, None]},
                                               "n": 2.5, "non_finite": ["val.loss", "val.per_class.1"]}


# ------------------------------------------------------------------------------------------- checkpoints
def _state_files(step_dir):
    return [f for f in glob.glob(f"{step_dir}/state/**", recursive=True) if os.path.isfile(f)]


def test_truncated_newest_checkpoint_falls_back_to_the_previous_one(run_copy, finished, caplog):
    biggest = max(_state_files(run_copy / "checkpoints" / "2"), key=os.path.getsize)
    with open(biggest, "r+b") as f:
        f.truncate(os.path.getsize(biggest) // 2)
    with caplog.at_level(logging.WARNING):
        metrics = train.train_and_evaluate(tiny_config(num_epochs=2), str(run_copy))
    warnings = [r.getMessage() for r in caplog.records if "could not be read" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith(f"checkpoint {run_copy}/checkpoints/2 could not be read (")
    assert warnings[0].endswith(f"moved to {run_copy}/unreadable_checkpoints/checkpoints-2; resumed from epoch 1 "
                                "instead")
    # Epoch 2 retrained from epoch 1 gives the very same results; the fall-back is recorded.
    assert {k: v for k, v in metrics.items() if k != "run_notes"} == finished[1]
    assert metrics["run_notes"] == warnings
    assert warnings[0] in (run_copy / "report.md").read_text()
    assert sorted(os.listdir(run_copy / "checkpoints")) == ["1", "2"]


def test_flipped_bytes_in_the_newest_checkpoint_are_caught_by_its_digest(run_copy):
    exp = train.build_experiment(tiny_config(num_epochs=2))
    like = train.initial_state(exp)
    data = max(_state_files(run_copy / "checkpoints" / "2"), key=os.path.getsize)
    raw = bytearray(open(data, "rb").read())
    middle = len(raw) // 2
    raw[middle:middle + 16] = bytes(b ^ 0x55 for b in raw[middle:middle + 16])
    open(data, "wb").write(bytes(raw))
    restored = checkpoints.restore_latest(checkpoints.checkpoint_manager(str(run_copy), 2), like, str(run_copy))
    assert restored.step == 1
    assert len(restored.fallbacks) == 1 and "could not be read" in restored.fallbacks[0]


def test_no_readable_checkpoint_is_one_message_naming_the_directory(run_copy):
    for metadata in glob.glob(f"{run_copy}/checkpoints/*/meta/metadata"):
        open(metadata, "w").write("{")
    with pytest.raises(CheckpointError) as info:
        train.train_and_evaluate(tiny_config(num_epochs=2), str(run_copy))
    message = str(info.value)
    assert message.startswith(f"no checkpoint in {run_copy}/checkpoints can be read (epoch 2: JSONDecodeError: ")
    assert "; epoch 1: JSONDecodeError" in message and message.endswith(
        "delete that directory to start the run over, or use a new --workdir")


# ----------------------------------------------------------------------------------------------------- CLI
def _cli(workdir_path, *flags):
    return [sys.executable, "-m", "imbalance_jax.main", "--config=configs/default.py", f"--workdir={workdir_path}",
            "--config.num_devices=1", "--config.batch_size=32", "--config.eval_batch_size=64", *flags]


def _env():
    return {**os.environ, "JAX_PLATFORMS": "cpu"}


@pytest.mark.parametrize("flag, line", [
    ("--config.foo=1", "error: --config.foo: no such field in configs/default.py"),
    ("--config.optimizer.learnig_rate=0.1",
     "error: --config.optimizer.learnig_rate: no such field; did you mean --config.optimizer.learning_rate?"),
    ("--config.los.name=focal", "error: --config.los.name: no such field; did you mean --config.loss.name?"),
])
def test_unknown_config_field_is_one_line(tmp_path, flag, line):
    result = subprocess.run(_cli(tmp_path, flag), cwd=REPO, capture_output=True, text=True, timeout=300,
                            env=_env())
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [line]


def test_rerun_with_another_loss_is_refused_through_the_cli(run_copy):
    result = subprocess.run(_cli(run_copy, "--config.num_epochs=2", "--config.loss.name=focal"), cwd=REPO,
                            capture_output=True, text=True, timeout=300, env=_env())
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: {run_copy} holds a run of another config (checkpoints up to epoch 2")


def test_a_live_lock_refuses_a_second_process(tmp_path):
    with workdir.locked(str(tmp_path)):  # this test's process is the first run
        result = subprocess.run(_cli(tmp_path, "--config.num_epochs=1"), cwd=REPO, capture_output=True, text=True,
                                timeout=300, env=_env())
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert re.fullmatch(rf"error: {re.escape(str(tmp_path))} is in use by process {os.getpid()} on \S+ \(since "
                        rf".*\) \(lock file .*\.lock\): wait for it to finish, or use another --workdir",
                        result.stderr.strip().splitlines()[-1])


def test_huge_learning_rate_stops_within_a_few_steps_through_the_cli(tmp_path):
    result = subprocess.run(_cli(tmp_path, "--config.num_epochs=2", "--config.disable_progress_bar=True",
                                 "--config.optimizer.learning_rate=1e6"),
                            cwd=REPO, capture_output=True, text=True, timeout=300, env=_env())
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"error: training diverged: non-finite \S+_loss=(nan|inf|-inf)(, \S+_loss=(nan|inf|-inf))* "
                        r"at step \d+ \(epoch 1, batch \d+ of \d+\); no checkpoint was saved before it\. Lower "
                        r"--config\.optimizer\.learning_rate or set --config\.optimizer\.grad_clip_norm, or skip such "
                        r"steps with --config\.nan_policy=skip_step", last), last
    assert not (tmp_path / "metrics.json").exists()
    assert "**the run diverged**" in (tmp_path / "report.md").read_text()


def test_ctrl_c_says_which_epoch_a_rerun_resumes_from(tmp_path):
    # The progress bar is on: the per-epoch log line must land above it, not inside it.
    process = subprocess.Popen(_cli(tmp_path, "--config.num_epochs=50", "--config.disable_progress_bar=False"),
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.time() + 240
    while not (tmp_path / "checkpoints" / "2").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    last = stderr.rstrip().splitlines()[-1].split("\r")[-1]
    match = re.fullmatch(r"interrupted; rerun the same command to resume from epoch (\d+) \(checkpoint "
                         rf"{re.escape(str(tmp_path))}/checkpoints/(\d+)\)", last)
    assert match and match[1] == match[2] and int(match[1]) >= 2, last
    assert (tmp_path / "checkpoints" / match[1]).is_dir()
    assert not (tmp_path / workdir.LOCK_FILE).exists()
    epoch_lines = [line.split("\r")[-1] for line in stderr.splitlines() if "epoch 1: train loss" in line]
    assert len(epoch_lines) == 1 and epoch_lines[0].startswith("epoch 1: train loss"), epoch_lines


def test_interrupted_message_before_and_after_a_checkpoint(run_copy, tmp_path):
    assert train.interrupted_message(str(run_copy)) == (
        f"interrupted; rerun the same command to resume from epoch 2 (checkpoint {run_copy}/checkpoints/2)")
    assert train.interrupted_message(str(tmp_path / "empty")).startswith("interrupted before the first checkpoint")
    assert issubclass(Interrupted, KeyboardInterrupt)  # a sweep runner's `except Exception` does not swallow it
