"""Data flows one way: the library packages and their tests never import the runners or benchmarks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("embeddings", "landscape", "results")


def _imported_modules(path: Path) -> set[str]:
    """Absolute modules a file imports, including imports inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("folder", [*LIBRARY, *(f"tests/{package}" for package in LIBRARY)])
def test_library_code_and_tests_do_not_import_runners(folder):
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"no Python files under {folder}: the layout changed, update this test"
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in _imported_modules(path) if m.split(".")[0] == "runners")
        for path in files
    }
    assert not {path: modules for path, modules in offenders.items() if modules}
