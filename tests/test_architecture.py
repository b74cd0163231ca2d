"""The package's import structure (docs/architecture.md): the module graph of python/qref has no
cycle, and imports are made at module level except those of the optional heavy dependencies.

The layer order itself is pyproject.toml's import-linter contract (``lint-imports``, run by .ci/run);
this test needs nothing beyond the standard library, so it also runs where import-linter is absent.
"""

from __future__ import annotations

import ast
import os

import pytest

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python", "qref")
# Imported inside functions on purpose: optional (torch, matplotlib, tqdm) or, in _paths.py, the
# compiled core, without which the C++ headers are still usable.
LAZY_OK = {"torch", "matplotlib", "tqdm", "ray", "onnx", "onnxruntime", "torchao"}
LAZY_OK_IN = {"qref._paths": {"qref._core"}}


def _modules() -> dict:
    """module name -> (path, is_package) for every .py file of python/qref."""
    mods = {}
    for dirpath, _dirs, files in os.walk(PKG):
        for f in files:
            if not f.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), os.path.dirname(PKG))[:-3].split(os.sep)
            is_pkg = rel[-1] == "__init__"
            name = ".".join(rel[:-1] if is_pkg else rel)
            mods[name] = (os.path.join(dirpath, f), is_pkg)
    return mods


MODULES = _modules()


def _imports(name: str) -> list:
    """(target module, lineno, at module level) of every import in module `name`; `from X import a`
    names X.a where that is a module of the package (or the compiled core), else X."""
    path, is_pkg = MODULES[name]
    tree = ast.parse(open(path).read(), path)
    package = name if is_pkg else name.rpartition(".")[0]
    out = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for a in child.names:
                    out.append((a.name, child.lineno, top))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - (child.level - 1)]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                for a in child.names:
                    sub = f"{mod}.{a.name}"
                    out.append((sub if sub in MODULES or sub == "qref._core" else mod, child.lineno, top))
            visit(child, inner)

    visit(tree, True)
    return out


def _graph() -> dict:
    return {m: sorted({t for t, _, _ in _imports(m) if t in MODULES and t != m}) for m in MODULES}


def test_the_package_is_found():
    assert "qref" in MODULES and "qref.layers.conv2d" in MODULES and "qref.engines.fbgemm.conv2d" in MODULES


def test_no_import_cycles():
    graph = _graph()
    state: dict = {}
    stack: list = []
    cycles = []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in graph[m]:
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                dfs(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            dfs(m)
    assert not cycles, "import cycles in python/qref:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_nothing_inside_imports_the_package_root():
    """The root (qref/__init__.py) re-exports everything, so a module importing it (other than the
    compiled core, `from .. import _core`) would close a cycle through it."""
    bad = [f"{m}:{line} imports qref" for m in MODULES if m != "qref" for t, line, _ in _imports(m) if t == "qref"]
    assert not bad, "\n".join(bad)


def test_imports_at_module_level():
    """Lazy imports only for the optional heavy dependencies (torch, matplotlib, tqdm)."""
    bad = []
    for m in MODULES:
        for t, line, top in _imports(m):
            if top or t.split(".")[0] in LAZY_OK or t in LAZY_OK_IN.get(m, ()):
                continue
            bad.append(f"{MODULES[m][0]}:{line}: {t} imported inside a function")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("layer,above", [
    ("qref.common", ("qref.routing", "qref.engines", "qref.layers", "qref.bridge")),
    ("qref.engines", ("qref.layers", "qref.bridge")),
    ("qref.layers", ("qref.bridge",)),
])
def test_lower_layers_do_not_import_upper_ones(layer, above):
    """The core of pyproject.toml's layer contract, checked here without import-linter."""
    bad = [f"{m} -> {t}" for m in MODULES if m == layer or m.startswith(layer + ".")
           for t, _, _ in _imports(m) if any(t == a or t.startswith(a + ".") for a in above)]
    assert not bad, "\n".join(bad)


def test_engines_do_not_import_each_other():
    engines = sorted({m.split(".")[2] for m in MODULES if m.startswith("qref.engines.") and m.count(".") >= 2})
    assert {"fbgemm", "onednn"} <= set(engines)
    bad = [f"{m} -> {t}" for m in MODULES if m.startswith("qref.engines.") and m.count(".") >= 2
           for t, _, _ in _imports(m)
           if t.startswith("qref.engines.") and t.count(".") >= 2 and t.split(".")[2] != m.split(".")[2]]
    assert not bad, "\n".join(bad)
