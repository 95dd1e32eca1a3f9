"""embeddings.import_object: the one resolver of 'package.module:name' behind --model, --data and --loss."""

from __future__ import annotations

import math

import pytest

from embeddings import import_object, resolve_factory
from runners._engine.imports import import_function


def test_it_returns_any_object_a_path_names():
    assert import_object("math:pi") == math.pi
    assert import_object("os.path:join.__name__") == "join"


@pytest.mark.parametrize("path, message", [
    ("no_such_module_xyz:f", r"^cannot import module 'no_such_module_xyz' of 'no_such_module_xyz:f' \(No module named .*PYTHONPATH$"),
    ("math:nothing", r"^module 'math' has no attribute 'nothing'; check the name after ':'$"),
    ("math:", r"^import path 'math:' needs both parts"),
])
def test_model_data_and_loss_paths_fail_with_the_same_line(path, message):
    with pytest.raises(ValueError, match=message) as direct:
        import_object(path)
    with pytest.raises(ValueError) as as_model:
        resolve_factory(path)
    assert str(as_model.value) == str(direct.value)
    if path.endswith(":"):
        return  # --data/--loss refuse a malformed path before resolving it, in their own words
    with pytest.raises(ValueError) as as_loss:
        import_function(path, what="--loss x")
    assert str(as_loss.value) == f"--loss x: {direct.value}" and "\n" not in str(as_loss.value)
