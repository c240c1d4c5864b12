"""The package layering, checked on the source: ``model`` <- ``core`` <- ``jobs`` <- ``backend``, ``worker``.

Every import counts, including the ones inside functions and ``importlib.import_module("...")`` with a
literal name: a lazy import is still a dependency. The UI talks to the API over HTTP; it may use the
settings and the model library's image helpers, nothing of the API, the jobs or the worker.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "core", "jobs", "backend", "worker", "webui")
ALLOWED: dict[str, set[str]] = {
    "model": set(),
    "core": {"model"},
    "jobs": {"model", "core"},
    "backend": {"model", "core", "jobs", "webui"},  # the API mounts the UI
    "worker": {"model", "core", "jobs"},
    "webui": {"model", "core"},
}


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = REPO) -> Iterator[tuple[str, int]]:
    """Absolute names of every module ``path`` imports (relative imports resolved), with line numbers."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join([*base, node.module] if node.module else base)
            yield mod, node.lineno
            for alias in node.names:  # ``from pkg import module``
                yield f"{mod}.{alias.name}", node.lineno
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            yield node.args[0].value, node.lineno


def sources(package: str) -> list[Path]:
    return sorted(p for p in (REPO / package).rglob("*.py") if "migrations" not in p.parts or package == "core")


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_its_lower_layers(package: str) -> None:
    bad = []
    for path in sources(package):
        for name, line in imports_of(path):
            top = name.split(".")[0]
            if top in PACKAGES and top != package and top not in ALLOWED[package]:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert not bad, f"{package} may import only {sorted(ALLOWED[package])}:\n" + "\n".join(bad)


def test_no_import_cycle_between_modules() -> None:
    """No two modules of the project import each other, directly or through others."""
    modules = {module_name(p): p for pkg in PACKAGES for p in sources(pkg)}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for imported, _ in imports_of(path):
            while imported and imported not in modules:  # ``from pkg.mod import func`` -> pkg.mod
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(imported + "."):
                deps.add(imported)  # a module importing its own package's __init__ is not a cycle
        graph[name] = deps

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if dep not in state and (cycle := visit(dep)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_checker_sees_lazy_relative_and_dynamic_imports(tmp_path: Path) -> None:
    """The checker itself: an import inside a function, a relative import and an import_module literal."""
    pkg = tmp_path / "webui" / "components"
    pkg.mkdir(parents=True)
    src = pkg / "m.py"
    src.write_text("import importlib\n\ndef f():\n    import worker.tasks\n    from ..client import get\n"
                   "    importlib.import_module('backend.app')\n")
    names = {n for n, _ in imports_of(src, root=tmp_path)}
    assert {"worker.tasks", "webui.client", "webui.client.get", "backend.app"} <= names
