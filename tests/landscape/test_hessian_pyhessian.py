"""Agreement with PyHessian (Yao et al. 2020) on the same model and data, both against the exact Hessian.

PyHessian's power iteration stops on a relative change of its Rayleigh quotient, which can stall short of
the top eigenvalue; both libraries are therefore measured against a brute-force reference.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from pyhessian import hessian as PyHessian
from torch import nn
from torch.func import functional_call

from landscape import HessianOperator, hutch_plus_plus, hutchinson, lanczos, slq

# PyHessian's own HVPs use backward(create_graph=True), which torch warns about; ours do not.
pytestmark = pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True:UserWarning")


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(1, 3, 5, padding=2), nn.ReLU(), nn.Conv1d(3, 3, 3, stride=4, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(30, 5)
    )
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(32, 1, 40, generator=g), torch.randint(0, 5, (32,), generator=g)) for _ in range(2)]
    exact = _exact_hessian(model, batches)
    return model, batches, exact, np.linalg.eigvalsh(exact)


def _exact_hessian(model: nn.Module, batches) -> np.ndarray:
    reference = copy.deepcopy(model).double()
    names, shapes = zip(*[(n, p.shape) for n, p in reference.named_parameters()])
    x = torch.cat([b[0] for b in batches]).double()
    y = torch.cat([b[1] for b in batches])

    def loss(flat: torch.Tensor) -> torch.Tensor:
        params = dict(zip(names, torch.split(flat, [s.numel() for s in shapes])))
        params = {n: v.reshape(s) for (n, v), s in zip(params.items(), shapes)}
        return nn.functional.cross_entropy(functional_call(reference, params, (x,)), y)

    flat = torch.cat([p.detach().reshape(-1) for p in reference.parameters()])
    return torch.func.hessian(loss)(flat).numpy()


def _pyhessian(model, batches) -> PyHessian:
    return PyHessian(copy.deepcopy(model), nn.CrossEntropyLoss(), dataloader=batches, cuda=False)


def test_top_eigenvalues_agree_with_pyhessian_and_the_exact_spectrum(problem):
    model, batches, _, spectrum = problem
    torch.manual_seed(0)
    theirs, _ = _pyhessian(model, batches).eigenvalues(maxIter=300, tol=1e-6, top_n=2)
    ours = lanczos(HessianOperator(model, nn.CrossEntropyLoss(), batches), k=2, tol=1e-6)
    top = spectrum[::-1][:2]
    assert ours.converged
    assert np.allclose(ours.eigenvalues.numpy(), top, rtol=1e-4)
    assert np.allclose(theirs, top, rtol=2e-2)


def test_trace_agrees_with_pyhessian_within_standard_errors(problem):
    model, batches, exact, _ = problem
    # Standard deviation of one Rademacher sample v^T H v: sqrt(2 sum_{i != j} H_ij^2).
    spread = math.sqrt(2 * (np.square(exact).sum() - np.square(np.diag(exact)).sum()))
    torch.manual_seed(0)
    theirs = _pyhessian(model, batches).trace(maxIter=60, tol=1e-9)
    operator = HessianOperator(model, nn.CrossEntropyLoss(), batches)
    ours = hutchinson(operator, num_matvecs=60)
    truth = float(np.trace(exact))
    assert abs(np.mean(theirs) - truth) < 5 * spread / math.sqrt(len(theirs))
    assert abs(ours.estimate - truth) < 5 * ours.stderr
    assert ours.stderr == pytest.approx(spread / math.sqrt(60), rel=0.3)
    assert abs(hutch_plus_plus(operator, num_matvecs=60).estimate - truth) < 5 * ours.stderr


def test_density_agrees_with_pyhessian(problem, monkeypatch):
    model, batches, exact, spectrum = problem

    def eig(matrix: torch.Tensor, eigenvectors: bool = True):
        # PyHessian's SLQ still calls torch.eig, removed from torch 2; its symmetric case is eigh.
        values, vectors = torch.linalg.eigh(matrix)
        return torch.stack([values, torch.zeros_like(values)], dim=1), vectors

    monkeypatch.setattr(torch, "eig", eig, raising=False)
    torch.manual_seed(0)
    their_nodes, their_weights = _pyhessian(model, batches).density(iter=40, n_v=1)
    ours = slq(HessianOperator(model, nn.CrossEntropyLoss(), batches), num_probes=1, max_iter=40)
    n = exact.shape[0]
    spread = math.sqrt(2 * (np.square(exact).sum() - np.square(np.diag(exact)).sum())) / n
    for nodes, weights in ((np.array(their_nodes[0]), np.array(their_weights[0])), (ours.nodes[0].numpy(), ours.weights[0].numpy())):
        assert nodes.max() == pytest.approx(spectrum[-1], rel=1e-3)
        assert weights.sum() == pytest.approx(1.0, abs=1e-4)
        assert abs((weights * nodes).sum() - spectrum.mean()) < 5 * spread
