"""Elastic string: the paper's limits (k -> inf: linear path, k = 0: free fall), closed-form fixed
points on a quadratic bowl, vmap == loop, NEB and climbing image, trajectory, bad configurations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape.evaluation import evaluate, param_dict
from landscape.string_method import StringConfig, _choose_batching, elastic_string


# L(w) = (w_1^2 + w_2^2) / 2 exactly: a linear map of the identity inputs, MSE against zeros.
BOWL_BATCHES = [(torch.eye(2, dtype=torch.float64), torch.zeros(2, 1, dtype=torch.float64))]


def _bowl() -> nn.Module:
    return nn.Linear(2, 1, bias=False).double()


def _w(*values: float) -> dict[str, torch.Tensor]:
    return {"weight": torch.tensor([values], dtype=torch.float64)}


def _bowl_string(a, b, **config):
    return elastic_string(_bowl(), nn.MSELoss(), BOWL_BATCHES, params_a=a, params_b=b, config=StringConfig(**config))


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
    result = elastic_string(_cnn(0), None, _cnn_batches(), params_a=a, params_b=b, config=StringConfig(num_points=5, stiffness=1e12, steps=6))
    for i, alpha in enumerate(torch.linspace(0, 1, 5).tolist()):
        for name in a:
            torch.testing.assert_close(result.points[name][i], torch.lerp(a[name], b[name], alpha), atol=1e-9, rtol=0)


def test_zero_stiffness_lets_every_point_fall_below_the_linear_path():
    model, batches = _cnn(0), _cnn_batches()
    a, b = param_dict(_cnn(0)), param_dict(_cnn(1))
    result = elastic_string(model, None, batches, params_a=a, params_b=b, config=StringConfig(num_points=5, stiffness=0.0, steps=30, lr=0.2))
    for i, alpha in enumerate([0.25, 0.5, 0.75], start=1):
        linear = evaluate(model, None, batches, params={n: torch.lerp(a[n], b[n], alpha) for n in a}).loss
        fallen = evaluate(model, None, batches, params={n: t[i] for n, t in result.points.items()}).loss
        assert fallen < linear - 0.01


@pytest.mark.parametrize("spring", ["implicit", "explicit"])
def test_both_springs_reach_the_closed_form_fixed_point(spring):
    # Interior point of M=3 between (-1, 1) and (1, 1): w + k (2w - a - b) = 0 gives w = (0, 2k / (1 + 2k)).
    result = _bowl_string(_w(-1.0, 1.0), _w(1.0, 1.0), num_points=3, stiffness=1.0, lr=0.1, steps=400, spring=spring)
    torch.testing.assert_close(result.points["weight"][1], torch.tensor([[0.0, 2 / 3]], dtype=torch.float64), atol=1e-8, rtol=0)


def test_vmap_and_loop_take_the_same_steps():
    a, b = param_dict(_cnn(0)), param_dict(_cnn(1))
    runs = {
        batching: elastic_string(_cnn(0), None, _cnn_batches(), params_a=a, params_b=b, config=StringConfig(num_points=4, steps=5, batching=batching))
        for batching in ("vmap", "loop")
    }
    assert runs["vmap"].batching == "vmap" and runs["loop"].batching == "loop"
    for name in a:
        torch.testing.assert_close(runs["vmap"].points[name], runs["loop"].points[name], atol=1e-10, rtol=0)


def test_auto_batching_is_a_fixed_rule_of_device_layers_and_size():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # only the device type is read: no GPU needed
    # 4096 x 4096 float32 is 64 MiB per point; a meta-device layer has the size without allocating it.
    dense, conv = nn.Linear(4096, 4096, bias=False, device="meta"), _cnn(0)
    big = param_dict(dense)
    assert _choose_batching(dense, big, 3, cpu) == _choose_batching(dense, big, 3, cpu) == "vmap"  # 64 MiB: at the budget
    assert _choose_batching(dense, big, 4, cpu) == "loop"  # 128 MiB stacked: over it
    assert _choose_batching(conv, param_dict(conv), 5, cpu) == "loop"  # convolutions: loop on the CPU
    assert _choose_batching(dense, big, 11, cuda) == _choose_batching(conv, param_dict(conv), 5, cuda) == "vmap"
    # elastic_string follows the rule, whatever the clock says.
    assert _bowl_string(_w(-1.0, 0.0), _w(1.0, 0.0), num_points=3, steps=1).batching == "vmap"
    a, b = param_dict(_cnn(0)), param_dict(_cnn(1))
    runs = [elastic_string(conv, None, _cnn_batches(), params_a=a, params_b=b, config=StringConfig(num_points=4, steps=2))
            for _ in range(2)]
    assert [run.batching for run in runs] == ["loop", "loop"]


def _reference_string(model, a, b, x, y, *, num_points, stiffness, lr, steps, spring):
    """Plain gradient descent of the energy E over flat float64 vectors, written apart from the library:
    explicit: Theta <- Theta - lr grad E (autograd of the whole energy); implicit: a step on the losses,
    then the linear solve (I + lr k A) Theta = Theta' + lr k beta. Returns the interior points and the
    loss of every point before each step."""
    names, shapes = list(a), [a[n].shape for n in a]
    flat_a, flat_b = (torch.cat([p[n].flatten() for n in names]) for p in (a, b))

    def loss(theta):
        params = {n: t.view(s) for n, t, s in zip(names, theta.split([s.numel() for s in shapes]), shapes)}
        return nn.functional.cross_entropy(torch.func.functional_call(model, params, (x,)), y)

    interior = torch.stack([flat_a + t * (flat_b - flat_a) for t in torch.linspace(0, 1, num_points)[1:-1].tolist()])
    count, step = num_points - 2, lr * stiffness
    off = torch.ones(count - 1, dtype=torch.float64)
    laplacian = 2 * torch.eye(count, dtype=torch.float64) - torch.diag(off, 1) - torch.diag(off, -1)
    profiles = []
    for _ in range(steps):
        inner = interior.clone().requires_grad_()
        full = torch.cat([flat_a[None], inner, flat_b[None]])
        losses = torch.stack([loss(p) for p in full])
        profiles.append(losses.detach())
        if spring == "explicit":
            energy = losses[1:-1].sum() + stiffness / 2 * (full[1:] - full[:-1]).pow(2).sum()
            interior = interior - lr * torch.autograd.grad(energy, inner)[0]
        else:
            moved = interior - lr * torch.autograd.grad(losses[1:-1].sum(), inner)[0]
            beta = torch.zeros_like(moved)
            beta[0], beta[-1] = flat_a, flat_b
            interior = torch.linalg.solve(torch.eye(count, dtype=torch.float64) + step * laplacian, moved + step * beta)
    return interior, torch.stack(profiles)


@pytest.mark.parametrize("spring", ["implicit", "explicit"])
@pytest.mark.parametrize("batching", ["vmap", "loop"])
def test_string_steps_match_an_independent_reference(spring, batching):
    model, (x, y) = _cnn(0), (torch.cat(t) for t in zip(*_cnn_batches()))  # one batch: the order plays no part
    a, b = param_dict(_cnn(0)), param_dict(_cnn(1))
    config = StringConfig(num_points=5, stiffness=2.0, lr=0.1, steps=6, spring=spring, record_every=1, batching=batching)
    result = elastic_string(model, None, [(x, y)], params_a=a, params_b=b, config=config)
    interior, profiles = _reference_string(model, a, b, x, y, num_points=5, stiffness=2.0, lr=0.1, steps=6, spring=spring)
    ours = torch.cat([result.points[n][1:-1].flatten(1) for n in a], dim=1)
    torch.testing.assert_close(ours, interior, atol=1e-10, rtol=0)
    torch.testing.assert_close(torch.from_numpy(result.trajectory_loss), profiles, atol=1e-12, rtol=0)


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
    result = elastic_string(_cnn(0), None, _cnn_batches(), params_a=param_dict(_cnn(0)), params_b=param_dict(_cnn(1)), config=StringConfig(epochs=2))
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
