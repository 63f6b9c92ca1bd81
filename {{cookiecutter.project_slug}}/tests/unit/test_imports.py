"""The package's modules import one another without a cycle.

Every import counts, at any depth: inside a function (a lazy import) and under
`if TYPE_CHECKING:` too, since either hides a cycle rather than removing it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import {{ cookiecutter.package_name }} as package

ROOT = Path(package.__file__).resolve().parent
NAME = package.__name__


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((NAME, *parts))


MODULES = {module_name(path): path for path in ROOT.rglob("*.py")}


def imported_by(name: str, path: Path) -> set[str]:
    """The package's modules that `name` imports."""
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            # `from . import x` imports the module x when there is one.
            targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {target for target in targets if target in MODULES}
    found.discard(name)
    return found


def test_the_walk_sees_the_package():
    assert f"{NAME}.openapi" in MODULES
    assert f"{NAME}.errors" in imported_by(f"{NAME}.inputs", MODULES[f"{NAME}.inputs"])


def test_the_import_graph_has_no_cycle():
    graph = {name: imported_by(name, path) for name, path in MODULES.items()}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycle = [*trail[trail.index(name) :], name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_the_description_imports_nothing_of_the_service():
    # openapi.py only reads files: the HTTP layer and the toolkit may all use it.
    assert imported_by(f"{NAME}.openapi", MODULES[f"{NAME}.openapi"]) == set()
