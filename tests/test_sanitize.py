"""The C++ core under AddressSanitizer + UndefinedBehaviorSanitizer: runs
scripts/sanitize.sh (a separate sanitized build in /tmp, never the editable install,
and the focused tests against it). Slow: about 3 minutes on 2 cores (build ~2 min)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "sanitize.sh")


@pytest.mark.slow
def test_asan_ubsan_build_and_tests():
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("already running under the sanitizers")
    missing = [t for t in ("gcc", "cmake", "ninja") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    r = subprocess.run(["bash", SCRIPT, "-x"], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    tail = (r.stdout[-6000:] + "\n" + r.stderr[-6000:]).strip()
    assert r.returncode == 0, f"scripts/sanitize.sh failed (rc {r.returncode}):\n{tail}"
    assert "passed" in r.stdout and "libasan" in r.stdout, tail
