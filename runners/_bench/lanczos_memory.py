"""Peak memory and time of top-k Lanczos on a >= 100M-parameter eFCN (AlexNet's, CIFAR-shaped fake batches).

Unrestricted Lanczos asked for ``torch.empty(100, n)`` up front: 50.7 GB for the AlexNet eFCN's 126.8M
parameters (0.47 GiB a vector). Here the basis grows and restarts thick at ``--max-basis-vectors``; the
row reports the process's peak resident memory while the probe runs (Linux ``VmHWM``, reset after the
eFCN is built, :func:`runners._engine.reset_peak_memory`), the peak of building it, and the time.
The eFCN's parameter memory is estimated first (:func:`embeddings.estimate_memory`) and the run refused
when it would not leave room for the probe.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from embeddings import build_model, default_max_bytes, estimate_memory, to_efcn
from landscape import HessianOperator, lanczos
from landscape._basis import WORK_VECTORS
from runners._engine import peak_memory_bytes, reset_peak_memory
from runners.cli import fail, shape_arg

_CPU = torch.device("cpu")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="alexnet", help="registry name or import path of the CNN to embed (default alexnet)")
    parser.add_argument("--input-shape", type=shape_arg, default=(3, 32, 32), help="input shape without the batch (default 3,32,32)")
    parser.add_argument("--batches", type=int, default=2, help="fake batches in the loss (default 2)")
    parser.add_argument("--batch-size", type=int, default=4, help="examples per fake batch (default 4)")
    parser.add_argument("--k", type=int, default=5, help="top-k eigenvalues (default 5)")
    parser.add_argument("--max-basis-vectors", type=int, default=9,
                        help="stored Lanczos vectors (default 9: 7.14 GiB peak on AlexNet, converged in 98 products; 7: 6.20 GiB, not converged in 100)")
    parser.add_argument("--max-iter", type=int, default=150, help="most products (default 150)")
    parser.add_argument("--tol", type=float, default=1e-3, help="relative error bound at which Lanczos stops (default 1e-3)")
    parser.add_argument("--max-bytes", type=float, default=8.0, help="GiB Lanczos's vectors may take (default 8, the issue's bound)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model, the fake data and the start vector")


def measure(
    *,
    model: str = "alexnet",
    input_shape: tuple[int, ...] = (3, 32, 32),
    batches: int = 2,
    batch_size: int = 4,
    k: int = 5,
    max_basis_vectors: int = 9,
    max_iter: int = 150,
    tol: float = 1e-3,
    max_gib: float = 8.0,
    seed: int = 0,
) -> dict:
    """Build the eFCN of ``model``, run top-``k`` Lanczos on fake data and report its peak memory and time."""
    torch.manual_seed(seed)
    cnn = build_model(model, input_shape=input_shape)
    parameter_bytes = estimate_memory(cnn, input_shape, "efcn")
    # The model and the Lanczos run's vectors: refused before building when it cannot fit.
    needed = parameter_bytes * (1 + WORK_VECTORS + max_basis_vectors)
    if needed > 2 * default_max_bytes(_CPU):
        raise fail(f"top-{k} Lanczos on the {model} eFCN needs about {needed / 2**30:.3g} GiB ({parameter_bytes / 2**30:.3g} GiB a "
                   f"vector), more than the {2 * default_max_bytes(_CPU) / 2**30:.3g} GiB free; pass a smaller --max-basis-vectors or --batches")
    reset_peak_memory(_CPU)
    efcn = to_efcn(cnn, input_shape).eval()
    del cnn
    build_peak = peak_memory_bytes(_CPU)
    generator = torch.Generator().manual_seed(seed)
    data = [(torch.randn(batch_size, *input_shape, generator=generator), torch.randint(0, 10, (batch_size,), generator=generator))
            for _ in range(batches)]
    operator = HessianOperator(efcn, nn.CrossEntropyLoss(), data)
    reset_peak_memory(_CPU)
    start = time.perf_counter()
    result = lanczos(operator, k=k, tol=tol, max_iter=max_iter, max_basis_vectors=max_basis_vectors, seed=seed,
                     max_bytes=int(max_gib * 2**30))
    seconds = time.perf_counter() - start
    return {
        "model": model,
        "params": operator.size,
        "vector_GiB": parameter_bytes / 2**30,
        "build_peak_GiB": build_peak / 2**30,
        "peak_GiB": peak_memory_bytes(_CPU) / 2**30,
        "seconds": seconds,
        "products": result.iterations,
        "restarts": result.restarts,
        "stored_vectors": result.stored_vectors,
        "max_basis_vectors": max_basis_vectors,
        "converged": result.converged,
        "eigenvalues": result.eigenvalues.tolist(),
        "error_bounds": result.error_bounds.tolist(),
    }


def run(args: argparse.Namespace) -> dict:
    return measure(model=args.model, input_shape=args.input_shape, batches=args.batches, batch_size=args.batch_size, k=args.k,
                   max_basis_vectors=args.max_basis_vectors, max_iter=args.max_iter, tol=args.tol, max_gib=args.max_bytes,
                   seed=args.seed)
