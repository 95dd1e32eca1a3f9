"""The Hessian operator: closed forms, brute-force torch.func references, subspaces, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg
import torch
from torch import nn
from torch.func import functional_call

from landscape import HessianOperator, LinearOperator, MatrixOperator, hessian_eigenvalues, parameter_subspace


def least_squares(n: int = 40, d: int = 5, seed: int = 0):
    """Linear regression with bias: L = mean (Xw + b - y)^2 has H = 2 [X 1]^T [X 1] / n."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(d, 1).double()
    design = torch.cat([X, torch.ones(n, 1, dtype=torch.float64)], dim=1)
    return model, X, y, 2 * design.T @ design / n


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv1d(1, 2, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(16, 3)).double()


def tiny_data(seed: int = 0, sizes=(7, 5)):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 1, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)) for n in sizes]


def dense_operator(op) -> torch.Tensor:
    return torch.stack([op.matvec(e) for e in torch.eye(op.size, dtype=op.dtype)], dim=1)


def brute_force_hessian(model: nn.Module, batches) -> torch.Tensor:
    """torch.func.hessian of the full-data mean loss over all parameters, flattened in model order."""
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])

    def loss(flat: torch.Tensor) -> torch.Tensor:
        params, start = {}, 0
        for name, shape in zip(names, shapes):
            params[name] = flat[start : start + shape.numel()].reshape(shape)
            start += shape.numel()
        return nn.functional.cross_entropy(functional_call(model, params, (x,)), y)

    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return torch.func.hessian(loss)(flat)


def test_least_squares_hessian_is_the_closed_form_whatever_the_batching():
    model, X, y, H = least_squares()
    for splits in ([40], [13, 27], [1, 9, 30]):
        batches = list(zip(X.split(splits), y.split(splits)))
        op = HessianOperator(model, nn.MSELoss(), batches)
        # The operator orders coordinates as the model's parameters: weight entries, then the bias.
        assert torch.allclose(dense_operator(op), H, atol=1e-12)


def test_hvp_matches_the_brute_force_hessian_of_a_cnn():
    model, batches = tiny_cnn(), tiny_data()
    H = brute_force_hessian(model, batches)
    assert torch.allclose(dense_operator(HessianOperator(model, nn.CrossEntropyLoss(), batches)), H, atol=1e-10)


def test_hvp_is_symmetric():
    model, batches = tiny_cnn(1), tiny_data(1)
    op = HessianOperator(model, nn.CrossEntropyLoss(), batches)
    g = torch.Generator().manual_seed(3)
    u, v = torch.randn(op.size, generator=g, dtype=torch.float64), torch.randn(op.size, generator=g, dtype=torch.float64)
    assert float(u @ op.matvec(v)) == pytest.approx(float(v @ op.matvec(u)), rel=1e-12)


def test_restriction_by_name_is_a_principal_block():
    model, batches = tiny_cnn(), tiny_data()
    H = brute_force_hessian(model, batches)
    sub = parameter_subspace(model, params=["0.weight", "3.bias"])
    op = HessianOperator(model, nn.CrossEntropyLoss(), batches, subspace=sub)
    index = torch.cat([torch.arange(0, 6), torch.arange(H.shape[0] - 3, H.shape[0])])
    assert op.size == 9
    assert torch.allclose(dense_operator(op), H[index][:, index], atol=1e-10)


def test_restriction_by_mask_is_a_principal_block():
    model, batches = tiny_cnn(), tiny_data()
    H = brute_force_hessian(model, batches)
    mask = torch.zeros(3, 16, dtype=torch.bool)
    mask[0, :4] = mask[2, 10] = True
    op = HessianOperator(model, nn.CrossEntropyLoss(), batches, subspace=parameter_subspace(model, masks={"3.weight": mask}))
    index = 6 + 2 + torch.flatten(mask).nonzero().squeeze(1)  # conv weight (6) and bias (2) come first
    assert op.size == 5
    assert torch.allclose(dense_operator(op), H[index][:, index], atol=1e-10)


def test_linear_map_restriction_is_j_transpose_h_j():
    model, batches = tiny_cnn(), tiny_data()
    H = brute_force_hessian(model, batches)
    n = H.shape[0]
    # Tie the two conv filters together and leave the rest free: a linear map from 3 + 2 + 51 coordinates.
    def tie(c):
        return {"0.weight": torch.cat([c["filter"], c["filter"]]), "0.bias": c["bias"], "3.weight": c["head"][:48].reshape(3, 16), "3.bias": c["head"][48:]}

    coordinates = {"filter": torch.zeros(1, 1, 3, dtype=torch.float64), "bias": torch.zeros(2, dtype=torch.float64), "head": torch.zeros(51, dtype=torch.float64)}
    sub = parameter_subspace(model, linear_map=tie, coordinates=coordinates)
    J = torch.zeros(n, 56, dtype=torch.float64)
    J[0:3, 0:3] = J[3:6, 0:3] = torch.eye(3)
    J[6:, 3:] = torch.eye(53)
    op = HessianOperator(model, nn.CrossEntropyLoss(), batches, subspace=sub)
    assert torch.allclose(dense_operator(op), J.T @ H @ J, atol=1e-10)


def test_gradient_is_restricted_and_model_is_left_untouched():
    model, batches = tiny_cnn(), tiny_data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    op = HessianOperator(model, nn.CrossEntropyLoss(), batches, subspace=parameter_subspace(model, params=["3.bias"]))
    op.matvec(torch.ones(3, dtype=torch.float64))
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    expected = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), model[3].bias)[0]
    assert torch.allclose(op.gradient(), expected, atol=1e-12)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_scipy_export_finds_the_top_eigenvalue():
    model, X, y, H = least_squares()
    op = HessianOperator(model, nn.MSELoss(), [(X, y)]).to_scipy()
    top = scipy.sparse.linalg.eigsh(op, k=1, which="LA", return_eigenvectors=False)[0]
    assert top == pytest.approx(np.linalg.eigvalsh(H.numpy())[-1], rel=1e-10)


def test_both_operators_satisfy_the_linear_operator_protocol():
    model, X, y, H = least_squares()
    for op in (HessianOperator(model, nn.MSELoss(), [(X, y)]), MatrixOperator(H)):
        assert isinstance(op, LinearOperator) and op.shape == (op.size, op.size) == tuple(H.shape)
        scipy_op = op.to_scipy()
        assert isinstance(scipy_op, scipy.sparse.linalg.LinearOperator) and scipy_op.shape == op.shape
        np.testing.assert_allclose(scipy_op @ np.ones(op.size), (H @ torch.ones(op.size, dtype=H.dtype)).numpy(), rtol=1e-10)
        rows = torch.eye(op.size, dtype=H.dtype)[:2]
        assert torch.allclose(op.matmat(rows), rows @ H, atol=1e-10)
    assert not isinstance(H, LinearOperator)


def test_hessian_eigenvalues_of_least_squares_match_numpy():
    model, X, y, H = least_squares()
    got = hessian_eigenvalues(model, nn.MSELoss(), [(X[:25], y[:25]), (X[25:], y[25:])], k=3, tol=1e-10)
    assert torch.allclose(got, torch.tensor(np.linalg.eigvalsh(H.numpy())[::-1][:3].copy()), rtol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batches": []}, "batches is empty: curvature probes need at least one (x, y) batch of data"),
        ({"batches": iter([(torch.zeros(2, 5), torch.zeros(2, 1))])}, "batches must be re-iterable"),
        ({"batches": [(torch.zeros(2, 5), torch.zeros(3, 1))]}, "batch 0 has 2 inputs and 3 targets"),
        ({"k": 0}, "k must be a positive integer, got 0; pass an int >= 1"),
        ({"k": 7}, "k=7 eigenvalues were asked of an operator of dimension 6; pass k <= 6"),
        ({"loss_fn": nn.MSELoss(reduction="sum")}, "loss_fn must average over the batch (reduction='mean')"),
    ],
)
def test_bad_input_gives_a_clear_error(kwargs, message):
    model = nn.Linear(5, 1)
    args = {"loss_fn": nn.MSELoss(), "batches": [(torch.zeros(2, 5), torch.zeros(2, 1))], "k": 1, **kwargs}
    with pytest.raises(ValueError) as err:
        hessian_eigenvalues(model, args["loss_fn"], args["batches"], k=args["k"])
    assert message in str(err.value)


def test_bad_subspaces_give_clear_errors():
    model = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.5))
    with pytest.raises(ValueError, match=r"unknown parameter names \['nope'\]"):
        parameter_subspace(model, params=["nope"])
    with pytest.raises(ValueError, match=r"mask for '0.weight' must be a bool tensor of shape \(2, 3\), got torch.float32 \(2, 3\)"):
        parameter_subspace(model, masks={"0.weight": torch.ones(2, 3)})
    with pytest.raises(ValueError, match="masks select no entry at all"):
        parameter_subspace(model, masks={"0.weight": torch.zeros(2, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="pass at most one of params, masks, linear_map; got params, masks"):
        parameter_subspace(model, params=["0.bias"], masks={"0.weight": torch.ones(2, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="not linear"):
        parameter_subspace(model, linear_map=lambda c: {"0.bias": c["b"] + 1}, coordinates={"b": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"layer '1' \(Dropout\) is in training mode.*call model.eval\(\)"):
        HessianOperator(model, nn.MSELoss(), [(torch.zeros(2, 3), torch.zeros(2, 2))])


def test_blocked_products_equal_one_at_a_time():
    model, batches = tiny_cnn(2), tiny_data(2)
    mask = torch.zeros(3, 16, dtype=torch.bool)
    mask[1, 3:9] = True
    least = least_squares()
    cases = [
        (model, nn.CrossEntropyLoss(), batches, None),
        (model, nn.CrossEntropyLoss(), batches, parameter_subspace(model, masks={"3.weight": mask})),
        (least[0], nn.MSELoss(), [(least[1], least[2])], None),
    ]
    for net, loss_fn, data, sub in cases:
        op = HessianOperator(net, loss_fn, data, subspace=sub)
        rows = torch.randn(5, op.size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        assert torch.allclose(op.matmat(rows, block=2), torch.stack([op.matvec(r) for r in rows]), atol=1e-12)
