"""Embedding cost vs writing the dense result once, and eLCN / eFCN forward time vs the CNN's.

The floor for building an eFCN is allocating its dense weights and writing them once (``torch.zeros``
of the same shapes); the ratio ``embed / floor`` says how much the scatter costs on top (target <= 2).
"""

from __future__ import annotations

import argparse

import torch

from embeddings import EmbeddedDense, build_model, estimate_memory, to_efcn, to_elcn
from runners._bench.timing import best_time
from runners.cli import resolve_device

MODELS = {
    "vanilla2d": dict(arch="vanilla2d", arch_kwargs={}),
    "alexnet": dict(arch="alexnet", arch_kwargs={"num_classes": 100}),
    "vanilla1d": dict(arch="vanilla1d", arch_kwargs={}),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default="vanilla1d,vanilla2d,alexnet", help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    parser.add_argument("--batch-size", type=int, default=64, help="batch for the forward timings")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")


def run(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    rows: dict = {"device": str(device), "threads": torch.get_num_threads()}
    for name in args.models.split(","):
        spec = MODELS[name]
        model = build_model(spec["arch"], **spec["arch_kwargs"]).to(device).eval()
        efcn = to_efcn(model, max_bytes=2**40)
        shapes = [m.weight.shape for m in efcn.modules() if isinstance(m, EmbeddedDense)]
        embed = best_time(lambda: to_efcn(model, max_bytes=2**40), args.repeats, device, warmup=False)
        floor = best_time(lambda: [torch.zeros(s, device=device) for s in shapes], args.repeats, device, warmup=False)
        rows[f"{name}.efcn_params_M"] = sum(p.numel() for p in efcn.parameters()) / 1e6
        rows[f"{name}.efcn_GiB"] = estimate_memory(model) / 2**30
        rows[f"{name}.embed_s"] = embed
        rows[f"{name}.dense_write_s"] = floor
        rows[f"{name}.embed_over_write"] = embed / floor
        x = torch.randn(args.batch_size, *model.input_shape, device=device)
        elcn = to_elcn(model).eval()
        with torch.no_grad():
            cnn_t = best_time(lambda: model(x), args.repeats, device, warmup=False)
            rows[f"{name}.elcn_forward_over_cnn"] = best_time(lambda: elcn(x), args.repeats, device, warmup=False) / cnn_t
            rows[f"{name}.efcn_forward_over_cnn"] = best_time(lambda: efcn(x), args.repeats, device, warmup=False) / cnn_t
        del efcn, elcn
    return rows
