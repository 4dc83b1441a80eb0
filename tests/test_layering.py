"""The packages import only in the directions the design allows: jobs <- engine <- agent, jobs <- scheduler,
and the command on top. Third-party imports live where their job is."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parent.parent
PROJECT = {"jobs", "engine", "agent", "scheduler", "rade"}

# package -> what it may import besides the standard library
ALLOWED = {
    "jobs": {"jobs", "yaml", "msgpack"},
    "engine": {"jobs", "engine", "pyroute2", "zstandard"},
    "agent": {"jobs", "engine", "agent", "zmq", "msgpack", "prometheus_client", "yaml"},
    "scheduler": {"jobs", "scheduler", "zmq", "msgpack", "networkx", "prometheus_client", "yaml"},
    "rade": PROJECT | {"zmq", "yaml", "msgpack"},
}


def imported_top_names(path: Path) -> set[str]:
    """Top-level names of every absolute import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def package_files() -> list[tuple[str, Path]]:
    return [(pkg, path) for pkg in sorted(ALLOWED) for path in sorted((TOP / pkg).rglob("*.py"))]


@pytest.mark.parametrize(("package", "path"), package_files(), ids=lambda v: str(v).replace(str(TOP) + "/", ""))
def test_imports_follow_the_package_boundaries(package: str, path: Path) -> None:
    foreign = {
        name
        for name in imported_top_names(path)
        if name not in sys.stdlib_module_names and name != "__future__" and name not in ALLOWED[package]
    }
    assert not foreign, f"{path.relative_to(TOP)} imports {sorted(foreign)}, which {package}/ may not"
