"""Interpolation paths: endpoints, flatness, the output mixture, the string against the linear path on a
trained pair, cross-space endpoints, BatchNorm recalibration, metrics and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from embeddings import build_model, to_efcn, to_elcn
from landscape import PathMetrics, StringConfig, evaluate, interpolate, param_dict
from landscape.paths import barrier_height

ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]


def _bump_data(count: int = 400, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Which third of the sequence holds the bump: a task a 4-channel CNN learns in 100 steps."""
    generator = torch.Generator().manual_seed(seed)
    position = torch.randint(0, 40, (count,), generator=generator)
    x = 0.5 * torch.randn(count, 1, 40, generator=generator)
    x[torch.arange(count), 0, position] += 3.0
    return x, position * 3 // 40


def _train(seed: int, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model("vanilla1d", channels=4, num_classes=3)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        index = torch.randint(0, len(x), (50,))
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x[index]), y[index]).backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="module")
def pair():
    x, y = _bump_data()
    train = list(zip(x[:300].split(50), y[:300].split(50)))
    test = list(zip(x[300:].split(50), y[300:].split(50)))
    return _train(1, x[:300], y[:300]), _train(2, x[:300], y[:300]), train, test


@pytest.mark.parametrize("method", ["linear", "output", "string"])
def test_endpoints_of_every_method_are_the_endpoint_models(pair, method):
    model_a, model_b, train, test = pair
    result = interpolate(model_a, model_b, None, train, alphas=ALPHAS, method=method, test_batches=test, string=StringConfig(steps=3))
    for index, model in ((0, model_a), (-1, model_b)):
        own_train, own_test = evaluate(model, None, train), evaluate(model, None, test)
        assert result.train_loss[index] == pytest.approx(own_train.loss, abs=1e-5)
        assert result.test_loss[index] == pytest.approx(own_test.loss, abs=1e-5)
        assert result.train_acc[index] == own_train.accuracy and result.test_acc[index] == own_test.accuracy
    assert result.endpoints["train_a"].loss == pytest.approx(evaluate(model_a, None, train).loss, abs=1e-5)
    assert list(result.curves())[:5] == ["alpha", "train_loss", "train_acc", "test_loss", "test_acc"]


@pytest.mark.parametrize("method", ["linear", "output"])
def test_path_between_identical_models_is_flat(pair, method):
    model, _, train, test = pair
    result = interpolate(model, model, None, train, alphas=ALPHAS, method=method, test_batches=test)
    assert np.ptp(result.train_loss) < 1e-6 and np.ptp(result.test_acc) == 0
    assert result.metrics.barrier == pytest.approx(0.0, abs=1e-6)


def test_linear_point_is_the_weight_average_and_may_extrapolate(pair):
    model_a, model_b, train, _ = pair
    result = interpolate(model_a, model_b, None, train, alphas=[-0.5, 0.3, 1.5], method="linear")
    a, b = param_dict(model_a), param_dict(model_b)
    for alpha, loss in zip([-0.5, 0.3, 1.5], result.train_loss):
        expected = evaluate(model_a, None, train, params={n: (1 - alpha) * a[n] + alpha * b[n] for n in a}).loss
        assert loss == pytest.approx(expected, abs=1e-5)
    distance = math.sqrt(sum(float((a[n] - b[n]).pow(2).sum()) for n in a))
    assert result.metrics.length == pytest.approx(2.0 * distance, rel=1e-6)


@pytest.mark.parametrize("mode", ["probabilities", "logits"])
def test_output_averaging_is_the_mixture(pair, mode):
    model_a, model_b, train, test = pair
    alpha = 0.3
    result = interpolate(model_a, model_b, None, train, alphas=[alpha], method="output", test_batches=test, output_mode=mode)
    x, y = torch.cat([b[0] for b in test]), torch.cat([b[1] for b in test])
    with torch.no_grad():
        fa, fb = model_a(x).double(), model_b(x).double()
    if mode == "probabilities":
        p = (1 - alpha) * fa.softmax(-1) + alpha * fb.softmax(-1)
    else:
        p = ((1 - alpha) * fa + alpha * fb).softmax(-1)
    assert result.test_loss[0] == pytest.approx(float(-p[torch.arange(len(y)), y].log().mean()), abs=1e-5)
    assert result.test_acc[0] == pytest.approx(float((p.argmax(-1) == y).double().mean()))
    expected_kl = float((p * (p.log() - fa.log_softmax(-1))).sum(-1).mean())
    assert result.extras["kl_a"][0] == pytest.approx(expected_kl, abs=1e-5)
    assert result.extras["disagree_b"][0] == pytest.approx(float((p.argmax(-1) != fb.argmax(-1)).double().mean()))
    assert math.isnan(result.metrics.length)


def test_string_lowers_the_barrier_of_a_trained_pair(pair):
    model_a, model_b, train, test = pair
    alphas = np.linspace(0, 1, 11)
    linear = interpolate(model_a, model_b, None, train, alphas=alphas, method="linear", test_batches=test)
    string = interpolate(model_a, model_b, None, train, alphas=alphas, method="string", test_batches=test,
                         string=StringConfig(stiffness=0.1))
    assert linear.metrics.barrier > 0.05
    assert string.train_loss.max() <= linear.train_loss.max()
    assert string.metrics.barrier < linear.metrics.barrier
    assert string.string.trajectory_loss.shape[1] == 5
    assert string.metrics.length > linear.metrics.length


def test_metrics_follow_their_definitions(pair):
    model_a, model_b, train, test = pair
    result = interpolate(model_a, model_b, None, train, alphas=np.linspace(0, 1, 6), method="linear", test_batches=test)
    chord = (1 - result.alpha) * result.train_loss[0] + result.alpha * result.train_loss[-1]
    assert result.metrics.barrier == pytest.approx(float((result.train_loss - chord).max()))
    top = int(np.argmax(result.test_acc))
    assert result.metrics.peak_test_alpha == result.alpha[top]
    assert result.metrics.test_acc_gain == pytest.approx(result.test_acc[top] - max(result.test_acc[0], result.test_acc[-1]))
    assert isinstance(result.metrics, PathMetrics) and set(result.metrics.as_dict()) >= {"barrier", "length"}
    assert all(math.isnan(v) for v in barrier_height([2.0], [1.0], 0.0, 0.0)), "no alpha in [0, 1]: no barrier"


def test_cnn_and_its_own_embeddings_are_one_point(pair):
    model, _, train, _ = pair
    for embedded in (to_efcn(model), to_elcn(model)):
        result = interpolate(model, embedded, None, train, alphas=ALPHAS, method="linear")
        assert result.spaces == {"a": "cnn", "b": embedded.space, "common": embedded.space}
        assert result.metrics.length == pytest.approx(0.0, abs=1e-6)
        assert np.ptp(result.train_loss) < 1e-5


def test_cnn_to_a_perturbed_efcn_uses_the_efcn_space(pair):
    model, _, train, _ = pair
    efcn = to_efcn(model)
    with torch.no_grad():
        for p in efcn.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    result = interpolate(efcn, model, None, train, alphas=ALPHAS, method="linear")
    assert result.spaces["common"] == "efcn" and result.metrics.length > 0
    assert result.train_loss[-1] == pytest.approx(evaluate(model, None, train).loss, abs=1e-5)


def test_unrelated_architectures_are_refused(pair):
    model, _, train, _ = pair
    other = build_model("vanilla1d", channels=8, num_classes=3)
    with pytest.raises(ValueError, match=r"cannot interpolate between unrelated architectures: model A is vanilla1d\(.*channels\": 4"):
        interpolate(model, other, None, train, alphas=ALPHAS)
    plain_a, plain_b = nn.Linear(40, 3), nn.Sequential(nn.Flatten(), nn.Linear(40, 3))
    with pytest.raises(ValueError, match=r"parameters only in A: \['bias', 'weight'\]"):
        interpolate(plain_a, plain_b, None, [(torch.zeros(2, 40), torch.zeros(2, dtype=torch.long))], alphas=ALPHAS)


@pytest.mark.parametrize("method", ["output", "string"])
def test_alphas_outside_the_unit_interval_only_for_linear(pair, method):
    model_a, model_b, train, _ = pair
    with pytest.raises(ValueError, match=rf"alphas for method '{method}' must lie in \[0, 1\] .* min -0.5, max 1"):
        interpolate(model_a, model_b, None, train, alphas=[-0.5, 1.0], method=method)


def test_unknown_method_is_refused(pair):
    model_a, model_b, train, _ = pair
    with pytest.raises(ValueError, match=r"method must be one of 'linear', 'output', 'string', got 'cubic'"):
        interpolate(model_a, model_b, None, train, alphas=ALPHAS, method="cubic")


def _bn_pair():
    generator = torch.Generator().manual_seed(3)
    x, y = 3.0 + 2.0 * torch.randn(64, 6, generator=generator), torch.randint(0, 3, (64,), generator=generator)

    def make(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
        optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(30):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimiser.step()
        return model.eval()

    return make(0), make(1), list(zip(x.split(32), y.split(32)))


def test_batchnorm_recalibration_is_on_by_default_and_changes_the_path():
    model_a, model_b, batches = _bn_pair()
    fresh = interpolate(model_a, model_b, None, batches, alphas=ALPHAS, method="linear")
    stale = interpolate(model_a, model_b, None, batches, alphas=ALPHAS, method="linear", bn_recalibrate=False)
    assert fresh.bn_recalibrated and not stale.bn_recalibrated
    assert abs(fresh.train_loss[3] - stale.train_loss[3]) > 1e-2
    # Off, the endpoints keep their own statistics; on, they are recalibrated like every point.
    assert stale.train_loss[0] == pytest.approx(evaluate(model_a, None, batches).loss, abs=1e-6)
    assert fresh.endpoints["train_a"].loss == pytest.approx(fresh.train_loss[0], abs=1e-6)


def test_string_runs_on_batchnorm_models():
    model_a, model_b, batches = _bn_pair()
    result = interpolate(model_a, model_b, None, batches, alphas=ALPHAS, method="string", string=StringConfig(steps=4, batching="vmap"))
    assert np.isfinite(result.train_loss).all() and result.string.batching == "vmap"


def test_a_linear_path_evaluates_each_point_once_endpoints_included():
    class Counting(nn.Module):
        batches = 0  # on the class: interpolate may work on copies of the models

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            Counting.batches += 1
            return x

    torch.manual_seed(0)
    model_a, model_b = (nn.Sequential(nn.Flatten(), nn.Linear(40, 3), Counting()) for _ in range(2))
    x, y = _bump_data(100)
    train, test = list(zip(x[:60].split(20), y[:60].split(20))), list(zip(x[60:].split(20), y[60:].split(20)))
    result = interpolate(model_a, model_b, None, train, alphas=[0.0, 0.5, 1.0, 1.5], method="linear", test_batches=test)
    assert Counting.batches == 4 * (len(train) + len(test))  # 4 points, each over 3 train and 2 test batches
    assert result.train_loss[0] == result.endpoints["train_a"].loss and result.test_loss[2] == result.endpoints["test_b"].loss
