"""What JAX's persistent compilation cache saves per run: the same short run twice in fresh processes, first with an
empty cache folder, then with the folder the first run filled (``JAX_COMPILATION_CACHE_DIR``, as
``python -m experiments.run`` sets it), and once without the cache. Prints a Markdown table of wall times.

    .venv/bin/python experiments/benchmarks/compilation_cache.py [--configs configs/default.py,...] [--repeats 2]

Each run is ``python -m imbalance_jax.main --config=C --workdir=<tmp> --config.num_epochs=1`` in a new process (so
start-up, data loading, compilation, one epoch and the final evaluation are all timed). The load average of the
machine is printed next to the numbers, since other processes share its cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def timed_run(config: str, cache_dir: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    if cache_dir:
        env["JAX_COMPILATION_CACHE_DIR"] = cache_dir
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "imbalance_jax.main", f"--config={config}", f"--workdir={workdir}",
                        "--config.num_epochs=1", "--config.disable_progress_bar=True"], cwd=REPO, env=env,
                       check=True, capture_output=True)
        return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="configs/default.py,configs/fmnist4_asl.py,configs/fmnist_lt_tricdb.py")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    print("| config | no cache (s) | empty cache (s) | warm cache (s) | saved per run |")
    print("|---|---|---|---|---|")
    for config in args.configs.split(","):
        none, cold, warm = [], [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as cache:
                none.append(timed_run(config, None))
                cold.append(timed_run(config, cache))
                warm.append(timed_run(config, cache))
        m = {k: statistics.median(v) for k, v in (("none", none), ("cold", cold), ("warm", warm))}
        print(f"| `{config}` | {m['none']:.1f} | {m['cold']:.1f} | {m['warm']:.1f} | "
              f"{m['none'] - m['warm']:.1f} s ({100 * (m['none'] - m['warm']) / m['none']:.0f} %) |", flush=True)
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
