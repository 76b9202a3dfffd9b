"""The import graph: no cycle, imports inside functions included, and the wings stand on
one another in one direction: the format (what a file is) on nothing of sltc outside it,
the data readers on the format, the runtime on both, the exporters on all three; none of
them on training (the config, gates, layers, models, the discover loop)."""

import ast
from pathlib import Path

from tests.helpers import ROOT

# wing -> the wings its modules may import besides itself
WINGS = {"format": set(), "data": {"format", "shared"}, "shared": {"format"},
         "runtime": {"format", "data", "shared"},
         "exporters": {"format", "data", "shared", "runtime"}}
DATA = {"sltc.data", "sltc.cifar", "sltc.folder", "sltc.splits"}
SHARED = {"sltc.registry", "sltc.figures"}  # small tools
# known arrows still to remove, each with its reason (none today)
EXCEPTIONS: dict[tuple[str, str], str] = {}


def _modules() -> dict[str, Path]:
    out = {}
    for path in (ROOT / "sltc").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def wing_of(module: str) -> str | None:
    """The wing ``module`` belongs to; None for training and the commands on top."""
    for wing in ("format", "runtime", "exporters"):
        if module == f"sltc.{wing}" or module.startswith(f"sltc.{wing}."):
            return wing
    return "data" if module in DATA else "shared" if module in SHARED else None


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
        # a module reading its own package's front (a registry's decorator) is no arrow
        found.update(t for t in targets if t in known and t != name and
                     not name.startswith(t + "."))
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


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def test_the_wings_stand_in_one_direction():
    graph = _graph()
    assert {"sltc.format.ticket", "sltc.format.ops", "sltc.runtime.engines"} <= set(graph)
    broken = []
    for name, targets in sorted(graph.items()):
        wing = wing_of(name)
        if wing is None:
            continue
        for target in sorted(targets):
            allowed = {wing, *WINGS[wing]}
            if wing_of(target) not in allowed and (name, target) not in EXCEPTIONS:
                broken.append(f"{name} -> {target}")
    assert not broken, broken
    for name, target in EXCEPTIONS:
        assert target in graph[name], f"{name} -> {target} is gone: drop its exception"


def test_the_wing_rule_finds_a_wrong_arrow():
    assert wing_of("sltc.format.ops") == "format" and wing_of("sltc.config") is None
    assert wing_of("sltc.runtime") == "runtime" and wing_of("sltc.data") == "data"
    assert None not in WINGS["runtime"] and "runtime" not in WINGS["format"]


def test_importing_the_runtime_loads_no_ticket_config_or_torch():
    """The runtime reads the named records (sltc.format.records), not the ticket module;
    importing it and every module of it loads neither the ticket nor pydantic, yaml or
    torch."""
    import subprocess
    import sys

    code = ("import importlib, pkgutil, sys\n"
            "import sltc.runtime\n"
            "for m in pkgutil.iter_modules(sltc.runtime.__path__):\n"
            "    importlib.import_module('sltc.runtime.' + m.name)\n"
            "print(' '.join(sorted(k for k in ('sltc.format.ticket', 'sltc.config', 'pydantic',"
            " 'yaml', 'torch') if k in sys.modules)) + '|'"
            " + str('sltc.format.records' in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.strip()
    assert out == "|True", out



# where a file's meta or manifest is read by key: its records, and the checkpoint's own metadata
KEY_READERS = {"sltc.format.records", "sltc.format.csrfile", "sltc.checkpoint"}


def _key_reads(path: Path) -> list[str]:
    """``meta["x"]``, ``x.meta.get("x")``, ``manifest["x"]``... in a module's source."""
    def named(node) -> str:
        return node.id if isinstance(node, ast.Name) else \
            node.attr if isinstance(node, ast.Attribute) else ""

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            target, key = node.value, node.slice
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr == "get" and node.args:
            target, key = node.func.value, node.args[0]
        else:
            continue
        if named(target) in ("meta", "manifest") and isinstance(key, ast.Constant) and \
                isinstance(key.value, str):
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_a_files_meta_is_read_through_its_records():
    """A ticket's meta and a CSR manifest are read by key only in their records
    (``TicketMeta``, ``CsrManifest``); everything else reads the records' fields."""
    reads = [hit for name, path in _modules().items() if name not in KEY_READERS
             for hit in _key_reads(path)]
    assert not reads, reads
    assert _key_reads(ROOT / "sltc/format/records.py")  # the finder finds them


MAX_FUNCTION_LINES = 40


def test_no_function_body_is_over_40_lines():
    """Small functions: a body (docstring included; a command's option list is its
    signature, not its body) of at most 40 lines."""
    long = []
    for path in (ROOT / "sltc").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.body[0].lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert not long, long


FORMAT_LIBRARIES = {"numpy", "scipy", "onnx", "safetensors"}


def test_the_format_imports_no_library_beyond_its_own():
    """What a file is needs the standard library, numpy, scipy, onnx and safetensors: never
    torch, pydantic or yaml, not even inside a function."""
    import sys

    found = set()
    for path in (ROOT / "sltc/format").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level:
                found.add(node.module.split(".")[0])
    outside = found - FORMAT_LIBRARIES - set(sys.stdlib_module_names) - {"__future__"}
    assert not outside, outside
    assert "numpy" in found and "onnx" in found
