"""Where qref's C++ headers and CMake package config live (for kernel authors).

    g++ -std=c++17 -I"$(python -m qref._paths --include)" my_test.cc
    cmake -Dqref_DIR="$(python -m qref._paths --cmake-dir)" ..     # then find_package(qref)

A regular (wheel) install puts the headers in ``qref/include/qref`` and the
package config in ``qref/cmake`` next to this file (CMakeLists.txt install()).
An editable install keeps the Python sources in the repository and only the
compiled module (plus a copy of the headers taken at build time) in
site-packages; there the repository's own ``csrc/`` and ``cmake/`` are used,
because they are always current (the site-packages copy is stale until the
next rebuild).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

_HERE = os.path.dirname(os.path.abspath(__file__))
_MARKER = os.path.join("qref", "requant.h")


def _candidates_include() -> list[str]:
    cands = [os.path.join(_HERE, "include")]  # wheel install
    src = os.path.normpath(os.path.join(_HERE, "..", "..", "csrc"))  # editable: the repository
    cands.append(src)
    try:  # editable: the copy installed beside the compiled module
        from . import _core

        cands.append(os.path.join(os.path.dirname(os.path.abspath(_core.__file__)), "include"))
    except ImportError:  # pragma: no cover - headers are usable without the extension
        pass
    return cands


def get_include() -> str:
    """The directory to put on the include path: ``#include "qref/reference.h"`` then works.

    Raises FileNotFoundError (listing the places searched) if no headers are found."""
    cands = _candidates_include()
    for d in cands:
        if os.path.isfile(os.path.join(d, _MARKER)):
            return d
    raise FileNotFoundError(f"qref headers not found (looked for {_MARKER} under: {', '.join(cands)})")


def get_cmake_dir() -> str:
    """The directory holding ``qrefConfig.cmake``: pass it as ``-Dqref_DIR=...`` (or add it to
    ``CMAKE_PREFIX_PATH``) and ``find_package(qref)`` gives the target ``qref::headers``."""
    cands = [os.path.join(_HERE, "cmake"), os.path.normpath(os.path.join(_HERE, "..", "..", "cmake"))]
    for d in cands:
        if os.path.isfile(os.path.join(d, "qrefConfig.cmake")):
            return d
    raise FileNotFoundError(f"qrefConfig.cmake not found (looked in: {', '.join(cands)})")


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m qref._paths",
                                description="Print where qref's C++ headers / CMake config are.")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--include", action="store_true", help="the include directory (qref.get_include())")
    g.add_argument("--cmake-dir", action="store_true", help="the CMake package dir (qref.get_cmake_dir())")
    a = p.parse_args(argv)
    print(get_include() if a.include else get_cmake_dir())
    return 0


if __name__ == "__main__":
    sys.exit(main())
