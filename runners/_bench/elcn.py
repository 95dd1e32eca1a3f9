"""eLCN against its CNN: one forward+backward training step at the same multiply-adds.

A locally-connected layer does exactly the arithmetic of the convolution it relaxes (one filter per
output position instead of one shared filter), so ``elcn_over_cnn`` -- the time of a forward pass,
cross entropy and backward pass of the eLCN over the CNN's, interleaved, best of ``--repeats`` --
is the price of its memory traffic (target <= 2: the hierarchical relaxations and the eLCN rows of
the paper pay it at every step).
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from embeddings import build_model, to_elcn
from runners._bench.timing import interleaved_best
from runners.cli import resolve_device

MODELS = ("vanilla1d", "vanilla2d")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--channels", type=int, default=64, help="width of the VanillaCNN (default: the paper's 64)")
    parser.add_argument("--batch-size", type=int, default=100, help="examples per step (default 100)")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many interleaved steps")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")


def _training_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    def step() -> None:
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
    return step


def run(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    rows: dict = {"device": str(device), "threads": torch.get_num_threads(), "batch_size": args.batch_size}
    for name in args.models.split(","):
        if name not in MODELS:
            raise SystemExit(f"error: --models takes {', '.join(MODELS)}, got {name!r}")
        torch.manual_seed(0)
        cnn = build_model(name, channels=args.channels).to(device)
        elcn = to_elcn(cnn)
        x = torch.randn(args.batch_size, *cnn.input_shape, device=device)
        y = torch.randint(0, 10, (args.batch_size,), device=device)
        times = interleaved_best({"cnn": _training_step(cnn, x, y), "elcn": _training_step(elcn, x, y)}, args.repeats, device)
        rows[f"{name}.cnn_step_s"] = times["cnn"]
        rows[f"{name}.elcn_step_s"] = times["elcn"]
        rows[f"{name}.elcn_over_cnn"] = times["elcn"] / times["cnn"]
    return rows
