#!/usr/bin/env bash
# Build qref's C++ core with AddressSanitizer + UndefinedBehaviorSanitizer into a
# separate directory (never the shared editable install) and run a focused set of
# tests against that build: the error, boundary, edge and thread tests plus the
# per-path torch comparisons.
#
#   scripts/sanitize.sh                 # build + focused tests
#   scripts/sanitize.sh -k quantize     # extra pytest arguments are passed through
#   QREF_ASAN_DIR=/tmp/x scripts/sanitize.sh
#
# Needs gcc (libasan/libubsan), cmake, ninja, pybind11, numpy, pytest, hypothesis, torch.
# Python itself is not instrumented, so libasan is LD_PRELOADed; leak detection is off
# (CPython and torch keep allocations alive at exit by design). Any ASan report or UBSan
# diagnostic aborts the process (halt_on_error=1), which fails the test that ran it;
# tests that start subprocesses inherit the environment, so those run sanitized too.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${QREF_ASAN_DIR:-/tmp/qref-asan-$(id -u)}"
PY="${PYTHON:-python}"
JOBS="${QREF_ASAN_JOBS:-2}"

echo "== configure + build (QREF_SANITIZE=ON) in $OUT/build"
cmake -S "$ROOT" -B "$OUT/build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DQREF_SANITIZE=ON \
  -DPython_EXECUTABLE="$(command -v "$PY")" \
  -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" > "$OUT.cmake.log" 2>&1 || { tail -40 "$OUT.cmake.log"; exit 1; }
cmake --build "$OUT/build" -j "$JOBS" > "$OUT.build.log" 2>&1 || { tail -60 "$OUT.build.log"; exit 1; }

echo "== stage the Python package with the sanitized _core in $OUT/stage"
rm -rf "$OUT/stage"
mkdir -p "$OUT/stage"
cp -r "$ROOT/python/qref" "$OUT/stage/qref"
rm -f "$OUT"/stage/qref/_core*.so
cp "$OUT"/build/_core*.so "$OUT/stage/qref/"
# An editable install puts an import redirector for `qref` in front of sys.path's
# finders; drop it in this interpreter (and in the subprocesses tests start, which
# inherit PYTHONPATH) so `import qref` finds the staged, sanitized copy.
cat > "$OUT/stage/sitecustomize.py" <<'PYEOF'
import sys
sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("_editable_skbc_qref")]
PYEOF

LIBASAN="$(gcc -print-file-name=libasan.so)"
LIBSTDCXX="$(gcc -print-file-name=libstdc++.so)"
[ -e "$LIBASAN" ] || { echo "libasan not found (gcc -print-file-name=libasan.so)"; exit 1; }
# libstdc++ is preloaded too: CPython is C, so without it ASan's __cxa_throw interceptor
# finds no real __cxa_throw and the first C++ exception (every ValueError from _core)
# aborts with "CHECK failed: asan_interceptors.cpp ... real___cxa_throw".
export LD_PRELOAD="$LIBASAN:$LIBSTDCXX${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_stack_use_after_return=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"
export PYTHONPATH="$OUT/stage${PYTHONPATH:+:$PYTHONPATH}"
# The sanitized kernels are slower; keep the fuzz profiles at their fast defaults.
export QREF_SANITIZED=1

echo "== check that the sanitized build is the one imported"
"$PY" - "$OUT/stage" <<'PYEOF'
import sys, qref, qref._core as c
stage = sys.argv[1]
assert qref.__file__.startswith(stage), qref.__file__
assert c.__file__.startswith(stage), c.__file__
print("qref from", c.__file__, "kernels", qref.kernels())
PYEOF
# The runtime must really be linked in (a plain build would pass everything trivially).
ldd "$OUT"/stage/qref/_core*.so | grep -E "libasan|libubsan"

echo "== focused tests under ASan + UBSan"
cd "$ROOT"
"$PY" -m pytest -q -p no:cacheprovider \
  tests/test_errors.py tests/test_edges.py tests/test_threads.py tests/test_fuzz.py tests/test_vs_torch.py \
  "$@"
