"""The Hessian benchmarks run and report what they promise (shapes and bounds only: timings are never asserted)."""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn

from embeddings import build_model
from landscape import HessianOperator, lanczos
from runners._bench.hessian import lanczos_restarts, product_costs
from runners._bench.lanczos_memory import add_arguments, run


def test_product_costs_report_every_ratio_for_cached_recomputed_blocked_and_pyhessian():
    torch.manual_seed(0)
    model = build_model("vanilla1d", channels=4).eval()
    batches = [(torch.randn(10, 1, 40), torch.randint(0, 10, (10,)))]
    rows = product_costs(model, batches, block=3, repeats=1, seed=0)
    for key in ("hvp_over_grad", "hvp_recomputed_over_grad", "hvp_in_blocks_of_3_over_grad",
                "hvp_in_blocks_of_3_recomputed_over_grad", "pyhessian_hvp_over_grad", "graph_build_over_grad"):
        assert math.isfinite(rows[key]) and rows[key] > 0, key
    assert rows["params"] == sum(p.numel() for p in model.parameters()) and rows["cached_MiB"] > 0


def test_restarted_lanczos_row_compares_products_and_errors_with_the_full_run():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(60, 60, generator=g, dtype=torch.float64)
    operator = HessianOperator(nn.Linear(60, 1, bias=False).double(), nn.MSELoss(), [(a, torch.zeros(60, 1, dtype=torch.float64))])
    reference = lanczos(operator, k=3, tol=1e-10, max_basis_vectors=60).eigenvalues
    rows = lanczos_restarts(operator, k=3, vectors=5, reference=reference, seed=0)
    assert rows["restarted_stored_vectors"] <= 5 < rows["full_stored_vectors"] and rows["restarts"] > 0
    assert rows["restarted_vs_full_rel_diff"] < 1e-2 and rows["converged"]


def test_lanczos_memory_bench_keeps_its_basis_bound_on_a_small_efcn():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--model", "vanilla1d", "--input-shape", "1,40", "--batches", "1", "--max-basis-vectors", "7", "--max-iter", "12"])
    rows = run(args)
    assert rows["stored_vectors"] == 7 and rows["restarts"] > 0 and rows["products"] <= 12 and len(rows["eigenvalues"]) == 5
    assert rows["peak_GiB"] > rows["vector_GiB"] > 0 and rows["params"] > 10**5
