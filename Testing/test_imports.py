"""The library's import graph has no cycle (imports inside functions count too)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import SirenCompressLib

ROOT = Path(SirenCompressLib.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The library modules that `path` imports: `from . import x` names module x when it is one."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[:len(base) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found |= {f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target
                      for alias in node.names}
    return {m for m in found if m in modules and m != name}


def test_no_import_cycle():
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {name: imports(path, set(paths)) for name, path in paths.items()}
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                raise AssertionError("import cycle: " + " → ".join(trail[trail.index(other):] + [name, other])
                                     if other in trail else f"import cycle through {name} → {other}")
            if other not in state:
                visit(other, trail + [name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_the_cycle_finder_finds_a_planted_cycle(tmp_path, monkeypatch):
    """The walk itself: a package whose two modules import each other fails."""
    package = tmp_path / "SirenCompressLib"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("def f():\n    from .a import g\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", package)
    try:
        test_no_import_cycle()
    except AssertionError as exc:
        assert "SirenCompressLib.a" in str(exc) and "SirenCompressLib.b" in str(exc)
    else:
        raise AssertionError("the planted cycle was not found")


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT.parent / "benchmarks").glob("*.py")))
def test_a_benchmark_imports_and_parses_its_arguments(script):
    """The scripts under benchmarks/ follow the library's renames: each runs as far as `--help`."""
    env = dict(os.environ, PYTHONPATH=str(ROOT.parent))
    r = subprocess.run([sys.executable, str(ROOT.parent / "benchmarks" / script), "--help"], capture_output=True,
                       text=True, timeout=300, env=env)
    assert r.returncode == 0 and r.stdout.startswith("usage:"), r.stderr
