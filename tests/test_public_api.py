"""Every public name and module path the documentation tells users to use still works.

The names are read from the documents themselves (README.md, docs/*.md, examples/, benchmarks/):
``qref.<name>`` in README.md, ``qref.<module>.<name>`` and ``from qref.<module> import ...`` in
every document, ``python -m qref[.<module>]`` commands; ``qref.__all__`` is cross-checked with them.
"""

from __future__ import annotations

import glob
import importlib
import importlib.util
import os
import re

import pytest

import qref

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DOCS = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
CODE = sorted(glob.glob(os.path.join(ROOT, "examples", "**", "*.py"), recursive=True)
              + glob.glob(os.path.join(ROOT, "benchmarks", "*.py")))
IDENT = r"[A-Za-z_][A-Za-z_0-9]*"


def _text(paths) -> str:
    return "\n".join(open(p, encoding="utf-8").read() for p in paths)


def _readme_names() -> list:
    """``qref.<name>`` in README.md, with ``qref.conv_transpose1d/2d/3d`` spelled out."""
    text = open(README, encoding="utf-8").read()
    names = set(re.findall(rf"\bqref\.({IDENT})\b(?!\.{IDENT})", text))
    for stem, first, rest in re.findall(rf"\bqref\.({IDENT}?)(\d+d)((?:/\d+d)+)", text):
        names |= {stem + first} | {stem + s for s in rest.strip("/").split("/")}
    return sorted(names)


def _dotted_paths() -> list:
    """``qref.<module>.<name>`` in every document (README, docs, examples, benchmarks)."""
    text = _text([README] + DOCS + CODE)
    paths = set(re.findall(rf"\bqref\.({IDENT})\.({IDENT})\b", text))
    return sorted(p for p in paths if p[1] not in ("py", "md") and p[0] != "__file__")


def _from_imports() -> list:
    """``from qref[.<module>] import a, b`` in every document."""
    text = _text([README] + DOCS + CODE)
    out = set()
    for mod, names in re.findall(rf"from (qref(?:\.{IDENT})*) import ([A-Za-z_0-9, ]+)", text):
        for n in names.split(","):
            n = n.strip().split(" as ")[0].strip()  # `import cluster as C` names cluster
            if n:
                out.add((mod, n))
    return sorted(out)


def _python_m() -> list:
    text = _text([README] + DOCS + CODE + [os.path.join(ROOT, "examples", "custom_kernel", "CMakeLists.txt")])
    return sorted(set(re.findall(rf"python -m (qref(?:\.{IDENT})*)", text)))


README_NAMES = _readme_names()
DOTTED = _dotted_paths()
FROM_IMPORTS = _from_imports()
PYTHON_M = _python_m()


def test_the_documents_were_read():
    assert {"conv2d", "from_torch", "check", "quantize", "conv_transpose2d"} <= set(README_NAMES)
    assert ("onednn", "plan") in DOTTED and ("check", "register") in DOTTED
    assert ("qref.export", "read_bin") in FROM_IMPORTS
    assert {"qref", "qref.export", "qref.bench"} <= set(PYTHON_M)


@pytest.mark.parametrize("name", README_NAMES)
def test_readme_name(name):
    assert hasattr(qref, name), f"qref.{name} (README.md) is gone"
    assert name in qref.__all__ or name.startswith("_"), f"qref.{name} (README.md) is not in qref.__all__"


@pytest.mark.parametrize("module,name", DOTTED, ids=[".".join(p) for p in DOTTED])
def test_documented_dotted_path(module, name):
    """``qref.<module>.<name>``: an attribute of what ``qref.<module>`` is after ``import qref`` (a
    function such as qref.check carries its registry), or of the module of that name."""
    if module == "_core":
        pytest.skip("qref._core: the compiled core, described in docs/limits.md, not a Python API")
    obj = getattr(qref, module, None)
    if obj is not None and hasattr(obj, name):
        return
    mod = importlib.import_module(f"qref.{module}")
    if not hasattr(mod, name):  # a subpackage, e.g. qref.engines.aten
        importlib.import_module(f"qref.{module}.{name}")


@pytest.mark.parametrize("module,name", FROM_IMPORTS, ids=[f"{m}:{n}" for m, n in FROM_IMPORTS])
def test_documented_from_import(module, name):
    mod = importlib.import_module(module)
    if not hasattr(mod, name):  # `from qref import onednn`: a submodule
        importlib.import_module(f"{module}.{name}")


@pytest.mark.parametrize("module", PYTHON_M)
def test_documented_python_m(module):
    spec = importlib.util.find_spec(module if module != "qref" else "qref.__main__")
    assert spec is not None, f"python -m {module} is documented but not runnable"


def test_all_names_exist_and_are_unique():
    assert len(qref.__all__) == len(set(qref.__all__))
    missing = [n for n in qref.__all__ if not hasattr(qref, n)]
    assert not missing, missing


def test_documented_module_facades_are_modules():
    """The documented module paths that moved into the layers stay importable as modules."""
    for mod in ("qref.onednn", "qref.onednn_nd", "qref.torch_bridge", "qref.bridge_nd", "qref.variants",
                "qref.demo", "qref.export", "qref.bench", "qref.check", "qref._paths"):
        assert importlib.import_module(mod).__name__ == mod
    # docs/onednn.md's snippet: from qref import _core, onednn, onednn_nd; onednn_nd.plan_nd(...)
    from qref import _core, onednn, onednn_nd

    assert callable(onednn_nd.plan_nd) and callable(onednn.prepare_conv2d) and callable(_core.conv2d_run)
