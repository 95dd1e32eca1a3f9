"""The API convention of ``landscape/__init__.py`` holds for every public function, checked on the signatures."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path

import pytest

import landscape
from landscape import StringConfig

PUBLIC = {name: getattr(landscape, name) for name in landscape.__all__}
FUNCTIONS = {name: obj for name, obj in PUBLIC.items() if inspect.isfunction(obj)}

# (model(s), loss_fn, batches) first; every later argument keyword-only.
PROBES = (
    "evaluate", "gradient_cosines", "basin_width", "epsilon_sharpness", "loss_surface",
    "hessian_eigenvalues", "hessian_trace", "hessian_density", "elastic_string",
)
ALGORITHMS = ("lanczos", "hutchinson", "hutch_plus_plus", "slq")


def _parameters(function) -> list[inspect.Parameter]:
    return list(inspect.signature(function).parameters.values())


@pytest.mark.parametrize("name", PROBES)
def test_probes_take_model_loss_fn_batches_then_keywords(name):
    params = _parameters(FUNCTIONS[name])
    assert [p.name for p in params[:3]] == ["model", "loss_fn", "batches"]
    assert all(p.default is inspect.Parameter.empty for p in params[:3]), "loss_fn has no default: pass None for cross-entropy"
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[3:])


def test_paths_take_two_models_in_place_of_one():
    params = _parameters(landscape.interpolate)
    assert [p.name for p in params[:4]] == ["model_a", "model_b", "loss_fn", "batches"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[4:])


@pytest.mark.parametrize("name", ("HessianOperator",))
def test_operators_are_built_like_probes(name):
    params = _parameters(PUBLIC[name].__init__)[1:]
    assert [p.name for p in params[:3]] == ["model", "loss_fn", "batches"]


@pytest.mark.parametrize("name", ALGORITHMS)
def test_algorithms_take_an_operator_then_keywords(name):
    params = _parameters(FUNCTIONS[name])
    assert params[0].name == "operator" and all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:])
    hints = typing.get_type_hints(FUNCTIONS[name])
    assert hints["operator"] == landscape._types.OperatorLike


def test_one_randomness_keyword_and_one_meaning_per_name():
    names = {p.name: function for function in FUNCTIONS.values() for p in _parameters(function)}
    assert "generator" not in names, "randomness is an int seed keyword"
    assert "num_points" not in names and "num_steps" not in names, "grid_points / max_iter, see the convention"
    assert "num_points" in StringConfig.__dataclass_fields__  # the one remaining meaning: points of a string
    seeded = [name for name, function in FUNCTIONS.items() if "seed" in inspect.signature(function).parameters]
    for name in seeded:
        seed = inspect.signature(FUNCTIONS[name]).parameters["seed"]
        assert seed.kind is inspect.Parameter.KEYWORD_ONLY and seed.default == 0, name


def test_budget_keywords():
    for name in ("hutchinson", "hutch_plus_plus", "hessian_trace"):
        assert "num_matvecs" in inspect.signature(FUNCTIONS[name]).parameters, name
    for name in ("lanczos", "hessian_eigenvalues", "slq", "hessian_density"):
        assert "max_iter" in inspect.signature(FUNCTIONS[name]).parameters, name


def test_shared_types_are_defined_once():
    package = Path(landscape.__file__).parent
    for path in package.glob("*.py"):
        if path.name != "_types.py":
            source = path.read_text()
            assert not re.search(r"^(Batches|Params|LossFn)\s*=", source, flags=re.M), f"{path.name} redefines a shared alias"
    assert landscape.Batches is landscape._types.Batches and landscape.Params is landscape._types.Params
