"""The package's layout holds: no import cycles among genreg's modules, no module that holds two jobs
(over 400 lines), and a command line that starts without importing torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import genreg

PACKAGE = Path(genreg.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported_at_load(path: Path) -> set[str]:
    """The genreg modules a module imports when it is loaded (imports inside functions come later), with the
    packages above each, whose ``__init__`` runs first (but for the module's own packages, loaded already)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in MODULES}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("genreg"):
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & set(MODULES)
            found |= submodules or {node.module}
    me = module_name(path)
    packages = {name.rsplit(".", depth)[0] for name in found for depth in range(1, name.count(".") + 1)}
    own = {me.rsplit(".", depth)[0] for depth in range(me.count(".") + 1)}
    return (found | packages) & set(MODULES) - own


def test_no_module_imports_itself_back_through_others() -> None:
    graph = {name: imported_at_load(path) for name, path in MODULES.items()}
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        assert state.get(name) != "open", "import cycle: " + " -> ".join([*trail, name])
        state[name] = "open"
        for other in sorted(graph.get(name, ())):
            visit(other, [*trail, name])
        state[name] = "done"

    for name in sorted(graph):
        visit(name, [])


def test_no_module_is_over_400_lines() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: size for name, size in sizes.items() if size > 400} == {}


@pytest.mark.slow
def test_the_command_line_starts_without_torch() -> None:
    probe = "import sys, genreg.cli; sys.exit('torch' in sys.modules or 'genreg.model.generative' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0
