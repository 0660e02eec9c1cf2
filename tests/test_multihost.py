"""Multi-host for real: two ``imbalance_jax.main`` processes joined by ``jax.distributed`` on 127.0.0.1 (gloo CPU
collectives, two fake CPU devices each) give the run of one process with four devices, with in-memory data (the
default digits) and with a file-backed image folder, where each process reads and decodes only its own files of
every global batch."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from imbalance_jax import parallel
from tests.test_file_pipeline import long_tailed_folder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 420  # both runs together; the loaded 2-core CI machine takes about a minute
# The tiny default config of the comparison: digits, one epoch, batches divisible by the four devices.
RUN_FLAGS = ("--config=configs/default.py", "--config.num_epochs=1", "--config.disable_progress_bar=True",
             "--config.batch_size=32", "--config.eval_batch_size=64")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment(device_count: int, **variables: str) -> dict[str, str]:
    """The test process's environment without its XLA flags and distributed variables, plus ``variables``."""
    env = {k: v for k, v in os.environ.items()
           if k not in parallel.DISTRIBUTED_VARIABLES and k not in ("XLA_FLAGS", "JAX_COORDINATOR_BIND_ADDRESS")}
    return {**env, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={device_count}",
            **variables}


def _run_all(commands: list[tuple[list[str], dict[str, str], str]], timeout: float) -> list[int]:
    """Starts every (argv, env, log path) at once, each in its own process group, and waits for all. When one
    fails, at the timeout, or on any error, every process group still running is killed (a process whose peer
    died would otherwise wait in a collective); coreutils' ``timeout``, where present, also kills each one should
    pytest itself be killed. Returns the exit codes."""
    guard = ["timeout", "-s", "KILL", str(int(timeout) + 30)] if shutil.which("timeout") else []
    procs = []
    try:
        for argv, env, log in commands:
            with open(log, "w") as out:
                procs.append(subprocess.Popen(guard + argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                              start_new_session=True))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            codes = [proc.poll() for proc in procs]
            if None not in codes or any(code not in (None, 0) for code in codes):
                break
            time.sleep(0.5)
        return [proc.poll() for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _assert_same_metrics(multi, single, path=""):
    """Integers (confusion matrices, counts) and accuracies exactly; the other floats to 1e-5 (the gloo all-reduce
    sums the gradient in another order than the in-process one, so losses differ in the last float32 bits)."""
    if isinstance(single, dict):
        assert set(multi) == set(single), path
        for key in single:
            _assert_same_metrics(multi[key], single[key], f"{path}.{key}")
    elif isinstance(single, list):
        assert len(multi) == len(single), path
        for i, (a, b) in enumerate(zip(multi, single)):
            _assert_same_metrics(a, b, f"{path}[{i}]")
    elif isinstance(single, float) and "accuracy" not in path:
        assert multi == pytest.approx(single, rel=1e-5, abs=1e-7), path
    else:
        assert multi == single, path


def _image_folder(root) -> list[str]:
    """4 classes of 40 12 x 12 RGB PNGs; the flags that train on them file-backed (two steps an epoch)."""
    long_tailed_folder(root, size=12, counts={f"class{c}": 40 for c in range(4)})
    return ["--config.data.name=image_folder", f"--config.data.dir={root}", "--config.data.storage=files",
            "--config.data.image_size=12", "--config.data.val_per_class=2", "--config.data.imbalance.ratio=3.0"]


@pytest.mark.parametrize("data", ["digits in memory", "image folder from files"])
def test_two_processes_match_one_process_with_four_devices(tmp_path, data):
    """Equal results also show that the processes' slices of each global batch are disjoint and complete: a file
    read by both processes, or by none, would change the batch and so the gradients."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    data_flags = _image_folder(tmp_path / "images") if data == "image folder from files" else []
    python = [sys.executable, "-m", "imbalance_jax.main", *RUN_FLAGS, *data_flags]
    multi_dir, single_dir = tmp_path / "two_processes", tmp_path / "one_process"
    commands = [([*python, f"--workdir={multi_dir}", "--config.multi_host=True"],
                 _environment(2, JAX_COORDINATOR_ADDRESS=address, JAX_COORDINATOR_BIND_ADDRESS=address,
                              JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)),
                 str(tmp_path / f"process_{i}.log")) for i in (0, 1)]
    commands.append(([*python, f"--workdir={single_dir}", "--config.num_devices=4"], _environment(4),
                     str(tmp_path / "single.log")))
    codes = _run_all(commands, TIMEOUT_S)
    logs = [(tmp_path / name).read_text() for name in ("process_0.log", "process_1.log", "single.log")]
    for code, log in zip(codes, logs):
        assert code == 0, f"exit code {code} (None: killed after {TIMEOUT_S} s or after a peer failed)\n{log[-3000:]}"
    assert "JAX process 0/2" in logs[0] and "JAX process 1/2" in logs[1]
    # Only process 0 writes the outputs (and prints the table); both take part in the checkpoint.
    assert "Test metrics after 1 epochs" in logs[0] and "Test metrics" not in logs[1]
    assert os.listdir(multi_dir / "checkpoints") == ["1"]

    multi = json.loads((multi_dir / "metrics.json").read_text())
    single = json.loads((single_dir / "metrics.json").read_text())
    _assert_same_metrics(multi, single)
    # The logits are all-gathered from both processes in the global example order.
    for split in ("val", "test"):
        with np.load(multi_dir / f"logits_{split}.npz") as a, np.load(single_dir / f"logits_{split}.npz") as b:
            np.testing.assert_array_equal(a["labels"], b["labels"])
            np.testing.assert_allclose(a["logits"], b["logits"], rtol=1e-5, atol=1e-5)


def test_incomplete_distributed_variables_stop_main_with_one_line(tmp_path):
    env = _environment(2, JAX_COORDINATOR_ADDRESS="127.0.0.1:1", JAX_PROCESS_ID="0")
    result = subprocess.run([sys.executable, "-m", "imbalance_jax.main", *RUN_FLAGS, f"--workdir={tmp_path}",
                             "--config.multi_host=True"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode != 0
    assert ("error: multi-host: JAX_COORDINATOR_ADDRESS, JAX_PROCESS_ID set but JAX_NUM_PROCESSES not"
            in result.stderr)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("environ, message", [
    ({"JAX_NUM_PROCESSES": "2"}, "JAX_NUM_PROCESSES set but JAX_COORDINATOR_ADDRESS, JAX_PROCESS_ID not"),
    ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"},
     "JAX_COORDINATOR_ADDRESS='127.0.0.1' must be HOST:PORT"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"},
     "JAX_NUM_PROCESSES='two' must be an integer"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"},
     "JAX_PROCESS_ID=2 must be in [0, JAX_NUM_PROCESSES=2)"),
])
def test_distributed_arguments_name_the_bad_variable(environ, message):
    with pytest.raises(ValueError) as info:
        parallel.distributed_arguments(environ)
    assert message in str(info.value)


def test_distributed_arguments_from_the_variables_or_auto_detection():
    assert parallel.distributed_arguments({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4",
                                           "JAX_PROCESS_ID": "3"}) == {
        "coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}
    # None set: jax.distributed detects SLURM / Open MPI / Cloud TPU itself.
    assert parallel.distributed_arguments({}) == {"coordinator_address": None, "num_processes": None,
                                                  "process_id": None}
