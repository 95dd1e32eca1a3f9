"""build_model takes an import path "package.module:factory": torchvision constructors, a user's module, one-line errors."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from torch import nn

from embeddings import build_model, factory_accepts, to_efcn

USER_MODULE = """
import torch
from torch import nn


def tiny(width=3, num_classes=4):
    return nn.Sequential(nn.Conv1d(1, width, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(width * 8, num_classes))


def shaped(input_shape=(1, 8), num_classes=4):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0] * input_shape[1], num_classes))


def broken(**kwargs):
    raise RuntimeError("the factory's own bug\\nsecond line of a long message")


def not_a_model():
    return 3


CONSTANT = 7
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_models_mod.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_models_mod"
    sys.modules.pop("my_models_mod", None)


def test_torchvision_constructor_builds_without_weights_and_records_the_shape():
    torch.manual_seed(0)
    model = build_model("torchvision.models:resnet18", num_classes=10, input_shape=(3, 16, 16))
    assert (model.arch, model.arch_kwargs, model.input_shape, model.space) == (
        "torchvision.models:resnet18", {"num_classes": 10, "input_shape": (3, 16, 16)}, (3, 16, 16), "cnn")
    assert model.fc.out_features == 10
    assert model.eval()(torch.zeros(2, 3, 16, 16)).shape == (2, 10)
    # a torchvision model is randomly initialised, never downloaded: two seeds give two models
    torch.manual_seed(1)
    other = build_model("torchvision.models:resnet18", num_classes=10)
    assert not torch.equal(other.conv1.weight, model.conv1.weight)
    assert other.input_shape is None  # neither given nor a default of the factory


def test_user_factory_by_import_path_records_shape_and_embeds(user_module):
    model = build_model(f"{user_module}:tiny", width=2, input_shape=[1, 8])
    assert model.input_shape == (1, 8) and model.arch_kwargs == {"width": 2, "input_shape": [1, 8]}
    x = torch.randn(5, 1, 8)
    # the recorded shape is what to_efcn needs when none is passed
    assert torch.allclose(to_efcn(model)(x), model(x), atol=1e-5)
    # a factory with an input_shape parameter gets it, and its default is recorded when none is given
    assert build_model(f"{user_module}:shaped", input_shape=(2, 3))[1].in_features == 6
    assert build_model(f"{user_module}:shaped").input_shape == (1, 8)


def test_factory_accepts_tells_named_from_var_keyword(user_module):
    assert factory_accepts(f"{user_module}:tiny", "num_classes")
    assert not factory_accepts(f"{user_module}:tiny", "input_shape")
    assert factory_accepts("torchvision.models:resnet18", "num_classes")
    assert not factory_accepts("torchvision.models:resnet18", "num_classes", explicit=True)


@pytest.mark.parametrize("arch, kwargs, message", [
    ("no_such_module_xyz:net", {}, r"cannot import module 'no_such_module_xyz' of 'no_such_module_xyz:net' \(No module named"),
    ("{mod}:missing", {}, r"module '{mod}' has no attribute 'missing'"),
    ("{mod}:CONSTANT", {}, r"'{mod}:CONSTANT' is not callable \(it is of type int\)"),
    ("{mod}:not_a_model", {}, r"'{mod}:not_a_model' returned an object of type int, not an nn.Module"),
    ("{mod}:broken", {}, r"{mod}:broken\(\) raised RuntimeError: the factory's own bug$"),
    ("{mod}:tiny", {"depth": 3}, r"architecture '{mod}:tiny' does not accept arguments \{{'depth': 3\}}"),
    ("torchvision.models:resnet18", {"depth": 3}, r"architecture 'torchvision.models:resnet18' does not accept arguments .*depth"),
    ("{mod}:tiny", {"width": "wide"}, r"architecture '{mod}:tiny' does not accept arguments \{{'width': 'wide'\}}: "),
    (":tiny", {}, r"import path ':tiny' needs both parts"),
    ("resnet18", {}, r"unknown architecture 'resnet18'; expected one of: .*or an import path 'package.module:factory'"),
])
def test_bad_import_paths_fail_in_one_line(user_module, arch, kwargs, message):
    arch = arch.format(mod=user_module)
    with pytest.raises(ValueError, match=message.format(mod=user_module)) as info:
        build_model(arch, **kwargs)
    assert "\n" not in str(info.value)


def test_registry_names_still_forward_input_shape():
    model = build_model("vanilla2d", input_shape=(1, 8, 8), pool=False, channels=4)
    assert isinstance(model, nn.Module) and model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
