"""The string's default step needs no tuning: ``lr="auto"`` is 1 / lambda_max of the endpoints, and with
default flags the string between a relax pair (Adam-trained CNN, its eFCN trained on) is never above the line."""

from __future__ import annotations

import copy

import h5py
import pytest
import torch
from torch import nn

import embeddings
from landscape import StringConfig, elastic_string
from landscape._string_step import AUTO_LR_SCALE
from results import save_checkpoint
from runners._engine import TrainConfig, load_data, train
from runners.interpolate import main

# L(w) = (w_1^2 + 4 w_2^2) / 2 + ... : MSE of a linear map of X against zeros, Hessian 2 X^T X / n = diag(1, 4).
X = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
QUADRATIC = [(X, torch.zeros(2, 1, dtype=torch.float64))]


def _ends() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    return {"weight": torch.tensor([[-1.0, 1.0]], dtype=torch.float64)}, {"weight": torch.tensor([[1.0, 1.0]], dtype=torch.float64)}


@pytest.mark.parametrize(("spring", "forces", "extra"), [("implicit", "elastic", 0.0), ("explicit", "elastic", 4.0), ("implicit", "neb", 4.0)])
def test_auto_step_is_the_scale_over_the_largest_eigenvalue_of_a_known_hessian(spring, forces, extra):
    a, b = _ends()
    stiffness = 0.5
    config = StringConfig(num_points=3, stiffness=stiffness, steps=2, spring=spring, forces=forces, batching="loop")
    result = elastic_string(nn.Linear(2, 1, bias=False).double(), nn.MSELoss(), QUADRATIC, params_a=a, params_b=b, config=config)
    assert result.lambda_max == pytest.approx((4.0, 4.0), rel=1e-9)
    # An explicit spring (or NEB's) adds k tridiag(-1, 2, -1) to the Hessian of what the optimiser descends: up to 4k.
    assert result.lr == pytest.approx(AUTO_LR_SCALE / (4.0 + extra * stiffness), rel=1e-9)


def test_a_given_step_is_used_as_is_and_adam_needs_one():
    a, b = _ends()
    result = elastic_string(nn.Linear(2, 1, bias=False).double(), nn.MSELoss(), QUADRATIC, params_a=a, params_b=b,
                            config=StringConfig(num_points=3, steps=1, lr=0.3))
    assert result.lr == 0.3 and result.lambda_max is None
    with pytest.raises(ValueError, match=r"lr='auto' sets an SGD step .* with optimizer='adam' give lr a number"):
        StringConfig(optimizer="adam")


@pytest.fixture(scope="module")
def relax_pair(tmp_path_factory):
    """The default relax protocol in small: a CNN trained with Adam (lr 1e-3, batch 100), its snapshot at t_w
    embedded into eFCN space and trained on; the pair is (final CNN, final eFCN)."""
    folder = tmp_path_factory.mktemp("pair")
    data = load_data("mnist1d", n_train=1000, n_test=200)
    torch.manual_seed(0)
    cnn = embeddings.build_model("vanilla1d", channels=16)
    train(cnn, data, config=TrainConfig(epochs=4, batch_size=100), seed=0)
    efcn = embeddings.to_efcn(copy.deepcopy(cnn))
    train(cnn, data, config=TrainConfig(epochs=16, batch_size=100), seed=1)
    train(efcn, data, config=TrainConfig(epochs=16, batch_size=100), seed=2)
    return save_checkpoint(folder / "cnn.pt", cnn), save_checkpoint(folder / "efcn.pt", efcn)


@pytest.mark.slow
def test_with_default_flags_the_string_is_never_above_the_linear_path(relax_pair, tmp_path):
    out = tmp_path / "paths.h5"
    cnn, efcn = relax_pair
    argv = ["--ckpt-a", str(cnn), "--ckpt-b", str(efcn), "--out", str(out), "--data", "mnist1d", "--n-train", "1000", "--n-test", "200",
            "--methods", "linear,string", "--quiet"]
    assert main(argv) == 0
    with h5py.File(out, "r") as store:
        group = store["interpolation/cnn__efcn"]
        linear, string = dict(group["linear"].attrs), dict(group["string"].attrs)
    # The paper's fixed lr 0.1 gave 0.51 against 0.13 on this pair; the curvature's step relaxes the string instead.
    assert string["barrier"] <= linear["barrier"]
    assert string["lr_rule"] == "auto" and not string["loss_rose"]
    assert string["lr"] == pytest.approx(AUTO_LR_SCALE / max(string["lambda_max_a"], string["lambda_max_b"]))
