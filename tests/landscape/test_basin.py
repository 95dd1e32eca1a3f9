"""Basin probes on quadratic bowls with analytic answers, subspace restrictions and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from landscape import (
    basin_width,
    epsilon_sharpness,
    evaluate,
    filter_normalized_direction,
    loss_surface,
    parameter_subspace,
)
from landscape.basin import _filter_normalized_direction


def bowl(seed: int = 0):
    """Least squares at its exact minimum (zero residual): L(theta + y) = y^T H y / 2 with H = 2 X^T X / n."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(20, 3, generator=g, dtype=torch.float64)
    model = nn.Linear(3, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(2, 3, generator=g, dtype=torch.float64))
    y = model(X).detach()
    return model, [(X[:8], y[:8]), (X[8:], y[8:])], X


def curvature_along(model, X, flat_direction) -> float:
    """d^T H d for the MSE loss (mean over n samples and 2 outputs) along a flat direction of (weight, bias)."""
    dw, db = flat_direction[:6].reshape(2, 3), flat_direction[6:]
    change = X @ dw.T + db
    return float(2 * change.square().mean())


def test_basin_width_of_a_quadratic_bowl_is_analytic():
    model, batches, X = bowl()
    result = basin_width(model, nn.MSELoss(), batches, threshold=0.05, num_directions=3, max_distance=2.0, bisection_steps=30, seed=7)
    generator = torch.Generator().manual_seed(7)
    sub = parameter_subspace(model)
    for j in range(3):
        d = _filter_normalized_direction(sub, generator)  # the j-th draw, as basin_width takes them
        analytic = math.sqrt(2 * 0.05 / curvature_along(model, X, d))
        assert result.widths[j].tolist() == pytest.approx([analytic, analytic], rel=1e-7)
    assert not result.censored.any()
    assert result.base_loss == pytest.approx(0.0, abs=1e-20) and result.rise == 0.05
    assert result.mean == pytest.approx(float(result.widths.mean()))


def test_relative_threshold_and_censoring():
    model, batches, X = bowl()
    with torch.no_grad():
        model.bias.add_(0.1)  # off the minimum: L(theta) = 0.01 > 0
    result = basin_width(model, nn.MSELoss(), batches, threshold=1e6, mode="relative", num_directions=2, max_distance=0.5)
    assert result.rise == pytest.approx(1e6 * result.base_loss)
    assert result.censored.all() and (result.widths == 0.5).all()


def test_filter_normalised_directions_respect_filters_and_masks():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[:, :2] = True
    sub = parameter_subspace(model, masks={"0.weight": mask})
    d = sub.unflatten(filter_normalized_direction(sub, seed=0))["0.weight"]
    assert (d[:, 2:] == 0).all()
    assert torch.allclose(d.norm(dim=1), model[0].weight.detach().norm(dim=1))
    with pytest.raises(ValueError, match="every filter-normalised direction in this subspace is zero"):
        filter_normalized_direction(parameter_subspace(model, params=["0.bias"]))
    biases = parameter_subspace(model, params=["0.bias"])
    d = filter_normalized_direction(biases, ignore_biases=False)
    assert float(d.norm()) == pytest.approx(float(model[0].bias.detach().norm()), rel=1e-6)


def test_epsilon_sharpness_of_a_diagonal_bowl_is_its_corner():
    X = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    model = nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -2.0, 1.0]]))
    y = model(X).detach()
    result = epsilon_sharpness(model, nn.MSELoss(), [(X, y)], epsilon=1e-2, steps=10)
    half_width = 1e-2 * (model.weight.detach().abs() + 1)
    corner = float((torch.tensor([1.0, 4.0, 9.0]) * half_width.squeeze().square()).sum() / 3)
    assert result.max_loss == pytest.approx(corner, rel=1e-10)
    assert result.sharpness == pytest.approx(100 * corner, rel=1e-10) and result.base_loss == 0.0
    assert result.losses.shape == (11,)


def test_epsilon_sharpness_in_a_subspace_only_moves_it():
    X = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    model = nn.Linear(3, 1).double()
    y = model(X).detach()
    sub = parameter_subspace(model, params=["bias"])
    result = epsilon_sharpness(model, nn.MSELoss(), [(X, y)], epsilon=0.1, steps=5, subspace=sub)
    box = 0.1 * (abs(float(model.bias.detach())) + 1)
    assert result.max_loss == pytest.approx(box**2, rel=1e-10)


def test_one_dimensional_surface_of_a_bowl_is_a_parabola_through_the_model():
    X = torch.randn(12, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model = nn.Linear(3, 1).double()
    surface = loss_surface(model, nn.MSELoss(), [(X, model(X).detach())], dims=1, span=0.5, grid_points=5, seed=3)
    d = filter_normalized_direction(parameter_subspace(model), seed=3)
    expected = 0.5 * surface.axes[0] ** 2 * float(2 * (X @ d[:3] + d[3]).square().mean())
    assert torch.allclose(surface.loss, expected, atol=1e-12)


def test_two_dimensional_surface_has_the_model_at_its_centre():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    batches = [(torch.randn(16, 4), torch.randint(0, 3, (16,)))]
    surface = loss_surface(model, nn.CrossEntropyLoss(), batches, dims=2, grid_points=3)
    centre = evaluate(model, None, batches)
    assert surface.loss.shape == surface.accuracy.shape == (3, 3)
    assert float(surface.loss[1, 1]) == pytest.approx(centre.loss, rel=1e-6)
    assert float(surface.accuracy[1, 1]) == centre.accuracy


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, b: basin_width(m, nn.MSELoss(), b, threshold=0), "threshold must be a positive number, got 0"),
        (lambda m, b: basin_width(m, nn.MSELoss(), b, mode="percent"), "mode must be 'absolute' or 'relative', got 'percent'"),
        (lambda m, b: basin_width(m, nn.MSELoss(), b, grid_points=1), "grid_points must be an int >= 2"),
        (lambda m, b: basin_width(m, nn.MSELoss(), []), "batches is empty"),
        (lambda m, b: epsilon_sharpness(m, nn.MSELoss(), b, epsilon=-1.0), "epsilon must be a positive number, got -1.0"),
        (lambda m, b: loss_surface(m, nn.MSELoss(), b, dims=3), "dims must be 1 \\(a line\\) or 2 \\(a square grid\\), got 3"),
    ],
)
def test_bad_input_gives_a_clear_error(call, message):
    model, batches, _ = bowl()
    with pytest.raises(ValueError, match=message):
        call(model, batches)


def _naive_basin_width(model, loss_fn, batches, subspace, *, threshold, num_directions, max_distance, grid_points,
                       bisection_steps, seed):
    """basin_width the plain way: every distance lifts t d and adds it to fresh copies (the losses probed, the widths)."""
    from landscape._objective import Objective

    objective = Objective(model, loss_fn, batches, moving=subspace.moving)
    base, losses = objective.loss(), []

    def loss_at(ray, t):
        losses.append(objective.loss(objective.at(subspace.lift(t * ray))))
        return losses[-1]

    generator = torch.Generator().manual_seed(seed)
    grid = torch.linspace(0.0, max_distance, grid_points).tolist()
    widths = torch.full((num_directions, 2), max_distance, dtype=torch.float64)
    for j in range(num_directions):
        direction = _filter_normalized_direction(subspace, generator)
        for side, sign in enumerate((1.0, -1.0)):
            inside = 0.0
            for t in grid[1:]:
                if loss_at(sign * direction, t) - base >= threshold:
                    outside = t
                    for _ in range(bisection_steps):
                        middle = 0.5 * (inside + outside)
                        inside, outside = (inside, middle) if loss_at(sign * direction, middle) - base >= threshold else (middle, outside)
                    widths[j, side] = 0.5 * (inside + outside)
                    break
                inside = t
    return widths, losses


@pytest.mark.parametrize("restriction", ["all", "masks", "linear_map"])
def test_basin_width_probes_the_same_losses_as_a_naive_reference(monkeypatch, restriction):
    """float32, every loss bit for bit: the lifted ray and in-place buffers change nothing but the time."""
    import landscape.basin
    from landscape._objective import Objective

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(24, 3))
    batches = [(torch.randn(16, 1, 8), torch.randint(0, 3, (16,))) for _ in range(2)]
    subspace = {
        "all": lambda: parameter_subspace(model),
        "masks": lambda: parameter_subspace(model, masks={"3.weight": torch.rand(3, 24) > 0.5, "0.weight": torch.rand(4, 1, 3) > 0.3}),
        # a map that copies coordinates into two parameters (as an embedding does)
        "linear_map": lambda: parameter_subspace(model, linear_map=lambda c: {"0.weight": c["k"], "3.weight": c["w"].repeat(1, 2)},
                                                 coordinates={"k": model[0].weight.detach(), "w": model[3].weight.detach()[:, :12]}),
    }[restriction]()
    probed = []

    class Recording(Objective):
        def loss(self, moving=None):
            probed.append(super().loss(moving))
            return probed[-1]

    monkeypatch.setattr(landscape.basin, "Objective", Recording)
    options = dict(threshold=0.02, num_directions=2, max_distance=1.0, grid_points=6, bisection_steps=6, seed=3)
    result = basin_width(model, nn.CrossEntropyLoss(), batches, subspace=subspace, **options)
    widths, losses = _naive_basin_width(model, nn.CrossEntropyLoss(), batches, subspace, **options)
    assert not result.censored.all()  # the rays cross the threshold: bisections ran
    assert probed[1:] == losses and len(losses) > 20
    assert torch.equal(result.widths, widths)
