"""Loss kernels of ``imbalance_jax.losses`` against PyTorch peers: fwd+bwd time and equal values.

For every kernel and batch size B (D = 128 embeddings, C = 10 classes, random labels), the
jitted ``jax.value_and_grad`` is timed next to the PyTorch version (forward + ``backward()``)
in the same process, interleaved repeat by repeat (``bench_utils.interleaved``), and the
values and gradients of both are compared on the same inputs.

PyTorch peers:

* ``triplet_loss`` (sq_l2, margin 0.2): pytorch-metric-learning (pml) ``TripletMarginLoss`` with
  ``LpDistance(normalize_embeddings=False, p=2, power=2)`` (squared L2) and
  - mining "violating": no miner (pml then uses all valid triplets) and ``AvgNonZeroReducer``
    (mean over the triplets with loss > 0) - exactly our "violating";
  - mining "all": no miner, ``MeanReducer``;
  - mining "hard": ``BatchHardMiner``, ``MeanReducer``;
  - mining "semihard": ``TripletMarginMiner(type_of_triplets="semihard")``, ``MeanReducer``
    (pml selects d_ap < d_an <= d_ap + margin, we use a strict upper bound: equal up to ties).
  pml materialises every selected triplet as three int64 index tensors (plus a B^3 bool mask
  below 2^31 elements); it is skipped when those would exceed ``--pml-max-gib``.
* everything else: plain PyTorch written the way a PyTorch user would (``torch.cdist``,
  ``F.cross_entropy`` ...). The semantic triplet loss (silk paper) is the dense B x B x B hinge
  over anchor chunks (its gradient accumulated chunk by chunk), skipped above ``--torch-cubic-max-b``.

Threads: XLA:CPU uses both cores by default; PyTorch is timed with ``torch.set_num_threads(2)``
and, in the same run, with 1 thread (``--torch-threads``), and the faster of the two is compared:
on a machine where another process occupies a core, PyTorch's 2-thread OpenMP regions stall
(~24 ms per barrier measured here) while a single thread does not.

Usage (the benchmark venv, see README.md):
  .venv-bench/bin/python experiments/benchmarks/losses_vs_torch.py --batch-sizes 128,512,1024,4096
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import sys
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning import reducers as pml_reducers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_utils  # noqa: E402

from imbalance_jax import losses  # noqa: E402

GIB = 1 << 30
MARGIN = 0.2


# ------------------------------------------------------------------------------------------ inputs
def make_inputs(b: int, d: int, c: int, seed: int = 0) -> dict[str, np.ndarray]:
    """One set of numpy inputs shared by both frameworks."""
    rng = np.random.default_rng(seed)
    counts = np.round(1000 * 0.01 ** (np.arange(c) / (c - 1))).astype(np.float32)
    return {
        # Unit-scale embeddings (|e| ~ 1, distances ~ 2): float32 rounding of the distances is then
        # far below the margin, so both frameworks select the same triplets.
        "emb": (rng.normal(size=(b, d)) / np.sqrt(d)).astype(np.float32),
        "labels": rng.integers(0, c, b).astype(np.int32),
        "logits": rng.normal(size=(b, c)).astype(np.float32),
        "hist": rng.dirichlet(np.ones(25), b).astype(np.float32),
        "features": (0.1 * rng.normal(size=(b, d))).astype(np.float32),
        "prototypes": (0.1 * rng.normal(size=(c, 5, d))).astype(np.float32),
        "counts": counts,
        "accuracy": rng.uniform(0.2, 0.9, c).astype(np.float32),
    }


@dataclasses.dataclass
class Case:
    """A kernel and its PyTorch peer.

    ``jax_fn(*jax_args)`` and ``torch_fn(*torch_args)`` return the scalar loss; ``args`` names the
    inputs (keys of ``make_inputs``) and ``grad_args`` those differentiated (by position).
    ``torch_skip(b, inputs)`` returns a reason to skip the PyTorch side, or None.
    """

    name: str
    jax_fn: Callable
    torch_fn: Callable
    args: tuple[str, ...]
    grad_args: tuple[int, ...] = (0,)
    peer: str = "plain PyTorch"
    rtol: float = 1e-4
    torch_skip: Optional[Callable[[int, dict], Optional[str]]] = None
    torch_backward: Optional[Callable] = None  # custom fwd+bwd (returns the loss value)


# ---------------------------------------------------------------------------- PyTorch references
def pml_distance():
    return pml_distances.LpDistance(normalize_embeddings=False, p=2, power=2)


def pml_triplet(mining: str):
    reducer = pml_reducers.AvgNonZeroReducer() if mining == "violating" else pml_reducers.MeanReducer()
    loss = pml_losses.TripletMarginLoss(margin=MARGIN, distance=pml_distance(), reducer=reducer)
    miner = None
    if mining == "hard":
        miner = pml_miners.BatchHardMiner(distance=pml_distance())
    elif mining == "semihard":
        miner = pml_miners.TripletMarginMiner(margin=MARGIN, type_of_triplets="semihard",
                                              distance=pml_distance())

    def fn(emb, labels):
        if miner is None:
            return loss(emb, labels)
        return loss(emb, labels, miner(emb, labels))

    return fn


def _num_triplets(labels: np.ndarray) -> int:
    counts = np.bincount(labels)
    b = len(labels)
    return int(sum(n * (n - 1) * (b - n) for n in counts))


def pml_skip(max_gib: float, mining: str):
    def skip(b, inputs):
        if mining in ("hard",):
            return None
        # 3 int64 index tensors per triplet (+ the B^3 bool mask when B^3 < 2^31).
        need = 24 * _num_triplets(inputs["labels"]) + (b ** 3 if b ** 3 < 2 ** 31 else 0)
        if need > max_gib * GIB:
            return f"pml needs ~{need / GIB:.0f} GiB of triplet indices"
        return None

    return skip


def torch_asl(metric: str):
    def fn(emb, labels):
        if metric == "cosine":
            unit = F.normalize(emb, dim=1)
            dist = 1.0 - unit @ unit.T
        else:
            dist = torch.cdist(emb, emb, p=1.0 if metric == "l1" else 2.0)
        same = labels[:, None] == labels[None, :]
        upper = torch.ones_like(same).triu()
        inner_mask = (same & upper).float()
        outer_mask = (~same & upper).float()
        inner = (dist * inner_mask).sum() / inner_mask.sum().clamp(min=1)
        outer = (dist * outer_mask).sum() / outer_mask.sum().clamp(min=1)
        norms = emb.abs().sum(1) if metric == "l1" else emb.norm(dim=1)
        boundary = (norms - 1.0).abs().mean()
        return 1e-3 * inner - 1e-3 * outer + 1e-2 * boundary

    return fn


def torch_semantic_backward(chunk_elements: int):
    """Dense semantic triplet loss (unit vectors, Euclidean distance, margin 1, mean over all
    valid triplets), over anchor chunks; returns the loss after accumulating the gradient."""

    def run(emb, labels):
        unit = F.normalize(emb, dim=1)
        dist = torch.cdist(unit, unit)
        d = dist.detach().requires_grad_(True)
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool)
        ap = same & ~eye
        an = ~same
        count = (ap.sum(1) * an.sum(1)).sum().clamp(min=1).float()
        b = len(labels)
        rows = max(1, chunk_elements // (b * b))
        total = 0.0
        for start in range(0, b, rows):
            sl = slice(start, start + rows)
            hinge = F.relu(1.0 + d[sl, :, None] - d[sl, None, :])
            mask = ap[sl, :, None] & an[sl, None, :]
            part = (hinge * mask).sum() / count
            part.backward()
            total += float(part)
        dist.backward(d.grad)
        return total

    return run


def torch_affinity(emb, labels, prototypes, sigma=10.0, margin=0.75):
    c, m, d = prototypes.shape
    flat = prototypes.reshape(c * m, d)
    dist = (emb.pow(2).sum(1, keepdim=True) + flat.pow(2).sum(1)[None, :] - 2 * emb @ flat.T).clamp(min=0)
    sim = torch.exp(-dist / sigma).reshape(-1, c, m).amax(-1)
    true_sim = sim.gather(1, labels[:, None].long())
    hinge = F.relu(margin + sim - true_sim)
    other = 1.0 - F.one_hot(labels.long(), c).float()
    max_margin = (hinge * other).sum(1).mean()
    pd = torch.pdist(flat).pow(2)
    diversity = (pd - pd.mean()).pow(2).mean()
    return max_margin + diversity


def torch_colour(emb, hist):
    unit = F.normalize(emb, dim=1)
    dist = torch.cdist(unit, unit)
    target = 1.0 - torch.corrcoef(hist)
    off = ~torch.eye(len(emb), dtype=torch.bool)
    return (dist - target).abs()[off].mean()


def torch_focal(logits, labels, gamma=2.0):
    log_p = F.log_softmax(logits, dim=1).gather(1, labels[:, None].long())[:, 0]
    return (-(1 - log_p.exp()).pow(gamma) * log_p).mean()


def torch_ldam(logits, labels, counts, max_margin=0.5, scale=30.0):
    margins = counts.clamp(min=1).pow(-0.25)
    margins = margins * (max_margin / margins.max())
    adjusted = scale * (logits - F.one_hot(labels.long(), logits.shape[1]) * margins[labels.long()][:, None])
    return F.cross_entropy(adjusted, labels.long())


def torch_logit_adjusted(logits, labels, counts, tau=1.0):
    prior = counts.clamp(min=1)
    return F.cross_entropy(logits + tau * (prior.log() - prior.sum().log()), labels.long())


def torch_cdb(logits, labels, accuracy):
    acc = accuracy.clamp(0, 1)
    tau = torch.sigmoid(acc.max() / (acc.min() + 1e-4) - 1.0)
    w = (1 - acc).pow(tau)
    w = w * (len(w) / w.sum())
    return (w[labels.long()] * F.cross_entropy(logits, labels.long(), reduction="none")).mean()


# ----------------------------------------------------------------------------------------- cases
def build_cases(args) -> list[Case]:
    cases = []
    for mining in ("violating", "all", "hard", "semihard"):
        cases.append(Case(
            f"triplet_loss[sq_l2,{mining}]",
            functools.partial(losses.triplet_loss, margin=MARGIN, metric="sq_l2", mining=mining),
            pml_triplet(mining), ("emb", "labels"), peer="pytorch-metric-learning", rtol=1e-3,
            torch_skip=pml_skip(args.pml_max_gib, mining)))
    # normalize=True against pml's own defaults: TripletMarginLoss(margin) with LpDistance(normalize_embeddings=True,
    # p=2, power=1) and AvgNonZeroReducer, i.e. our l2 metric, "violating" mining, on L2-normalised embeddings;
    # and the squared distance (power=2) that TriCDB-CE uses.
    for metric, power in (("l2", 1), ("sq_l2", 2)):
        pml_loss = pml_losses.TripletMarginLoss(
            margin=MARGIN, distance=pml_distances.LpDistance(normalize_embeddings=True, p=2, power=power))
        cases.append(Case(
            f"triplet_loss[{metric},violating,normalize] vs pml defaults",
            functools.partial(losses.triplet_loss, margin=MARGIN, metric=metric, mining="violating", normalize=True),
            lambda emb, labels, loss=pml_loss: loss(emb, labels), ("emb", "labels"),
            peer="pytorch-metric-learning", rtol=1e-3, torch_skip=pml_skip(args.pml_max_gib, "violating")))
    cases.append(Case(
        "semantic_triplet_loss", losses.semantic_triplet_loss, None, ("emb", "labels"), rtol=1e-3,
        torch_backward=torch_semantic_backward(args.torch_chunk_elements),
        torch_skip=lambda b, _: (f"dense B^3 skipped above B = {args.torch_cubic_max_b}"
                                 if b > args.torch_cubic_max_b else None)))
    cases.append(Case("colour_similarity_loss", losses.colour_similarity_loss, torch_colour,
                      ("emb", "hist")))
    for metric in ("l1", "l2", "cosine"):
        # ASLoss = 1e-3 inner - 1e-3 outer + 1e-2 boundary: the difference of two nearly equal
        # means amplifies float32 rounding of the distances, hence the looser value tolerance.
        cases.append(Case(f"aggregation_separation_loss[{metric}]",
                          functools.partial(losses.aggregation_separation_loss, metric=metric),
                          torch_asl(metric), ("emb", "labels"), rtol=1e-3))
    cases.append(Case("affinity_loss[m=5]", losses.affinity_loss, torch_affinity,
                      ("features", "labels", "prototypes"), grad_args=(0, 2)))
    cases += [
        Case("softmax_cross_entropy", losses.softmax_cross_entropy,
             lambda z, y: F.cross_entropy(z, y.long()), ("logits", "labels")),
        Case("focal_loss", losses.focal_loss, torch_focal, ("logits", "labels")),
        Case("ldam_loss", losses.ldam_loss, torch_ldam, ("logits", "labels", "counts")),
        Case("logit_adjusted_loss", losses.logit_adjusted_loss, torch_logit_adjusted,
             ("logits", "labels", "counts")),
        Case("cdb_cross_entropy", losses.cdb_cross_entropy, torch_cdb, ("logits", "labels", "accuracy")),
    ]
    if args.kernels:
        cases = [c for c in cases if any(s in c.name for s in args.kernels)]
    return cases


# ------------------------------------------------------------------------------------ measuring
@dataclasses.dataclass
class Result:
    case: str
    b: int
    jax_s: Optional[float]
    torch_s: list[Optional[float]]
    jax_value: float
    torch_value: Optional[float]
    grad_err: Optional[float]
    note: str = ""

    @property
    def best_torch_s(self) -> Optional[float]:
        known = [t for t in self.torch_s if t is not None]
        return min(known) if known else None

    @property
    def value_err(self) -> Optional[float]:
        if self.torch_value is None:
            return None
        return abs(self.jax_value - self.torch_value) / max(abs(self.torch_value), 1e-12)


def run_case(case: Case, b: int, args) -> Result:
    inputs = make_inputs(b, args.dim, args.num_classes)
    jax_args = [jnp.asarray(inputs[k]) for k in case.args]
    grad_fn = jax.jit(jax.value_and_grad(case.jax_fn, argnums=case.grad_args))
    compiled = grad_fn.lower(*jax_args).compile()
    value, grads = compiled(*jax_args)
    jax_value = float(value)
    jax_grads = [np.asarray(g) for g in grads]

    def jax_calls(n: int):
        def go():
            out = None
            for _ in range(n):
                out = compiled(*jax_args)
            return out
        return go

    # Sub-millisecond kernels: several back-to-back calls per timed run (>= --min-run-ms).
    one = min(bench_utils.time_once(jax_calls(1), jax.block_until_ready) for _ in range(3))
    n_jax = bench_utils.calls_per_run(one, args.min_run_ms / 1e3)

    def jax_run() -> float:
        return bench_utils.time_once(jax_calls(n_jax), jax.block_until_ready) / n_jax

    skip = case.torch_skip(b, inputs) if case.torch_skip else None
    torch_value = grad_err = None
    if skip is None:
        t_args = [torch.from_numpy(inputs[k].copy()).to(args.torch_device) for k in case.args]

        def torch_step():
            for i in case.grad_args:
                t_args[i].requires_grad_(True)
                t_args[i].grad = None
            if case.torch_backward is not None:
                return case.torch_backward(*t_args)
            loss = case.torch_fn(*t_args)
            loss.backward()
            return float(loss.detach())

        torch_value = torch_step()
        t_grads = [t_args[i].grad.cpu().numpy() for i in case.grad_args]
        grad_err = max(float(np.max(np.abs(g - t))) / max(float(np.max(np.abs(t))), 1e-12)
                       for g, t in zip(jax_grads, t_grads))

        def torch_runner(threads: int):
            n = 1
            if b < args.large_batch:
                torch.set_num_threads(threads)
                one_call = min(bench_utils.time_once(torch_step, args.torch_sync) for _ in range(3))
                n = bench_utils.calls_per_run(one_call, args.min_run_ms / 1e3)

            def run_it() -> float:
                torch.set_num_threads(threads)
                return bench_utils.time_once(lambda: [torch_step() for _ in range(n)], args.torch_sync) / n
            return run_it

        torch_runs = [torch_runner(t) for t in args.torch_threads]
    else:
        torch_runs = [None for _ in args.torch_threads]

    repeats = args.large_repeats if b >= args.large_batch else args.repeats
    # Both sides already ran once above (value check): that is the warm-up of the slow cases.
    warmup = 1 if b < args.large_batch else 0
    jax_s, *torch_s = bench_utils.interleaved([jax_run] + torch_runs, repeats, warmup=warmup)
    return Result(case.name, b, jax_s, torch_s, jax_value, torch_value, grad_err, skip or "")


def _check(result: Result, rtol: float) -> str:
    if result.torch_value is None:
        return ""
    ok = result.value_err <= rtol and result.grad_err <= max(10 * rtol, 1e-3)
    return "yes" if ok else "**NO**"


def run(args) -> str:
    jax.config.update("jax_cpu_enable_async_dispatch", args.async_dispatch)
    torch.manual_seed(0)
    bench_utils.set_torch_threads(torch)
    args.torch_sync = bench_utils.use_torch_device(torch, args.torch_device)
    cases = build_cases(args)
    header = (["kernel", "peer", "B", "JAX ms"]
              + [f"PyTorch ms ({t} thr.)" for t in args.torch_threads]
              + ["best PyTorch / JAX", "value rel. diff", "grad rel. diff", "equal"])
    rows = []
    for case in cases:
        for b in args.batch_sizes:
            r = run_case(case, b, args)
            row = ([case.name, case.peer, b, bench_utils.fmt_ms(r.jax_s)]
                   + [bench_utils.fmt_ms(t) or r.note for t in r.torch_s]
                   + [bench_utils.fmt_ratio(r.best_torch_s, r.jax_s)] + [
                   "" if r.value_err is None else f"{r.value_err:.1e}",
                   "" if r.grad_err is None else f"{r.grad_err:.1e}", _check(r, case.rtol)])
            print("| " + " | ".join(str(c) for c in row) + " |", flush=True)
            rows.append(row)
    intro = (f"{bench_utils.machine_line()}\nD = {args.dim}, C = {args.num_classes}, float32; "
             f"median of {args.repeats} interleaved runs after one warm-up ({args.large_repeats} for "
             f"B >= {args.large_batch}); each run repeats the call until it lasts >= {args.min_run_ms:g} ms "
             f"and reports the time per call; fwd+bwd; compile time excluded; PyTorch on {args.torch_device}; "
             f"JAX async CPU dispatch "
             f"{'on' if args.async_dispatch else 'off (jax_cpu_enable_async_dispatch=False)'}. "
             f"'equal': value within the "
             f"kernel's rtol and gradients within max(10 rtol, 1e-3) of the largest PyTorch gradient.")
    align = "llrr" + "r" * len(args.torch_threads) + "rrrl"
    return intro + "\n\n" + bench_utils.markdown_table(header, rows, align)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-sizes", type=bench_utils.int_list, default=[128, 512, 1024, 4096])
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--large-batch", type=int, default=1024)
    p.add_argument("--large-repeats", type=int, default=3)
    p.add_argument("--min-run-ms", type=float, default=5.0,
                   help="back-to-back calls per timed run until it lasts this long (sub-ms kernels)")
    p.add_argument("--torch-threads", type=bench_utils.int_list, default=[2, 1],
                   help="torch.set_num_threads values to time PyTorch with (the best is compared)")
    p.add_argument("--kernels", type=lambda s: s.split(","), default=None,
                   help="comma-separated substrings of kernel names (default: all)")
    p.add_argument("--pml-max-gib", type=float, default=8.0,
                   help="skip pytorch-metric-learning when its triplet indices need more")
    p.add_argument("--torch-cubic-max-b", type=int, default=1024,
                   help="largest B for the dense B^3 PyTorch semantic triplet loss")
    p.add_argument("--torch-chunk-elements", type=int, default=1 << 26,
                   help="elements per anchor chunk of the dense PyTorch semantic triplet loss")
    p.add_argument("--async-dispatch", action="store_true",
                   help="keep JAX's asynchronous CPU dispatch on (adds ~25 us per blocking call here)")
    p.add_argument("--torch-device", default="cpu", help="cpu or cuda (JAX uses its default backend)")
    p.add_argument("--output", default=None, help="also write the Markdown table to this file")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    table = run(args)
    bench_utils.emit_table(table, args.output)


if __name__ == "__main__":
    main()
