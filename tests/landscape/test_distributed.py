"""Two gloo ranks on localhost give the single-process results: evaluation, BatchNorm statistics,
gradient, Lanczos eigenvalues, Hutchinson trace, SLQ density, a linear interpolation curve, the string.

One spawn for the whole module (process start-up dominates); the suite is the distributed benchmark's.
"""

from __future__ import annotations

import pytest
import torch

from landscape import all_reduce_sum, is_distributed, is_main_process, process_group, rank, reduce_floats, shard, world_size
from runners._bench_distributed import PROBES, probe_suite, spawn_suite

SIZES = {"n_train": 700, "batch_size": 100, "channels": 6}


@pytest.fixture(scope="module")
def runs():
    torch.set_num_threads(1)
    return probe_suite(**SIZES), spawn_suite(ranks=2, threads=1, **SIZES)


@pytest.mark.parametrize("probe", PROBES)
def test_two_ranks_equal_one_process(runs, probe):
    single, ranked = runs
    for rank_result in ranked:
        torch.testing.assert_close(rank_result[probe][0], single[probe][0], rtol=1e-5, atol=1e-6)


def test_ranks_agree_exactly_with_each_other(runs):
    single, (first, second) = runs
    assert [float(r["world_size"][0]) for r in (single, first, second)] == [1.0, 2.0, 2.0]
    for probe in PROBES:
        assert torch.equal(first[probe][0], second[probe][0]), probe


def test_helpers_are_no_ops_in_one_process():
    assert (is_distributed(), world_size(), rank(), is_main_process()) == (False, 1, 0, True)
    assert shard(range(5)) == [0, 1, 2, 3, 4]
    value = torch.arange(3.0)
    assert all_reduce_sum(value) is value
    assert all_reduce_sum({"w": value})["w"] is value
    assert reduce_floats(1.0, 2) == [1.0, 2]


def test_process_group_without_launcher_is_one_process():
    with process_group(backend="gloo") as device:
        assert device == torch.device("cpu") and not is_distributed()


def test_process_group_rejects_unknown_backend():
    with pytest.raises(ValueError, match="backend must be 'auto', 'nccl' or 'gloo', got 'mpi'"):
        with process_group(backend="mpi"):
            pass


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_probes_on_gpu_match_cpu():
    from landscape import HessianOperator, lanczos
    from runners._bench_distributed import problem

    model, _, batches = problem(**SIZES)
    cpu = lanczos(HessianOperator(model, torch.nn.CrossEntropyLoss(), batches), k=2, tol=1e-5, seed=0).eigenvalues
    gpu = lanczos(HessianOperator(model.cuda(), torch.nn.CrossEntropyLoss(), batches), k=2, tol=1e-5, seed=0).eigenvalues
    torch.testing.assert_close(gpu.cpu().double(), cpu.double(), rtol=1e-4, atol=1e-5)
