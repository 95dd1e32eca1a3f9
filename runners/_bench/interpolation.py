"""Interpolation overhead: ``interpolate(..., "linear")`` against a naive loop over the same points.

The anchor is the bare evaluation of the points a linear path needs: for each alpha, the weights
``lerp(theta_a, theta_b, alpha)`` and one ``functional_call`` per train and test batch with its loss
and accuracy, nothing else. ``interp_over_naive`` = the time of ``interpolate`` over the anchor's,
interleaved, best of ``--repeats`` (target <= 1.05: the endpoints, at alpha 0 and 1, are evaluated
once, and each point costs one copy of the weights); ``max_abs_diff_loss`` checks both compute the same losses.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from embeddings import build_model, to_efcn
from landscape import interpolate
from runners._bench.timing import interleaved_best
from runners.cli import resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--channels", type=int, default=32, help="width of the 1-D VanillaCNN (MNIST-1D shape)")
    parser.add_argument("--spaces", default="cnn,efcn", help="comma-separated: cnn, efcn")
    parser.add_argument("--points", type=int, default=21, help="alphas on the path, 0 and 1 included")
    parser.add_argument("--n-train", type=int, default=4000, help="training examples (MNIST-1D: 4000)")
    parser.add_argument("--n-test", type=int, default=1000, help="test examples (MNIST-1D: 1000)")
    parser.add_argument("--batch-size", type=int, default=250, help="examples per batch")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many interleaved runs")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def _naive_path(model: nn.Module, params_a: dict, params_b: dict, alphas, splits: list) -> list[list[tuple[float, float]]]:
    """Loss and accuracy of each split at each alpha with nothing but lerp and functional_call: the floor."""
    curve = []
    with torch.no_grad():
        for alpha in alphas:
            params = {name: torch.lerp(params_a[name], params_b[name], float(alpha)) for name in params_a}
            point = []
            for batches in splits:
                loss, correct, count = 0.0, 0, 0
                for x, y in batches:
                    logits = functional_call(model, params, (x,))
                    loss += float(nn.functional.cross_entropy(logits, y)) * len(y)
                    correct += int((logits.argmax(-1) == y).sum())
                    count += len(y)
                point.append((loss / count, correct / count))
            curve.append(point)
    return curve


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
        ends = [{name: p.detach() for name, p in m.named_parameters()} for m in models]
        times = interleaved_best({
            "naive": lambda: _naive_path(models[0], *ends, alphas, [train, test]),
            "interp": lambda: interpolate(models[0], models[1], None, train, alphas=alphas, method="linear", test_batches=test),
        }, args.repeats, device, warmup=False)
        # Same numbers both ways, or the floor would not be the same work.
        path = interpolate(models[0], models[1], None, train, alphas=alphas, method="linear", test_batches=test)
        floor = np.asarray(_naive_path(models[0], *ends, alphas, [train, test]))  # (alpha, split, loss/accuracy)
        differences = np.concatenate([path.train_loss - floor[:, 0, 0], path.test_loss - floor[:, 1, 0]])
        rows[f"{space}.max_abs_diff_loss"] = float(np.abs(differences).max())
        rows[f"{space}.naive_s"] = times["naive"]
        rows[f"{space}.interp_s"] = times["interp"]
        rows[f"{space}.interp_over_naive"] = times["interp"] / times["naive"]
    return rows
