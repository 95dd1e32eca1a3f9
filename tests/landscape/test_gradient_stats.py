"""Pairwise cosine similarities of mini-batch gradients (gradient confusion)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape import gradient_cosines, pairwise_cosines


def test_known_answer_linear_regression_float64():
    """For ``mean((w . x - y)^2)`` at ``w = 0`` one sample's gradient is ``-2 y x``, so
    ``c_ij = sign(y_i y_j) cos(x_i, x_j)`` in closed form."""
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(7, 5, generator=g, dtype=torch.float64)
    ys = torch.randn(7, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(5, 1, bias=False).double()
    nn.init.zeros_(model.weight)
    result = gradient_cosines(model, nn.MSELoss(), [(xs[i:i + 1], ys[i:i + 1]) for i in range(7)])
    unit = xs / xs.norm(dim=1, keepdim=True)
    expected = torch.sign(ys @ ys.T) * (unit @ unit.T)
    i, j = result.pairs.T
    torch.testing.assert_close(result.cosines, expected[i, j], atol=1e-12, rtol=0)
    assert result.pairs.tolist() == [[a, b] for a in range(7) for b in range(a + 1, 7)]
    assert result.minimum == pytest.approx(float(expected[i, j].min()), abs=1e-12)
    assert result.mean == pytest.approx(float(expected[i, j].mean()), abs=1e-12)
    torch.testing.assert_close(result.norms, 2 * (ys.abs() * xs.norm(dim=1, keepdim=True)).squeeze(1))
    assert result.num_batches == 7 and result.batch_indices == tuple(range(7))


def _bn_net() -> nn.Module:
    return nn.Sequential(nn.Conv1d(1, 3, 3, padding=1), nn.BatchNorm1d(3), nn.ReLU(), nn.Flatten(), nn.Linear(24, 4)).double()


def _batches(count: int, size: int = 6) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(size, 1, 8, generator=g, dtype=torch.float64), torch.randint(4, (size,), generator=g)) for _ in range(count)]


def _reference(model: nn.Module, batches) -> torch.Tensor:
    """Plain autograd, one batch at a time, on a copy in training mode."""
    rows = []
    for x, y in batches:
        copy = __import__("copy").deepcopy(model).train()
        grads = torch.autograd.grad(nn.functional.cross_entropy(copy(x), y), list(copy.parameters()))
        rows.append(torch.cat([g.flatten() for g in grads]))
    unit = torch.nn.functional.normalize(torch.stack(rows), dim=1)
    i, j = torch.triu_indices(len(rows), len(rows), 1)
    return (unit @ unit.T)[i, j]


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_vmap_and_loop_agree_with_autograd_and_leave_the_model_alone(chunk_size):
    model = _bn_net().eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    batches = _batches(5)
    vectorized = gradient_cosines(model, None, batches, chunk_size=chunk_size)
    looped = gradient_cosines(model, None, batches, vectorize=False)
    assert vectorized.vectorized and not looped.vectorized
    reference = _reference(model, batches)
    torch.testing.assert_close(vectorized.cosines, reference, atol=1e-10, rtol=0)
    torch.testing.assert_close(looped.cosines, reference, atol=1e-10, rtol=0)
    assert not model.training and not model[1].training
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name


def test_unequal_batches_fall_back_to_the_loop_and_eval_mode_differs():
    model = _bn_net()
    batches = _batches(3) + _batches(1, size=4)
    train = gradient_cosines(model, None, batches)
    assert not train.vectorized and train.num_batches == 4
    assert not torch.allclose(train.cosines, gradient_cosines(model, None, batches, mode="eval").cosines)


def test_sampling_is_seeded():
    model, batches = _bn_net(), _batches(6)
    a = gradient_cosines(model, None, batches, num_batches=3, seed=5)
    b = gradient_cosines(model, None, batches, num_batches=3, seed=5)
    assert a.batch_indices == b.batch_indices and len(a.batch_indices) == 3 and len(a.cosines) == 3
    torch.testing.assert_close(a.cosines, b.cosines)
    assert any(gradient_cosines(model, None, batches, num_batches=3, seed=s).batch_indices != a.batch_indices for s in range(6))
    full = gradient_cosines(model, None, batches)
    lookup = {tuple(p): c for p, c in zip(full.pairs.tolist(), full.cosines.tolist())}
    for (i, j), c in zip(a.pairs.tolist(), a.cosines.tolist()):
        assert c == pytest.approx(lookup[(a.batch_indices[i], a.batch_indices[j])], abs=1e-12)


def test_zero_gradient_counts_as_orthogonal():
    cosines, _ = pairwise_cosines(torch.tensor([[0.0, 0.0], [1.0, 2.0]]))
    assert cosines.tolist() == [0.0]


def test_bad_input():
    model, batches = _bn_net(), _batches(3)
    with pytest.raises(ValueError, match=r"need at least 2 batches to form a pair, got 1; pass more"):
        gradient_cosines(model, None, batches[:1])
    with pytest.raises(ValueError, match=r"num_batches must be at least 2 to form a pair, got 1"):
        gradient_cosines(model, None, batches, num_batches=1)
    with pytest.raises(ValueError, match=r"mode must be 'train' or 'eval', got 'test'"):
        gradient_cosines(model, None, batches, mode="test")
    with pytest.raises(ValueError, match=r"Sequential has no trainable parameters, so no gradients to compare"):
        gradient_cosines(_bn_net().requires_grad_(False), None, batches)
    with pytest.raises(ValueError, match=r"reduction='mean'\), got reduction='sum'"):
        gradient_cosines(model, nn.CrossEntropyLoss(reduction="sum"), batches)
