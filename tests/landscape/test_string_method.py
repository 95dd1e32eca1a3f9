"""Elastic string: the paper's limits (k -> inf: linear path, k = 0: free fall), closed-form fixed
points on a quadratic bowl, vmap == loop, NEB and climbing image, trajectory, bad configurations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape.evaluation import evaluate, param_dict
from landscape.string_method import StringConfig, elastic_string


# L(w) = (w_1^2 + w_2^2) / 2 exactly: a linear map of the identity inputs, MSE against zeros.
BOWL_BATCHES = [(torch.eye(2, dtype=torch.float64), torch.zeros(2, 1, dtype=torch.float64))]


def _bowl() -> nn.Module:
    return nn.Linear(2, 1, bias=False).double()


def _w(*values: float) -> dict[str, torch.Tensor]:
    return {"weight": torch.tensor([values], dtype=torch.float64)}


def _bowl_string(a, b, **config):
    return elastic_string(_bowl(), a, b, BOWL_BATCHES, config=StringConfig(**config), loss_fn=nn.MSELoss())


def _cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 3)).double()


def _cnn_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(60, 1, 12, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (60,), generator=generator)
    return list(zip(x.split(20), y.split(20)))


def test_infinite_stiffness_keeps_the_linear_path():
    a, b = param_dict(_cnn(0)), param_dict(_cnn(1))
    result = elastic_string(_cnn(0), a, b, _cnn_batches(), config=StringConfig(num_points=5, stiffness=1e12, steps=6))
    for i, alpha in enumerate(torch.linspace(0, 1, 5).tolist()):
        for name in a:
            torch.testing.assert_close(result.points[name][i], torch.lerp(a[name], b[name], alpha), atol=1e-9, rtol=0)


def test_zero_stiffness_lets_every_point_fall_below_the_linear_path():
    model, batches = _cnn(0), _cnn_batches()
    a, b = param_dict(_cnn(0)), param_dict(_cnn(1))
    result = elastic_string(model, a, b, batches, config=StringConfig(num_points=5, stiffness=0.0, steps=30, lr=0.2))
    for i, alpha in enumerate([0.25, 0.5, 0.75], start=1):
        linear = evaluate(model, batches, params={n: torch.lerp(a[n], b[n], alpha) for n in a}).loss
        fallen = evaluate(model, batches, params={n: t[i] for n, t in result.points.items()}).loss
        assert fallen < linear - 0.01


@pytest.mark.parametrize("spring", ["implicit", "explicit"])
def test_both_springs_reach_the_closed_form_fixed_point(spring):
    # Interior point of M=3 between (-1, 1) and (1, 1): w + k (2w - a - b) = 0 gives w = (0, 2k / (1 + 2k)).
    result = _bowl_string(_w(-1.0, 1.0), _w(1.0, 1.0), num_points=3, stiffness=1.0, lr=0.1, steps=400, spring=spring)
    torch.testing.assert_close(result.points["weight"][1], torch.tensor([[0.0, 2 / 3]], dtype=torch.float64), atol=1e-8, rtol=0)


def test_vmap_and_loop_take_the_same_steps():
    a, b = param_dict(_cnn(0)), param_dict(_cnn(1))
    runs = {
        batching: elastic_string(_cnn(0), a, b, _cnn_batches(), config=StringConfig(num_points=4, steps=5, batching=batching))
        for batching in ("vmap", "loop")
    }
    assert runs["vmap"].batching == "vmap" and runs["loop"].batching == "loop"
    for name in a:
        torch.testing.assert_close(runs["vmap"].points[name], runs["loop"].points[name], atol=1e-10, rtol=0)


def test_auto_batching_times_both_and_keeps_the_faster():
    result = _bowl_string(_w(-1.0, 0.0), _w(1.0, 0.0), num_points=3, steps=1)
    assert set(result.seconds_per_step) == {"vmap", "loop"}
    assert result.batching == min(result.seconds_per_step, key=result.seconds_per_step.get)


def test_nudged_band_keeps_an_equally_spaced_path_along_the_gradient():
    # The gradient is parallel to the path: NEB removes it, and equal spacing means no spring force.
    neb = _bowl_string(_w(-1.0, 0.0), _w(1.0, 0.0), num_points=5, stiffness=1.0, forces="neb", steps=20)
    expected = torch.tensor([[-1.0, 0.0], [-0.5, 0.0], [0.0, 0.0], [0.5, 0.0], [1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(neb.points["weight"][:, 0], expected, atol=1e-12, rtol=0)
    # The paper's plain elastic string at k = 0 collapses onto the minimum instead.
    free = _bowl_string(_w(-1.0, 0.0), _w(1.0, 0.0), num_points=5, stiffness=0.0, steps=200)
    assert float(free.points["weight"][1:-1].abs().max()) < 1e-6


def test_climbing_image_climbs_towards_the_highest_point():
    # Interior points at x = 0, 1, 2 between -1 and 3; the loss rises towards x = 3, so the top image climbs.
    config = dict(num_points=5, stiffness=1.0, forces="neb", steps=5, lr=0.05)
    plain = _bowl_string(_w(-1.0, 0.0), _w(3.0, 0.0), **config)
    climbing = _bowl_string(_w(-1.0, 0.0), _w(3.0, 0.0), climbing_image=True, **config)
    assert float(plain.points["weight"][3, 0, 0]) == pytest.approx(2.0, abs=1e-12)
    # Along the tangent the climbing force is +dL/dx = x: x <- 1.05 x, five times.
    assert float(climbing.points["weight"][3, 0, 0]) == pytest.approx(2 * 1.05**5, abs=1e-12)


def test_trajectory_records_every_point_at_the_chosen_steps():
    result = _bowl_string(_w(-1.0, 1.0), _w(1.0, 1.0), num_points=4, steps=25, record_every=10)
    assert result.trajectory_step.tolist() == [0, 10, 20, 24]
    assert result.trajectory_loss.shape == (4, 4) and result.steps == 25
    # Fixed endpoints: L = ((-1)^2 + 1^2) / 2 at every record.
    assert result.trajectory_loss[:, 0].tolist() == [1.0] * 4 and result.trajectory_loss[:, -1].tolist() == [1.0] * 4
    assert result.trajectory_loss[-1, 1] < result.trajectory_loss[0, 1]
    assert result.alpha.tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])


def test_default_steps_are_epochs_over_the_batches():
    result = elastic_string(_cnn(0), param_dict(_cnn(0)), param_dict(_cnn(1)), _cnn_batches(), config=StringConfig(epochs=2))
    assert result.steps == 2 * 3


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (dict(stiffness=-1.0), r"stiffness k must be a finite number >= 0 .* got -1.0"),
        (dict(num_points=2), r"num_points must be an int >= 3 .* got 2"),
        (dict(climbing_image=True), r"climbing_image=True needs forces='neb'"),
        (dict(optimizer="lbfgs"), r"optimizer must be one of 'sgd', 'adam', got 'lbfgs'"),
        (dict(momentum=1.0), r"momentum must be in \[0, 1\), got 1.0"),
    ],
)
def test_bad_configuration_is_refused_with_a_clear_message(config, message):
    with pytest.raises(ValueError, match=message):
        StringConfig(**config)
