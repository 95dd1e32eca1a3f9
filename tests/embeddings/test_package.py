"""The embeddings package's structure: its modules depend on each other one way only."""

from __future__ import annotations

import ast
from pathlib import Path

import embeddings

PACKAGE = Path(embeddings.__file__).parent


def _internal_imports(path: Path) -> set[str]:
    """Sibling modules a module imports, including imports hidden inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {alias.name for alias in node.names}
    return found


def test_module_imports_form_no_cycle():
    graph = {path.stem: _internal_imports(path) for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    assert graph["memory"] and graph["embed"], "the import parser found nothing: it no longer reads the package"
    visiting, done = [], set()

    def visit(module: str) -> None:
        if module in visiting:
            raise AssertionError(f"import cycle: {' -> '.join(visiting[visiting.index(module):] + [module])}")
        if module in done or module not in graph:
            return
        visiting.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_layers_are_built_through_their_constructors():
    # Bypassing __init__ leaves a module whose invariants no constructor checked.
    for path in PACKAGE.glob("*.py"):
        assert "__new__" not in path.read_text(), f"{path.name} builds an object with __new__; use a constructor or from_weight"
