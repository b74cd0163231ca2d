"""The C++ layout rules (docs/architecture.md, "The C++ core"): ISA code only in the translation units that
CMakeLists.txt compiles with ISA flags, only public headers installed (and each compiles on its
own), and no citations of notes outside the repository."""

import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
CMAKE = open(os.path.join(ROOT, "CMakeLists.txt"), encoding="utf-8").read()
CXX = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")


def _sources(exts=(".cc", ".h")):
    for d, _, files in os.walk(CSRC):
        for f in files:
            if f.endswith(exts):
                p = os.path.join(d, f)
                yield os.path.relpath(p, ROOT), open(p, encoding="utf-8").read()


def _cmake_list(name):
    m = re.search(r"set\(" + name + r"\s+(.*?)\)", CMAKE, re.S)
    assert m, name
    return [t for t in re.sub(r"#[^\n]*", "", m.group(1)).split() if t]


def test_no_isa_pragmas_or_target_attributes():
    for path, text in _sources():
        assert "#pragma GCC target" not in text and "__attribute__((target" not in text, path


def test_avx_intrinsics_only_in_isa_translation_units():
    isa_tus = set(_cmake_list("QREF_AVX2_SOURCES") + _cmake_list("QREF_AVX512_SOURCES") +
                  _cmake_list("QREF_VNNI_SOURCES"))
    for path, text in _sources((".cc",)):
        if re.search(r"\b_mm(256|512)_\w+\(", re.sub(r"//[^\n]*", "", text)):
            assert path in isa_tus, f"{path} uses AVX intrinsics but is not compiled with ISA flags"


def test_public_headers_are_self_contained_and_closed():
    public = _cmake_list("QREF_PUBLIC_HEADERS")
    for h in public:
        text = open(os.path.join(CSRC, "qref", h), encoding="utf-8").read()
        for inc in re.findall(r'#include "qref/([^"]+)"', text):
            assert inc in public, f"public qref/{h} includes private qref/{inc}"
        assert "-inl.h" not in h
    if CXX is None:
        pytest.skip("no C++ compiler")
    for h in public:
        r = subprocess.run([CXX, "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-I", CSRC, "-x", "c++", "-"],
                           input=f'#include "qref/{h}"\n#include "qref/{h}"\nint main() {{ return 0; }}\n',
                           capture_output=True, text=True)
        assert r.returncode == 0, f"qref/{h} does not compile on its own:\n{r.stderr}"


def test_no_citations_of_notes_outside_the_repository():
    pat = re.compile(r"SPEC\.md|STYLE\.md|API\.md|RUNTIMES\.md|\bissue \d+|\[sources: |\[bindings: ")
    roots = ["csrc", "cmake", "scripts", "examples"]
    files = [os.path.join(ROOT, "CMakeLists.txt")]
    for r in roots:
        for d, _, fs in os.walk(os.path.join(ROOT, r)):
            files += [os.path.join(d, f) for f in fs]
    for p in files:
        try:
            text = open(p, encoding="utf-8").read()
        except (UnicodeDecodeError, OSError):
            continue
        m = pat.search(text)
        assert m is None, f"{os.path.relpath(p, ROOT)} cites {m.group(0)!r}"
