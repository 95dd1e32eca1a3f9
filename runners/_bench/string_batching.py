"""Elastic string: seconds per step with vmap over the stacked points vs a loop over points.

Both batchings run the same steps (same forces, same updates) on the same mini-batches; the ratio
``loop_over_vmap`` > 1 means vmap is faster. ``auto`` is what ``batching="auto"`` picks by its fixed
rule (device type, stacked parameter bytes, convolutions: ``landscape.string_method``), the rule
these rows are the evidence for; ``stacked_MiB`` is the size that rule compares with its budget.
"""

from __future__ import annotations

import argparse

import torch

from embeddings import build_model, to_efcn, to_elcn
from landscape import StringConfig, elastic_string, param_dict
from runners._bench.timing import best_time
from runners.cli import resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--channels", type=int, default=32, help="width of the 1-D VanillaCNN (MNIST-1D shape)")
    parser.add_argument("--spaces", default="cnn,efcn", help="comma-separated: cnn, elcn, efcn (the embeddings of the same CNN)")
    parser.add_argument("--points", type=int, default=11, help="points M of the string, endpoints included")
    parser.add_argument("--batch-size", type=int, default=100, help="examples per mini-batch")
    parser.add_argument("--repeats", type=int, default=10, help="best of this many timed runs per batching and length")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def _seconds_per_step(model, a, b, batches, args: argparse.Namespace, device: torch.device, batching: str) -> float:
    """Seconds of one string step: best-of-``--repeats`` times of a run of 1 + 2 steps minus a run of 1
    step, halved, so that the set-up (model copy, first call's tracing) cancels out."""

    def run(steps: int) -> None:
        # A fixed step: lr="auto" would add its Lanczos products to every timed run (they cancel, but add noise).
        config = StringConfig(num_points=args.points, steps=steps, batching=batching, lr=0.1)
        elastic_string(model, None, batches, params_a=a, params_b=b, config=config, device=device)

    return (best_time(lambda: run(3), args.repeats, device) - best_time(lambda: run(1), args.repeats, device)) / 2


def run(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size * 4, 1, 40, generator=generator)
    y = torch.randint(0, 10, (len(x),), generator=generator)
    batches = list(zip(x.split(args.batch_size), y.split(args.batch_size)))
    rows: dict = {"device": str(device), "threads": torch.get_num_threads(), "points": args.points}
    for space in args.spaces.split(","):
        torch.manual_seed(0)
        models = [build_model("vanilla1d", channels=args.channels).to(device) for _ in range(2)]
        if space in ("elcn", "efcn"):
            models = [(to_elcn if space == "elcn" else to_efcn)(m) for m in models]
        a, b = param_dict(models[0]), param_dict(models[1])
        timings = {batching: _seconds_per_step(models[0], a, b, batches, args, device, batching) for batching in ("vmap", "loop")}
        auto = StringConfig(num_points=args.points, steps=1, batching="auto", lr=0.1)
        rows[f"{space}.params_M"] = sum(t.numel() for t in a.values()) / 1e6
        rows[f"{space}.stacked_MiB"] = (args.points - 2) * sum(t.numel() * t.element_size() for t in a.values()) / 2**20
        rows[f"{space}.auto"] = elastic_string(models[0], None, batches, params_a=a, params_b=b, config=auto, device=device).batching
        rows[f"{space}.vmap_s_per_step"] = timings["vmap"]
        rows[f"{space}.loop_s_per_step"] = timings["loop"]
        rows[f"{space}.loop_over_vmap"] = timings["loop"] / timings["vmap"]
    return rows
