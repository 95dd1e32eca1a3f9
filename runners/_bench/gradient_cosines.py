"""Pairwise gradient cosines: vmap over mini-batches vs one batch at a time, and the expanded nets' cost.

For a compact SmallNet and its CK+FC expansion, the time of ``landscape.gradient_cosines`` with
``vectorize=True`` (one ``vmap(grad)`` call over all batches) and ``vectorize=False`` (a Python loop
of ``grad`` calls), side by side; ``loop_over_vmap > 1`` means vmap pays.
"""

from __future__ import annotations

import argparse

import torch

from embeddings import build_model, expand
from landscape import gradient_cosines
from runners._bench.timing import best_time
from runners.cli import resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", default="smallnet1d", choices=("smallnet1d", "smallnet2d"), help="compact net")
    parser.add_argument("--kernel-size", type=int, default=7, help="SmallNet kernel size")
    parser.add_argument("--batches", type=int, default=20, help="mini-batches (pairs: n(n-1)/2)")
    parser.add_argument("--batch-size", type=int, default=100, help="examples per mini-batch")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")


def run(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    compact = build_model(args.arch, kernel_size=args.kernel_size).to(device)
    nets = {"compact": compact, "ck+fc": expand(compact, "ck+fc")}
    generator = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(args.batch_size, *compact.input_shape, generator=generator).to(device),
         torch.randint(10, (args.batch_size,), generator=generator).to(device))
        for _ in range(args.batches)
    ]
    rows: dict = {"device": str(device), "threads": torch.get_num_threads(), "pairs": args.batches * (args.batches - 1) // 2}
    for name, net in nets.items():
        vmapped = best_time(lambda: gradient_cosines(net, None, batches, vectorize=True), args.repeats, device)
        looped = best_time(lambda: gradient_cosines(net, None, batches, vectorize=False), args.repeats, device)
        rows[f"{name}.params"] = sum(p.numel() for p in net.parameters())
        rows[f"{name}.vmap_s"] = vmapped
        rows[f"{name}.loop_s"] = looped
        rows[f"{name}.loop_over_vmap"] = looped / vmapped
    return rows
