"""Two gloo ranks on localhost give the single-process result of every probe the CLIs offer.

One spawn of two processes for the whole module (process start-up dominates). Each probe's output is
flattened to a float64 vector in one process and on each rank; the ranks must agree with each other
exactly and with one process to rounding (sums are added in another order). Everything is float64,
so no comparison inside a probe (a sign of a gradient entry, a threshold crossing) can flip on rounding.
The data set has 9 batches: with 2 ranks, sharding twice (the old ``loss_surface``) averages 5 of them,
so the surface probes fail on it; ``predict`` must also feed each sample to the model on one rank only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

from landscape import (
    HessianOperator, StringConfig, all_reduce_sum, basin_width, elastic_string, epsilon_sharpness, evaluate, hutch_plus_plus,
    hutchinson, interpolate, is_distributed, is_main_process, lanczos, loss_surface, param_dict, predict, process_group, rank,
    recalibrate_batchnorm, reduce_floats, shard, slq, world_size,
)

NUM_BATCHES, BATCH_SIZE = 9, 12


def _net(batchnorm: bool = False) -> nn.Module:
    norm = [nn.BatchNorm1d(3)] if batchnorm else []
    return nn.Sequential(nn.Conv1d(1, 3, 3, stride=2), *norm, nn.ReLU(), nn.Flatten(), nn.Linear(3 * 7, 4)).double().eval()


def _problem() -> tuple[nn.Module, nn.Module, nn.Module, list, list]:
    """Two endpoints, a BatchNorm net, training and test batches: the same on every rank."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(NUM_BATCHES * BATCH_SIZE + 5, 1, 16, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 4, (len(x),), generator=generator)
    batches = list(zip(x[:-5].split(BATCH_SIZE), y[:-5].split(BATCH_SIZE)))
    test = list(zip(x.split(7), y.split(7)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _net(), _net(), _net(batchnorm=True), batches, test


def _predict_samples(model: nn.Module, batches: list) -> list[float]:
    """Logits of ``predict`` and, last, how many samples this rank's forward passes saw."""
    seen = []
    hook = model.register_forward_hook(lambda module, inputs, output: seen.append(len(inputs[0])))
    try:
        logits, targets = predict(model, batches)
    finally:
        hook.remove()
    return [*logits.flatten().tolist(), *targets.double().tolist(), float(sum(seen))]


def _suite() -> dict[str, torch.Tensor]:
    """Every probe's output as a flat float64 tensor, in this process's group (or alone)."""
    model_a, model_b, norm_net, batches, test = _problem()
    loss_fn = nn.CrossEntropyLoss()
    operator = HessianOperator(model_a, loss_fn, batches)
    alphas = [0.0, 0.4, 1.0]

    def curves(method: str, **kwargs) -> torch.Tensor:
        path = interpolate(model_a, model_b, loss_fn, batches, alphas=alphas, method=method, test_batches=test, **kwargs)
        return torch.cat([torch.as_tensor(c) for c in path.curves().values()])

    def surface(dims: int) -> torch.Tensor:
        result = loss_surface(model_a, loss_fn, batches, dims=dims, span=0.5, grid_points=3, seed=1)
        return torch.cat([result.loss.flatten(), result.accuracy.flatten()])

    tasks = {
        "evaluate": lambda: [evaluate(model_a, loss_fn, batches).loss, evaluate(model_a, loss_fn, batches).accuracy],
        "predict": lambda: _predict_samples(model_a, batches)[:-1],
        "predict_fewer_batches_than_ranks": lambda: _predict_samples(model_a, batches[:1])[:-1],
        "batchnorm": lambda: torch.cat([t.double().flatten() for t in recalibrate_batchnorm(norm_net, batches).values()]),
        "gradient": lambda: operator.gradient(),
        "output_interpolation": lambda: curves("output"),
        "linear_interpolation": lambda: curves("linear"),
        "string": lambda: torch.cat([t.flatten() for t in elastic_string(
            model_a, loss_fn, batches, params_a=param_dict(model_a), params_b=param_dict(model_b),
            config=StringConfig(num_points=4, steps=3, batching="loop", lr=0.05)).points.values()]),
        "lanczos": lambda: lanczos(operator, k=2, tol=1e-6, seed=0).eigenvalues,
        "hutchinson": lambda: [hutchinson(operator, num_matvecs=4, seed=0).estimate],
        "hutch++": lambda: [hutch_plus_plus(operator, num_matvecs=6, seed=0).estimate],
        "slq": lambda: slq(operator, num_probes=1, max_iter=6, grid_points=16, seed=0).density,
        "basin_width": lambda: basin_width(model_a, loss_fn, batches, threshold=1e-3, num_directions=1, grid_points=5,
                                           bisection_steps=4, seed=0).widths,
        "epsilon_sharpness": lambda: epsilon_sharpness(model_a, loss_fn, batches, epsilon=1e-2, steps=3, seed=0).losses,
        "loss_surface_1d": lambda: surface(1),
        "loss_surface_2d": lambda: surface(2),
    }
    out = {name: torch.as_tensor(task()).double().flatten().cpu() for name, task in tasks.items()}
    out["predict_forward_samples"] = torch.tensor([_predict_samples(model_a, batches)[-1]])
    out["world_size"] = torch.tensor([float(world_size())])
    return out


PROBES = (
    "evaluate", "predict", "predict_fewer_batches_than_ranks", "batchnorm", "gradient", "output_interpolation",
    "linear_interpolation", "string", "lanczos",
    "hutchinson", "hutch++", "slq", "basin_width", "epsilon_sharpness", "loss_surface_1d", "loss_surface_2d",
)


def _rank_main(rank: int, world: int, store: str) -> None:
    torch.set_num_threads(1)
    with process_group(backend="gloo", init_method=f"file://{store}/rendezvous", rank=rank, world_size=world):
        results = _suite()
    torch.save(results, f"{store}/rank{rank}.pt")


@pytest.fixture(scope="module")
def runs() -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    torch.set_num_threads(1)
    single = _suite()
    with tempfile.TemporaryDirectory() as store:
        torch.multiprocessing.spawn(_rank_main, args=(2, store), nprocs=2, join=True)
        return single, [torch.load(Path(store) / f"rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.mark.parametrize("probe", PROBES)
def test_two_ranks_equal_one_process(runs, probe):
    single, ranked = runs
    for rank_result in ranked:
        torch.testing.assert_close(rank_result[probe], single[probe], rtol=1e-9, atol=1e-12)


def test_ranks_agree_exactly_with_each_other(runs):
    single, (first, second) = runs
    assert [float(r["world_size"][0]) for r in (single, first, second)] == [1.0, 2.0, 2.0]
    for probe in PROBES:
        assert torch.equal(first[probe], second[probe]), probe


def test_predict_feeds_each_sample_to_one_rank(runs):
    single, ranked = runs
    seen = [float(r["predict_forward_samples"][0]) for r in ranked]
    assert float(single["predict_forward_samples"][0]) == NUM_BATCHES * BATCH_SIZE
    assert sum(seen) == NUM_BATCHES * BATCH_SIZE and min(seen) > 0, seen


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
    model, _, _, batches, _ = _problem()
    cpu = lanczos(HessianOperator(model, nn.CrossEntropyLoss(), batches), k=2, tol=1e-8, seed=0).eigenvalues
    gpu = lanczos(HessianOperator(model.cuda(), nn.CrossEntropyLoss(), batches), k=2, tol=1e-8, seed=0).eigenvalues
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-9, atol=1e-12)
