"""Hessian probes: product costs against a gradient, our Lanczos against PyHessian's, restarted against full.

Product costs (:func:`product_costs`, on the CNN and on its eFCN, batches of ``--cost-batch-size``): one
full-data HVP through the cached gradient graphs, the same recomputed (``cache_bytes=0``), blocks of
``--block`` products per vector (``matmat``, cached and recomputed) and PyHessian's double-backward HVP,
each over one full-data gradient, the functions taking turns so that machine load affects all alike.
Eigenvalues: on a VanillaCNN trained briefly on MNIST-1D, both libraries estimate the top-1 and top-k
Hessian eigenvalues of the full training loss; each estimate is compared with a tightly converged
Lanczos reference (tol 1e-9): ours against the largest eigenvalues, PyHessian's power iteration against
the largest in magnitude, which it targets. PyHessian is re-run with tighter tolerances until its error
is within ``--target`` (0.5%), to time both at the same accuracy. Thick-restart Lanczos with
``--restart-vectors`` stored vectors is compared with the unrestricted run (:func:`lanczos_restarts`),
and ``--lanczos-100m`` adds the peak memory of top-5 on the AlexNet eFCN (:mod:`.lanczos_memory`).
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from pyhessian import hessian as PyHessian
from torch import nn

from embeddings import build_model, to_efcn
from landscape import HessianOperator, lanczos
from runners._bench.lanczos_memory import measure as lanczos_memory
from runners._bench.timing import interleaved_best
from runners._engine import TrainConfig, load_data, train
from runners.cli import resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--channels", type=int, default=32, help="width of the VanillaCNN (default 32)")
    parser.add_argument("--n-train", type=int, default=1000, help="training examples in the loss (default 1000)")
    parser.add_argument("--batch-size", type=int, default=500, help="batch of the full-data average of the eigenvalue runs (default 500)")
    parser.add_argument("--cost-batch-size", type=int, default=100, help="batch of the product-cost rows (default 100, as in training)")
    parser.add_argument("--block", type=int, default=8, help="rows per blocked product (matmat) in the cost rows (default 8)")
    parser.add_argument("--epochs", type=int, default=20, help="Adam epochs before probing (default 20)")
    parser.add_argument("--k", type=int, default=5, help="top-k compared (default 5)")
    parser.add_argument("--target", type=float, default=5e-3, help="relative error PyHessian must reach (default 0.5%%)")
    parser.add_argument("--restart-vectors", type=int, default=None,
                        help="max_basis_vectors of the restarted Lanczos row (default 2k, small enough to restart)")
    parser.add_argument("--lanczos-100m", action="store_true",
                        help="also run the lanczos-memory benchmark (top-5 of the AlexNet eFCN, minutes) into lanczos100m.* rows")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many interleaved HVP/gradient timings")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model, training and probes")


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def product_costs(model: nn.Module, batches: list, *, block: int, repeats: int, seed: int) -> dict:
    """One full-data HVP against one gradient: cached graphs, recomputed, blocked (per vector), PyHessian's.

    The functions take turns (:func:`~runners._bench.timing.interleaved_best`); each ratio is a time
    over the gradient's, so ``hvp_in_blocks_of_B_over_grad / hvp_over_grad`` is the blocked cost per
    vector relative to a single product.
    """
    device = next(model.parameters()).device
    cached = HessianOperator(model, nn.CrossEntropyLoss(), batches)
    recomputed = HessianOperator(model, nn.CrossEntropyLoss(), batches, cache_bytes=0)
    (_, build_s) = _timed(cached.objective.graphs)
    rows = torch.randn(block, cached.size, generator=torch.Generator().manual_seed(seed)).to(device)
    engine = PyHessian(copy.deepcopy(model), nn.CrossEntropyLoss(), dataloader=batches, cuda=device.type == "cuda")
    v_list = [chunk.reshape(p.shape) for chunk, p in zip(rows[0].split([p.numel() for p in engine.params]), engine.params)]
    times = interleaved_best({
        "grad": cached.gradient,
        "hvp": lambda: cached.matvec(rows[0]),
        "hvp_recomputed": lambda: recomputed.matvec(rows[0]),
        "block": lambda: cached.matmat(rows, block=block),
        "block_recomputed": lambda: recomputed.matmat(rows, block=block),
        "pyhessian_hvp": lambda: engine.dataloader_hv_product(v_list),
    }, repeats, device)
    grad = times["grad"]
    return {
        "params": cached.size,
        "grad_s": grad,
        "hvp_over_grad": times["hvp"] / grad,
        "hvp_recomputed_over_grad": times["hvp_recomputed"] / grad,
        f"hvp_in_blocks_of_{block}_over_grad": times["block"] / block / grad,
        f"hvp_in_blocks_of_{block}_recomputed_over_grad": times["block_recomputed"] / block / grad,
        "pyhessian_hvp_over_grad": times["pyhessian_hvp"] / grad,
        "graph_build_over_grad": build_s / grad,
        "cached_MiB": cached.objective.cached_bytes / 2**20,
    }


def lanczos_restarts(operator: HessianOperator, *, k: int, vectors: int, reference: torch.Tensor, seed: int) -> dict:
    """Top-k by thick-restart Lanczos with ``vectors`` stored against the unrestricted run: products and errors."""
    full = lanczos(operator, k=k, tol=1e-3, max_basis_vectors=operator.size, seed=seed)
    bounded = lanczos(operator, k=k, tol=1e-3, max_basis_vectors=vectors, seed=seed)
    return {
        "max_basis_vectors": vectors,
        "full_products": full.iterations,
        "full_stored_vectors": full.stored_vectors,
        "restarted_products": bounded.iterations,
        "restarted_stored_vectors": bounded.stored_vectors,
        "restarts": bounded.restarts,
        "restarted_over_full_products": bounded.iterations / full.iterations,
        "restarted_vs_full_rel_diff": _relative_error(bounded.eigenvalues.tolist(), full.eigenvalues),
        "full_rel_err": _relative_error(full.eigenvalues.tolist(), reference),
        "restarted_rel_err": _relative_error(bounded.eigenvalues.tolist(), reference),
        "converged": bool(full.converged and bounded.converged),
    }


def _relative_error(estimate, reference: torch.Tensor) -> float:
    estimate = torch.as_tensor(list(estimate), dtype=torch.float64)
    return float(((estimate - reference[: len(estimate)]).abs() / reference[: len(estimate)].abs()).max())


def _pyhessian_top(model, batches, device, k: int, tol: float, seed: int) -> tuple[list[float], int]:
    """PyHessian's top-k (power iteration with deflation, largest magnitude, 100 iterations at most each)
    and the number of Hessian-vector products it took."""
    torch.manual_seed(seed)
    engine = PyHessian(copy.deepcopy(model), nn.CrossEntropyLoss(), dataloader=batches, cuda=device.type == "cuda")
    products = 0
    hvp = engine.dataloader_hv_product

    def counted(v):
        nonlocal products
        products += 1
        return hvp(v)

    engine.dataloader_hv_product = counted
    values, _ = engine.eigenvalues(maxIter=100, tol=tol, top_n=k)
    return sorted(values, key=abs, reverse=True), products


def run(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    data = load_data("mnist1d", n_train=args.n_train, n_test=100)
    model = build_model("vanilla1d", channels=args.channels)
    train(model, data, config=TrainConfig(epochs=args.epochs), seed=args.seed)
    model = model.to(device).eval()
    batches = [(x.to(device), y.to(device)) for x, y in data.batches("train", args.batch_size)]
    operator = HessianOperator(model, nn.CrossEntropyLoss(), batches)
    rows: dict = {"device": str(device), "threads": torch.get_num_threads(), "params": operator.size, "samples": args.n_train}

    # Product costs at the training batch size: the CNN's rows unprefixed, its eFCN's under "efcn.".
    cost_batches = [(x.to(device), y.to(device)) for x, y in data.batches("train", args.cost_batch_size)]
    costs = product_costs(model, cost_batches, block=args.block, repeats=args.repeats, seed=args.seed)
    rows.update({("params_cost" if key == "params" else key): value for key, value in costs.items()})
    efcn = to_efcn(model, tuple(model.input_shape)).eval()
    rows.update({f"efcn.{key}": value for key, value in product_costs(efcn, cost_batches, block=args.block, repeats=args.repeats,
                                                                      seed=args.seed).items()})
    del efcn

    references = {which: lanczos(operator, k=args.k, tol=1e-9, which=which, max_iter=min(operator.size, 400),
                                 max_basis_vectors=min(operator.size, 400), seed=args.seed + 1)
                  for which in ("largest", "magnitude")}
    largest, magnitude = references["largest"].eigenvalues, references["magnitude"].eigenvalues
    rows["reference_converged"] = all(r.converged for r in references.values())
    rows["reference_top1"] = float(largest[0])
    rows[f"reference_top{args.k}"] = float(largest[-1])
    rows["top_k_largest_are_top_k_in_magnitude"] = bool(torch.allclose(largest, magnitude))
    vectors = 2 * args.k if args.restart_vectors is None else args.restart_vectors
    restarts = lanczos_restarts(operator, k=args.k, vectors=max(vectors, args.k + 2), reference=largest, seed=args.seed)
    rows.update({f"lanczos_restart.{key}": value for key, value in restarts.items()})
    for k in (1, args.k):
        ours, ours_s = _timed(lambda: lanczos(operator, k=k, tol=1e-3, seed=args.seed))
        rows[f"top{k}.ours_s"] = ours_s
        rows[f"top{k}.ours_matvecs"] = ours.iterations
        rows[f"top{k}.ours_rel_err"] = _relative_error(ours.eigenvalues, largest)
        # PyHessian's power iteration targets the largest magnitudes: it is scored against those.
        for tol in (1e-3, 1e-4, 1e-5):
            (theirs, products), theirs_s = _timed(lambda: _pyhessian_top(model, batches, device, k, tol, args.seed))
            error = _relative_error(theirs, magnitude)
            if tol == 1e-3:
                rows[f"top{k}.pyhessian_default_s"] = theirs_s
                rows[f"top{k}.pyhessian_default_rel_err"] = error
            if error <= args.target:
                break
        reached = error <= args.target
        rows[f"top{k}.pyhessian_at_target_tol"] = tol
        rows[f"top{k}.pyhessian_at_target_s"] = theirs_s
        rows[f"top{k}.pyhessian_at_target_products"] = products
        rows[f"top{k}.pyhessian_at_target_rel_err"] = error
        rows[f"top{k}.speedup_at_target"] = theirs_s / ours_s if reached else float("nan")
        # Products times their measured unit costs (the CNN's cost rows): a ratio that machine load does not blur.
        rows[f"top{k}.cost_ratio_at_target"] = (
            products * costs["pyhessian_hvp_over_grad"] / (ours.iterations * costs["hvp_over_grad"]) if reached else float("nan")
        )
    if args.lanczos_100m:
        rows.update({f"lanczos100m.{key}": value for key, value in lanczos_memory().items()})
    return rows
