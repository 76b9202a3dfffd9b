"""The import graph is one-way: config -> models and gates -> training loop -> freezer ->
ticket -> exporters and runtime, with no cycle, imports inside functions included."""

import ast
from pathlib import Path

from tests.helpers import ROOT

PACKAGES = {"sltc": "sltc", "exporters": "sltc.exporters", "runtime": "sltc.runtime"}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).glob("*.py"):
            out[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            # `from pkg import mod` imports the module; `from pkg import name`, the package
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    assert "sltc.runtime.engines" in graph and "sltc.exporters.onnx" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_runtime_imports_nothing_above_the_ticket():
    modules = _modules()
    above = {"sltc.discover", "sltc.rebuild", "sltc.models", "sltc.layers", "sltc.gates",
             "sltc.freeze", "sltc.evaluate", "sltc.checkpoint", "sltc.exporters"}
    for name, path in modules.items():
        if name.startswith("sltc.runtime"):
            assert not _imports(name, path, set(modules)) & above, name


def test_importing_the_runtime_loads_no_ticket_config_or_torch():
    """The runtime reads the named records (sltc.records), not sltc.ticket; importing it and
    every module of it loads neither sltc.ticket nor pydantic, yaml or torch."""
    import subprocess
    import sys

    code = ("import importlib, pkgutil, sys\n"
            "import sltc.runtime\n"
            "for m in pkgutil.iter_modules(sltc.runtime.__path__):\n"
            "    importlib.import_module('sltc.runtime.' + m.name)\n"
            "print(' '.join(sorted(k for k in ('sltc.ticket', 'sltc.config', 'pydantic', 'yaml',"
            " 'torch') if k in sys.modules)) + '|' + str('sltc.records' in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.strip()
    assert out == "|True", out

