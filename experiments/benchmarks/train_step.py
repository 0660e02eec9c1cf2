"""Images/s of the full jitted train step (forward, CE + auxiliary loss, backward, optimizer) vs PyTorch.

The JAX step is built through the project's real code path: the ``configs/fmnist_lt_*.py`` configs,
``imbalance_jax.experiment`` (``model_from_config``, ``objective_from_config``,
``optimizer_from_config``), ``train.initial_state`` and ``train.compile_steps`` (the jitted
``train.train_step`` with the state donated) on a 1-device ``('data',)`` mesh. Models: the
4-layer CNN ("cnn4") on 28x28x1 and ResNet-32 ("resnet32") on 32x32x3, batch 128, random images.
Variants (the loss of each config; "+ CE-only" rows are the same model with the auxiliary loss
removed, so the difference is the auxiliary loss alone):

  ce          softmax CE                                     (fmnist_lt_ce)
  asl         0.5 CE + 0.5 ASLoss(L2) on a (64,32,16,2) head (fmnist_lt_asl)
  triplet     CE + violating triplet on the backbone (TriCDB) (fmnist_lt_tricdb)
  clustering  CE + 0.5 semantic triplet + 0.5 colour loss     (fmnist_lt_clustering)
  affinity    affinity max-margin loss, m = 5 (no CE)         (fmnist_lt_affinity)

JAX is timed three ways: the step on a device-resident batch; the step plus the host-to-device
transfer of a numpy batch every step (what ``train.train_epoch`` does); and ``--scan-steps`` steps
per dispatch (``lax.scan`` over a stacked batch). For an auxiliary variant, the same model's
CE-only step and the auxiliary terms alone (value and gradient w.r.t. the features and params they
read) are timed in the same loop. PyTorch runs the equivalent model
(``torch_peers.py``) and step (``zero_grad``, forward, loss, ``backward``, ``optimizer.step``) with
2 and 1 threads; the faster is compared. All contenders are interleaved repeat by repeat.

XLA flags must be set before JAX starts: ``--xla-flags "--xla_cpu_use_onednn=true"`` sets them
for this process; ``--flag-sweep`` reruns the script (CE only) once per flag set in
``FLAG_SETS`` and prints a JAX/PyTorch ratio per set.

Usage (the benchmark venv):
  .venv-bench/bin/python experiments/benchmarks/train_step.py
  .venv-bench/bin/python experiments/benchmarks/train_step.py --flag-sweep
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

FLAG_SETS = [  # each on top of the entry points' defaults (imbalance_jax.xla_flags), except the second
    "",
    "--jaxlib-xla-defaults",
    "--xla_cpu_use_thunk_runtime=false",
    "--xla_cpu_use_onednn=true",
    "--xla_cpu_experimental_onednn_custom_call=true",
    "--xla_cpu_use_xnnpack=true",
    "--xla_cpu_multi_thread_eigen=false",
    "--xla_cpu_enable_fast_math=true",
]
VARIANTS = ("ce", "asl", "triplet", "clustering", "affinity")
MODELS = {"cnn4": (28, 28, 1), "resnet32": (32, 32, 3)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=lambda s: s.split(","), default=list(MODELS))
    p.add_argument("--variants", type=lambda s: s.split(","), default=list(VARIANTS))
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="steps per timed run")
    p.add_argument("--repeats", type=int, default=5, help="timed runs (median)")
    p.add_argument("--scan-steps", type=int, default=5, help="steps per dispatch of the scanned step (0: off)")
    p.add_argument("--scan-rolled", action="store_true",
                   help="keep the scan a loop (default: unrolled; XLA:CPU runs a rolled loop ~20x slower)")
    p.add_argument("--flax-maxpool", action="store_true",
                   help="reference: cnn4's 2x2 max-pool as flax.linen.max_pool (reduce_window), as before the "
                        "reshape + max of models.common.max_pool_2x2")
    p.add_argument("--torch-threads", type=lambda s: [int(x) for x in s.split(",")], default=[2, 1])
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--torch-device", default="cpu", help="cpu or cuda (JAX uses its default backend)")
    p.add_argument("--stub-tensorflow", action="store_true",
                   help="where TensorFlow is not installed (the GPU image), stand in a MagicMock for it: "
                        "the step on synthetic batches never uses tf.data")
    p.add_argument("--dtype", default="float32", help="config.model.dtype of the JAX backbone")
    p.add_argument("--xla-flags", default="", help="extra XLA_FLAGS for this process")
    p.add_argument("--jaxlib-xla-defaults", action="store_true",
                   help="reference: jaxlib's own XLA flags, without the entry points' imbalance_jax.xla_flags")
    p.add_argument("--flag-sweep", action="store_true",
                   help="run the CE-only step once per XLA flag set (subprocesses)")
    p.add_argument("--output", default=None)
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.xla_flags:  # before JAX is imported
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + ARGS.xla_flags).strip()
if ARGS is not None and not ARGS.jaxlib_xla_defaults:  # what python -m imbalance_jax.main runs with
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from imbalance_jax.xla_flags import set_default_xla_flags

    set_default_xla_flags()

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_utils  # noqa: E402

if ARGS is not None and ARGS.stub_tensorflow and bench_utils.stub_tensorflow_if_missing():
    print("TensorFlow is not installed: stubbed (the train step does not use it)", flush=True)

import functools  # noqa: E402

import flax.linen  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from configs import fmnist_lt_affinity, fmnist_lt_asl, fmnist_lt_ce, fmnist_lt_clustering, fmnist_lt_tricdb  # noqa: E402
from configs import tricdb_cifar10_lt  # noqa: E402
from imbalance_jax import experiment, models, parallel, train  # noqa: E402
from imbalance_jax.data import DataSplits, PipelineOptions  # noqa: E402
from imbalance_jax.data.sources import ArraySplit  # noqa: E402

CONFIGS = {"ce": fmnist_lt_ce, "asl": fmnist_lt_asl, "triplet": fmnist_lt_tricdb,
           "clustering": fmnist_lt_clustering, "affinity": fmnist_lt_affinity}


# ------------------------------------------------------------------------------------------ JAX
def make_config(model: str, variant: str, with_aux: bool, dtype: str) -> ml_collections.ConfigDict:
    config = CONFIGS[variant].get_config()
    config.model.name = model
    config.model.dtype = dtype
    if model == "resnet32":  # the CIFAR-LT optimizer (SGD, momentum, weight decay, warm-up)
        config.optimizer = tricdb_cifar10_lt.get_config().optimizer
    if not with_aux:
        config.loss.name, config.loss.weight, config.loss.aux = "ce", 1.0, {}
    return config


def synthetic_batch(shape, batch: int, num_classes: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"image": rng.normal(size=(batch,) + tuple(shape)).astype(np.float32),
            "label": rng.integers(0, num_classes, batch).astype(np.int32),
            "valid": np.ones(batch, bool),
            "colour_hist": rng.dirichlet(np.ones(25), batch).astype(np.float32)}


def build_jax(config: ml_collections.ConfigDict, shape, batch_size: int):
    """The Experiment of ``config`` on synthetic in-memory data, its initial state and train step."""
    num_classes = 10
    images = np.zeros((batch_size,) + tuple(shape), np.uint8)
    labels = np.arange(batch_size) % num_classes
    split = ArraySplit(images, labels)
    mean, std = np.zeros(shape[-1], np.float32), np.ones(shape[-1], np.float32)
    splits = DataSplits(split, None, split, num_classes, [str(i) for i in range(num_classes)], mean, std)
    counts = np.round(5000 * 0.01 ** (np.arange(num_classes) / (num_classes - 1)))
    mesh = parallel.create_mesh(1)
    objective = experiment.objective_from_config(config.loss, counts)
    weighting = experiment.class_weighting_from_config(config.loss, counts)
    tx, schedule = experiment.optimizer_from_config(config.optimizer, 100, int(config.num_epochs))
    model = experiment.model_from_config(config.model, num_classes, experiment.classifier_name(config))
    opts = PipelineOptions(global_batch_size=batch_size, mean=mean, std=std)
    exp = experiment.Experiment(config, experiment.training_options(config), splits, mesh, model, objective,
                                weighting, tx, schedule, 100, opts, opts, {"train": {}, "val": {}, "test": {}})
    state = train.initial_state(exp)
    train_fn, _ = train.compile_steps(exp)
    return exp, state, train_fn


def max_pool_2x2_flax(x: jax.Array) -> jax.Array:
    """The reference the project's reshape + max ``models.common.max_pool_2x2`` replaced (``--flax-maxpool``)."""
    return flax.linen.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")


def scanned_step(exp: experiment.Experiment, steps: int, unroll: bool = True):
    """``steps`` train steps in one dispatch: lax.scan over a batch stacked on a leading axis."""

    def run(state, batches):
        def body(s, b):
            s, metrics = train.train_step(s, b, model=exp.model, objective=exp.objective, schedule=exp.schedule)
            return s, metrics["loss"]

        return jax.lax.scan(body, state, batches, unroll=unroll)

    stacked = NamedSharding(exp.mesh, P(None, "data"))
    return jax.jit(run, in_shardings=(exp.replicated, stacked), out_shardings=(exp.replicated, exp.replicated),
                   donate_argnums=0), stacked


class JaxRunner:
    """Keeps the (donated) state between timed runs."""

    def __init__(self, config, shape, batch_size, fields, scan_steps, scan_unroll=True):
        self.exp, self.state, self.train_fn = build_jax(config, shape, batch_size)
        batch = synthetic_batch(shape, batch_size)
        self.np_batch = {k: v for k, v in batch.items() if k in fields}
        self.device_batch = parallel.to_global(self.np_batch, self.exp.data_sharding)
        self.scan_steps = scan_steps
        if scan_steps:
            self.scan_fn, sharding = scanned_step(self.exp, scan_steps, scan_unroll)
            stacked = {k: np.stack([v] * scan_steps) for k, v in self.np_batch.items()}
            self.stacked = {k: jax.device_put(v, sharding) for k, v in stacked.items()}
        self.memory = self.train_fn.lower(self.state, self.device_batch).compile().memory_analysis()
        self.aux_fn = self._aux_value_and_grad()

    def _aux_value_and_grad(self):
        """The auxiliary terms alone, fwd + bwd w.r.t. the features they read (and the params they use),
        on this batch's features: their increment over the CE-only step, without the step's noise."""
        terms = self.exp.objective.aux
        if not terms:
            return None
        _, features, _ = models.apply_model(self.exp.model, self.state.params, self.state.batch_stats,
                                           self.device_batch["image"], train=False)
        features = {k: v for k, v in features.items() if any(k in t.layers for t in terms)}
        params = jax.tree.map(jnp.copy, self.state.params)  # the state itself is donated to the step
        batch = self.device_batch

        def aux(feats, p):
            return sum(t.weight * t(feats, batch, p) for t in terms)

        fn = jax.jit(jax.value_and_grad(aux, argnums=(0, 1)))
        jax.block_until_ready(fn(features, params))
        return lambda n: bench_utils.time_once(
            lambda: [fn(features, params) for _ in range(n)][-1], jax.block_until_ready) / n

    def steps(self, n: int) -> float:
        def go():
            metrics = None
            for _ in range(n):
                self.state, metrics = self.train_fn(self.state, self.device_batch)
            return metrics["loss"]
        return bench_utils.time_once(go, jax.block_until_ready)

    def steps_with_transfer(self, n: int) -> float:
        def go():
            metrics = None
            for _ in range(n):
                self.state, metrics = self.train_fn(self.state, parallel.to_global(self.np_batch, self.exp.data_sharding))
            return metrics["loss"]
        return bench_utils.time_once(go, jax.block_until_ready)

    def scanned(self, n: int) -> float:
        def go():
            losses = None
            for _ in range(max(1, n // self.scan_steps)):
                self.state, losses = self.scan_fn(self.state, self.stacked)
            return losses
        return bench_utils.time_once(go, jax.block_until_ready)


# -------------------------------------------------------------------------------------- PyTorch
class TorchRunner:
    def __init__(self, config, model_name, variant, with_aux, shape, batch_size, device="cpu"):
        import torch

        import torch_peers

        self.torch = torch
        m = config.model
        affinity = variant == "affinity"
        self.model = torch_peers.TorchClassifier(
            model_name, shape, 10, head_widths=tuple(m.get("head_widths", ()) or ()),
            dropout=float(m.get("dropout", 0.0)), classifier=m.get("classifier", "linear"),
            classifier_activation=m.get("classifier_activation", "none"),
            num_centres=int(m.affinity.num_centres) if affinity else 5)
        self.model.to(device).train()
        self.sync = bench_utils.use_torch_device(torch, device)
        o = config.optimizer
        if o.name == "sgd":
            self.opt = torch.optim.SGD(self.model.parameters(), lr=float(o.learning_rate),
                                       momentum=float(o.momentum), weight_decay=float(o.get("weight_decay", 0.0)))
        else:
            self.opt = torch.optim.Adam(self.model.parameters(), lr=float(o.learning_rate))
        self.objective = torch_peers.torch_objective(variant if with_aux else "ce")
        batch = synthetic_batch(shape, batch_size)
        self.x = torch.from_numpy(batch["image"]).permute(0, 3, 1, 2).contiguous().to(device)
        self.y = torch.from_numpy(batch["label"]).long().to(device)
        self.hist = torch.from_numpy(batch["colour_hist"]).to(device)

    def steps(self, n: int, threads: int) -> float:
        self.torch.set_num_threads(threads)

        def go():
            for _ in range(n):
                self.opt.zero_grad(set_to_none=True)
                logits, features = self.model(self.x)
                loss = self.objective(logits, features, self.y, self.hist, self.model)
                loss.backward()
                self.opt.step()
        return bench_utils.time_once(go, self.sync)


# ------------------------------------------------------------------------------------------ main
def fields_of(config) -> set[str]:
    objective = experiment.objective_from_config(config.loss, np.ones(10))
    return {"image", "label", "valid"} | objective.batch_fields


def measure(args, model_name: str, variant: str) -> dict:
    """Rates (images/s) of the variant's step and, for an auxiliary variant, of the CE-only step of
    the same model, all timed in one interleaved loop (so machine load hits every contender)."""
    shape = MODELS[model_name]
    configs = {"aux": make_config(model_name, variant, True, args.dtype)}
    if variant != "ce":
        configs["base"] = make_config(model_name, variant, False, args.dtype)
    jax_runners = {k: JaxRunner(c, shape, args.batch_size, fields_of(c), args.scan_steps if k == "aux" else 0,
                                not args.scan_rolled) for k, c in configs.items()}
    names, contenders = [], []

    def add(name, fn):
        names.append(name)
        contenders.append(fn)

    add("jax", lambda: jax_runners["aux"].steps(args.steps))
    add("jax_transfer", lambda: jax_runners["aux"].steps_with_transfer(args.steps))
    if args.scan_steps:
        add("jax_scan", lambda: jax_runners["aux"].scanned(args.steps))
    if "base" in jax_runners:
        add("jax_base", lambda: jax_runners["base"].steps(args.steps))
        add("jax_aux_kernel", lambda: jax_runners["aux"].aux_fn(20))
    if not args.no_torch:
        for key, config in configs.items():
            runner = TorchRunner(config, model_name, variant, key == "aux", shape, args.batch_size,
                                 args.torch_device)
            for t in args.torch_threads:
                add(f"torch_{key}_{t}", functools.partial(runner.steps, args.steps, t))
    times = dict(zip(names, bench_utils.interleaved(contenders, args.repeats)))
    images = args.batch_size * args.steps
    out = {k: images / v for k, v in times.items() if k not in ("jax_scan", "jax_aux_kernel")}
    if "jax_aux_kernel" in times:
        out["aux_kernel_ms"] = 1e3 * times["jax_aux_kernel"]
    if "jax_scan" in times:
        out["jax_scan"] = args.batch_size * args.scan_steps * max(1, args.steps // args.scan_steps) / times["jax_scan"]
    mem = jax_runners["aux"].memory
    out["jax_temp_mib"] = mem.temp_size_in_bytes / 2 ** 20 if mem else None
    print(f"<!-- {model_name} {variant}: {out} -->", flush=True)
    return out


def fmt_rate(r) -> str:
    return "" if r is None else f"{r:.0f}"


def _best_torch(out: dict, key: str, threads) -> tuple:
    rates = [(out.get(f"torch_{key}_{t}"), t) for t in threads]
    rates = [(r, t) for r, t in rates if r is not None]
    return max(rates) if rates else (None, None)


def run(args) -> str:
    import torch

    if args.flax_maxpool:
        from imbalance_jax.models import small_cnn

        small_cnn.max_pool_2x2 = max_pool_2x2_flax
    bench_utils.set_torch_threads(torch)
    scan = f"scan x{args.scan_steps}" + (" (rolled)" if args.scan_rolled else " (unrolled)")
    header = ["model", "variant", "JAX img/s", "+ host transfer", scan, "JAX aux cost (step vs CE-only step)",
              "aux terms fwd+bwd ms", "aux terms / step",
              "PyTorch img/s (best thr.)", "PyTorch thr.", "JAX / PyTorch", "PyTorch aux cost"]
    rows = []
    for model_name in args.models:
        for variant in args.variants:
            out = measure(args, model_name, variant)
            best_t, bt = _best_torch(out, "aux", args.torch_threads)
            aux_cost = torch_cost = ""
            if "jax_base" in out:
                aux_cost = f"{100 * (out['jax_base'] / out['jax'] - 1):+.1f}%"
                base_t, _ = _best_torch(out, "base", args.torch_threads)
                if best_t and base_t:
                    torch_cost = f"{100 * (base_t / best_t - 1):+.1f}%"
            rows.append([model_name, variant, fmt_rate(out["jax"]), fmt_rate(out["jax_transfer"]),
                         fmt_rate(out.get("jax_scan")), aux_cost,
                         "" if "aux_kernel_ms" not in out else f"{out['aux_kernel_ms']:.2f}",
                         "" if "aux_kernel_ms" not in out else
                         f"{100 * out['aux_kernel_ms'] / (1e3 * args.batch_size / out['jax']):.1f}%",
                         fmt_rate(best_t), bt or "",
                         "" if not best_t else f"{out['jax'] / best_t:.2f}", torch_cost])
            print("| " + " | ".join(str(c) for c in rows[-1]) + " |", flush=True)
    flags = os.environ.get("XLA_FLAGS", "") or "(none)"
    intro = (f"{bench_utils.machine_line()}\nBatch {args.batch_size}, float32 ({args.dtype} backbone in JAX); "
             f"PyTorch on {args.torch_device}; "
             f"{args.steps} steps per timed run, median of {args.repeats} interleaved runs after one warm-up; "
             f"XLA_FLAGS: {flags}; max-pool: {'flax.linen.max_pool (reference patch)' if args.flax_maxpool else 'reshape + max (models.common)'}. "
             f"'aux cost' = (CE-only rate / rate with the auxiliary loss) - 1, same model, same timing loop; "
             f"'aux terms' = the auxiliary terms alone (value and gradient w.r.t. the features and params "
             f"they read, 20 calls per run), as a share of the step time.")
    return intro + "\n\n" + bench_utils.markdown_table(header, rows, "llrrrrrrrrrr")


def flag_sweep(args) -> str:
    """Reruns this script (CE only) per XLA flag set; each prints its own JAX/PyTorch ratio."""
    rows = []
    for flags in FLAG_SETS:
        cmd = [sys.executable, os.path.abspath(__file__), "--variants", "ce", "--models", ",".join(args.models),
               "--steps", str(args.steps), "--repeats", str(args.repeats), "--scan-steps", "0",
               "--batch-size", str(args.batch_size), "--dtype", args.dtype, "--torch-threads",
               ",".join(str(t) for t in args.torch_threads)]
        if flags:
            cmd += [f"--xla-flags={flags}"]
        if flags == "--jaxlib-xla-defaults":
            cmd = [c for c in cmd if not c.startswith("--xla-flags=")] + [flags]
        if args.flax_maxpool:
            cmd += ["--flax-maxpool"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ") and " ce " in ln and "---" not in ln]
        if proc.returncode != 0 or not lines:
            err = (proc.stderr.strip().splitlines() or ["failed"])[-1][:120]
            rows.append([flags or "(imbalance_jax defaults)", "", "", "", f"failed: {err}"])
            continue
        for line in lines[: len(args.models)]:
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows.append([flags or "(imbalance_jax defaults)", cells[0], cells[2], cells[8], cells[10]])
        print(rows[-1], flush=True)
    return bench_utils.markdown_table(["XLA_FLAGS", "model", "JAX img/s", "PyTorch img/s", "JAX / PyTorch"],
                                      rows, "llrrr")


def main() -> None:
    args = ARGS or parse_args()
    table = flag_sweep(args) if args.flag_sweep else run(args)
    bench_utils.emit_table(table, args.output)


if __name__ == "__main__":
    main()
