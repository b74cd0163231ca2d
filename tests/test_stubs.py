"""python/qref/_core.pyi covers every name of the compiled core, with the parameter names the
bindings declare (each binding names every parameter: keyword arguments work everywhere)."""

import ast
import os
import re

from qref import _core

STUB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python", "qref", "_core.pyi")


def _stub_defs():
    tree = ast.parse(open(STUB, encoding="utf-8").read())
    funcs, classes = {}, set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            funcs.setdefault(node.name, set()).add(tuple(a.arg for a in node.args.args))
        elif isinstance(node, ast.ClassDef):
            classes.add(node.name)
    return funcs, classes


def _core_signatures(fn):
    """Parameter-name tuples of a pybind11 function, from its docstring's signature lines."""
    sigs = set()
    for line in (fn.__doc__ or "").splitlines():
        m = re.match(r"^(?:\d+\. )?" + re.escape(fn.__name__) + r"\((.*)\) -> ", line.strip())
        if m:
            params = [p.split(":")[0].strip() for p in re.split(r",\s*(?![^\[]*\])", m.group(1)) if p.strip()]
            sigs.add(tuple(params))
    return sigs


def test_stub_names_match_the_module():
    funcs, classes = _stub_defs()
    public = {n for n in dir(_core) if not n.startswith("_")}
    assert public == set(funcs) | classes, (
        f"missing from _core.pyi: {sorted(public - set(funcs) - classes)}; "
        f"stale in _core.pyi: {sorted((set(funcs) | classes) - public)}")


def test_stub_parameters_match_the_bindings():
    funcs, _ = _stub_defs()
    for name, stub_sigs in funcs.items():
        core_sigs = _core_signatures(getattr(_core, name))
        assert core_sigs, f"_core.{name}: no signature in its docstring"
        assert stub_sigs == core_sigs, f"_core.{name}: stub {stub_sigs} != binding {core_sigs}"
        for sig in core_sigs:  # py::arg on every parameter: no positional-only arg0, arg1, ...
            assert not any(re.fullmatch(r"arg\d+", p) for p in sig), f"_core.{name} has unnamed parameters {sig}"
