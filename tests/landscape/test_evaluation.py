"""Functional evaluation: exact full-data averages, no mutation, BatchNorm recalibration."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape.evaluation import (
    Evaluation,
    buffer_dict,
    evaluate,
    flatten_params,
    param_dict,
    predict,
    recalibrate_batchnorm,
    stack_params,
    unstack_params,
)


def _data(count: int = 50, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, 1, 12, generator=generator), torch.randint(0, 3, (count,), generator=generator)


def _cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv1d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Dropout(0.5), nn.Linear(40, 3)).double()


def _split(x: torch.Tensor, y: torch.Tensor, sizes: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(zip(x.split(sizes), y.split(sizes)))


def test_exact_full_data_average_with_unequal_batches():
    model = _cnn()
    x, y = _data()
    x = x.double()
    model.eval()
    with torch.no_grad():
        logits = model(x)
    expected_loss = float(nn.functional.cross_entropy(logits, y))
    expected_acc = float((logits.argmax(1) == y).double().mean())
    model.train()
    result = evaluate(model, None, _split(x, y, [7, 30, 13]))
    assert result == Evaluation(loss=pytest.approx(expected_loss, abs=1e-12), accuracy=expected_acc, count=50)


def test_params_override_without_mutating_the_model():
    model, other = _cnn(0), _cnn(1)
    x, y = _data()
    batches = _split(x.double(), y, [25, 25])
    before = {name: p.clone() for name, p in model.named_parameters()}
    model.train()
    at_other = evaluate(model, None, batches, params=param_dict(other))
    assert at_other.loss == pytest.approx(evaluate(other, None, batches).loss, abs=1e-12)
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    assert all(module.training for module in model.modules()), "train/eval flags must be restored"


def test_predict_concatenates_logits_in_order():
    model = _cnn()
    x, y = _data()
    logits, targets = predict(model, _split(x.double(), y, [10, 40]))
    model.eval()
    torch.testing.assert_close(logits, model(x.double()).detach())
    assert torch.equal(targets, y)


def test_stack_unstack_flatten_round_trip():
    points = [param_dict(_cnn(seed)) for seed in range(3)]
    stacked = stack_params(points)
    assert stacked["0.weight"].shape == (3, 4, 1, 3)
    for original, recovered in zip(points, unstack_params(stacked)):
        assert torch.equal(flatten_params(original), flatten_params(recovered))
    assert flatten_params(points[0]).numel() == sum(p.numel() for p in points[0].values())


def test_loss_with_sum_reduction_is_refused():
    with pytest.raises(ValueError, match=r"reduction='mean'\), got reduction='sum'"):
        evaluate(_cnn(), nn.CrossEntropyLoss(reduction="sum"), _split(*_data(), [50]))


def _bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3)).double()


def test_batchnorm_recalibration_gives_full_data_mean_and_leaves_model_untouched():
    model = _bn_model()
    generator = torch.Generator().manual_seed(1)
    x = (3.0 + 2.0 * torch.randn(60, 5, generator=generator)).double()
    y = torch.randint(0, 3, (60,), generator=generator)
    before = {name: b.clone() for name, b in model.named_buffers()}
    buffers = recalibrate_batchnorm(model, _split(x, y, [11, 29, 20]))
    with torch.no_grad():
        hidden = model[0](x)
    torch.testing.assert_close(buffers["1.running_mean"], hidden.mean(0))
    assert all(torch.equal(b, before[name]) for name, b in model.named_buffers())
    assert model[1].momentum == 0.1
    # Equal batches: the running variance is the mean of the unbiased batch variances.
    buffers = recalibrate_batchnorm(model, _split(x, y, [20, 20, 20]))
    expected = torch.stack([chunk.var(0, unbiased=True) for chunk in hidden.split(20)]).mean(0)
    torch.testing.assert_close(buffers["1.running_var"], expected)


def test_recalibrated_statistics_change_the_evaluation():
    model = _bn_model()
    generator = torch.Generator().manual_seed(2)
    x = (5.0 + 3.0 * torch.randn(40, 5, generator=generator)).double()
    y = torch.randint(0, 3, (40,), generator=generator)
    batches = _split(x, y, [20, 20])
    stale = evaluate(model, None, batches)
    fresh = evaluate(model, None, batches, buffers=recalibrate_batchnorm(model, batches))
    assert abs(stale.loss - fresh.loss) > 1e-3
    assert set(buffer_dict(model)) == set(recalibrate_batchnorm(model, batches))
