"""Single process vs R gloo ranks on localhost: the same probes, equal results, and the time of each.

One suite of data-parallel probes (full-data evaluation, BatchNorm recalibration, gradient, top-k
Lanczos eigenvalues, a Hutchinson trace, an SLQ density, a linear interpolation curve, a few steps
of the elastic string) runs once in this process and once in ``--ranks`` processes started with
``torch.multiprocessing.spawn`` (gloo, ``file://`` rendezvous in a temporary folder), each rank with
``--threads`` torch threads. ``max_abs_diff_*`` compares each probe's output across the two runs
(float rounding only: the sums are added in another order). Rank times exclude process start-up.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from landscape import (
    HessianOperator, StringConfig, elastic_string, evaluate, hutchinson, interpolate, lanczos, param_dict,
    process_group, recalibrate_batchnorm, slq, world_size,
)

PROBES = ("evaluation", "batchnorm", "gradient", "eigenvalues", "trace", "density", "interpolation", "string")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ranks", type=int, default=2, help="gloo processes on localhost (default: 2)")
    parser.add_argument("--n-train", type=int, default=2000, help="examples of the MNIST-1D-shaped random data (default: 2000)")
    parser.add_argument("--batch-size", type=int, default=250, help="examples per batch (default: 250)")
    parser.add_argument("--channels", type=int, default=16, help="width of the small 1-D CNN (default: 16)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process, single run included (default: 1)")


def problem(*, n_train: int, batch_size: int, channels: int, batchnorm: bool = False, seed: int = 0):
    """A small 1-D CNN on MNIST-1D-shaped random data: two endpoints and the batches (same on every rank)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train, 1, 40, generator=generator)
    y = torch.randint(0, 10, (n_train,), generator=generator)
    batches = list(zip(x.split(batch_size), y.split(batch_size)))

    def net() -> nn.Module:
        norm = [nn.BatchNorm1d(channels)] if batchnorm else []
        return nn.Sequential(nn.Conv1d(1, channels, 5, stride=2), *norm, nn.ReLU(), nn.Flatten(), nn.Linear(channels * 18, 10))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        a, b = net().eval(), net().eval()
    return a, b, batches


def probe_suite(*, n_train: int, batch_size: int, channels: int) -> dict[str, tuple[torch.Tensor, float]]:
    """Every probe's output (a flat float64 tensor) and its seconds, in this process's group (or alone)."""
    model_a, model_b, batches = problem(n_train=n_train, batch_size=batch_size, channels=channels)
    norm_net, _, _ = problem(n_train=n_train, batch_size=batch_size, channels=channels, batchnorm=True)
    operator = HessianOperator(model_a, nn.CrossEntropyLoss(), batches)
    string = StringConfig(num_points=4, steps=4, batching="loop", lr=0.05)
    tasks = {
        "evaluation": lambda: [evaluate(model_a, None, batches).loss, evaluate(model_a, None, batches).accuracy],
        "batchnorm": lambda: torch.cat([t.double().flatten() for t in recalibrate_batchnorm(norm_net, batches).values()]),
        "gradient": lambda: operator.gradient(),
        "eigenvalues": lambda: lanczos(operator, k=3, tol=1e-4, seed=0).eigenvalues,
        "trace": lambda: [hutchinson(operator, num_matvecs=8, seed=0).estimate],
        "density": lambda: slq(operator, num_probes=2, max_iter=8, grid_points=64, seed=0).density,
        "interpolation": lambda: interpolate(model_a, model_b, None, batches, alphas=[0.0, 0.25, 0.5, 0.75, 1.0], method="linear").train_loss,
        "string": lambda: torch.cat([t.flatten() for t in elastic_string(
            model_a, None, batches, params_a=param_dict(model_a), params_b=param_dict(model_b), config=string).points.values()]),
    }
    operator.matvec(torch.ones(operator.size))  # warm-up: torch.func's first dispatch is not the probe's cost
    operator.num_matvecs = 0
    out = {}
    for name, task in tasks.items():
        start = time.perf_counter()
        value = task()
        out[name] = (torch.as_tensor(value).double().flatten().cpu(), time.perf_counter() - start)
    out["world_size"] = (torch.tensor([float(world_size())], dtype=torch.float64), 0.0)
    return out


def _rank_main(rank: int, world: int, store: str, sizes: dict, threads: int) -> None:
    torch.set_num_threads(threads)
    with process_group(backend="gloo", init_method=f"file://{store}/rendezvous", rank=rank, world_size=world):
        results = probe_suite(**sizes)
    torch.save(results, f"{store}/rank{rank}.pt")


def spawn_suite(*, ranks: int, threads: int = 1, **sizes) -> list[dict[str, tuple[torch.Tensor, float]]]:
    """Run :func:`probe_suite` in ``ranks`` spawned gloo processes; every rank's results."""
    with tempfile.TemporaryDirectory() as store:
        torch.multiprocessing.spawn(_rank_main, args=(ranks, store, sizes, threads), nprocs=ranks, join=True)
        return [torch.load(Path(store) / f"rank{r}.pt", weights_only=True) for r in range(ranks)]


def run(args: argparse.Namespace) -> dict:
    if args.ranks < 2:
        raise SystemExit(f"error: --ranks must be at least 2 to compare with one process, got {args.ranks}")
    sizes = {"n_train": args.n_train, "batch_size": args.batch_size, "channels": args.channels}
    before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        single = probe_suite(**sizes)
    finally:
        torch.set_num_threads(before)
    start = time.perf_counter()
    ranked = spawn_suite(ranks=args.ranks, threads=args.threads, **sizes)
    wall = time.perf_counter() - start
    rows: dict = {"ranks": args.ranks, "threads_per_process": args.threads}
    for name in PROBES:
        value, seconds = single[name]
        rows[f"max_abs_diff_{name}"] = max(float((r[name][0] - value).abs().max()) for r in ranked)
        rows[f"single_s_{name}"] = seconds
        rows[f"ranks_s_{name}"] = max(r[name][1] for r in ranked)
    rows["single_s_total"] = sum(single[name][1] for name in PROBES)
    rows["ranks_s_total"] = max(sum(r[name][1] for name in PROBES) for r in ranked)
    rows["ranks_wall_s_with_startup"] = wall
    rows["speedup"] = rows["single_s_total"] / rows["ranks_s_total"]
    return rows
