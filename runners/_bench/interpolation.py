"""Interpolation overhead: a linear path of n points against the bare forward passes it needs.

The floor is ``n`` evaluations of a fixed model over the training and test sets with plain
``model(x)`` calls; ``interpolate(..., "linear")`` does the same passes at ``n`` new parameter vectors
(plus its two endpoint evaluations, counted in ``interp_s``). ``overhead`` = interp_s / forward_s - 1
(target <= 0.10, with the endpoints included in the floor as ``n + 2`` passes).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from embeddings import build_model, to_efcn
from landscape import interpolate
from runners._bench.timing import best_time
from runners.cli import resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--channels", type=int, default=32, help="width of the 1-D VanillaCNN (MNIST-1D shape)")
    parser.add_argument("--spaces", default="cnn,efcn", help="comma-separated: cnn, efcn")
    parser.add_argument("--points", type=int, default=21, help="alphas on the path")
    parser.add_argument("--n-train", type=int, default=4000, help="training examples (MNIST-1D: 4000)")
    parser.add_argument("--n-test", type=int, default=1000, help="test examples (MNIST-1D: 1000)")
    parser.add_argument("--batch-size", type=int, default=250, help="examples per batch")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def run(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.n_train + args.n_test, 1, 40, generator=generator).to(device)
    y = torch.randint(0, 10, (len(x),), generator=generator).to(device)
    train = list(zip(x[: args.n_train].split(args.batch_size), y[: args.n_train].split(args.batch_size)))
    test = list(zip(x[args.n_train:].split(args.batch_size), y[args.n_train:].split(args.batch_size)))
    alphas = np.linspace(0, 1, args.points)
    rows: dict = {"device": str(device), "threads": torch.get_num_threads(), "points": args.points}
    for space in args.spaces.split(","):
        torch.manual_seed(0)
        models = [build_model("vanilla1d", channels=args.channels).to(device).eval() for _ in range(2)]
        if space == "efcn":
            models = [to_efcn(m).eval() for m in models]

        def forward_passes(model=models[0]) -> None:
            with torch.no_grad():
                for _ in range(args.points + 2):
                    for inputs, targets in train + test:
                        torch.nn.functional.cross_entropy(model(inputs), targets)

        forward = best_time(forward_passes, args.repeats, device, warmup=False)
        path = best_time(lambda: interpolate(models[0], models[1], None, train, alphas=alphas, method="linear", test_batches=test), args.repeats, device, warmup=False)
        rows[f"{space}.forward_s"] = forward
        rows[f"{space}.interp_s"] = path
        rows[f"{space}.overhead"] = path / forward - 1
    return rows
