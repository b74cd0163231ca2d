"""Which oneDNN kernel torch runs for a module and input shape, read from oneDNN's verbose log.

oneDNN picks its implementation per shape, partly by performance heuristics (e.g. its brgemm conv
declines some small grouped convs with one input channel per group, which then run its gemm conv,
whose requantization multiplies by one combined scale). Where qref's shape rules cannot be sure,
``qref.check`` asks torch: ``torch.backends.mkldnn.verbose`` turns oneDNN's verbose mode on at run
time, and oneDNN prints one ``onednn_verbose,...,exec,cpu,<primitive>,<implementation>,...`` line per
execution to the process's C stdout, captured here through a temporary file descriptor.

oneDNN has no other destination for that log (no file, no callback): it prints with C stdio. qref
points the C library's ``stdout`` FILE* at a temporary file while the module runs, so fd 1 (Python's
prints, other threads' output) is never redirected; where that variable cannot be reached it falls
back to redirecting fd 1 and writes whatever else reached it back. Either way the capture is
process-global state: one lock serializes every capture and the verbose switch, and callers capture
only where oneDNN may run.
"""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
import threading
from dataclasses import replace
from typing import Any, Callable, Optional

import numpy as np

from ..common.onednn_isa import resolve_class

_CAPTURE_LOCK = threading.RLock()


def _new_lock_in_child() -> None:
    # a forked child has no thread that could release a lock held across the fork
    global _CAPTURE_LOCK
    _CAPTURE_LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


def onednn_lock() -> Any:
    """The capture lock (re-entrant), for code that runs torch's oneDNN kernels itself (the engine
    probe, qref.check's model run): while it holds the lock, no capture of another thread is on,
    so its oneDNN log neither leaks onto stdout nor lands in another thread's capture."""
    return _CAPTURE_LOCK


def _c_stdout() -> Optional[Any]:
    """The C library's ``stdout`` (a FILE* variable, as ctypes sees it), or None where it cannot be
    reached (not glibc-like); oneDNN prints its verbose log with C stdio to it."""
    global _C_STDOUT
    if _C_STDOUT is None:
        try:
            libc = ctypes.CDLL(None)
            libc.fopen.restype = ctypes.c_void_p
            libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
            libc.fflush.argtypes = [ctypes.c_void_p]
            libc.fclose.argtypes = [ctypes.c_void_p]
            _C_STDOUT = (libc, ctypes.c_void_p.in_dll(libc, "stdout"))
        except (OSError, ValueError, AttributeError):
            _C_STDOUT = False
    return _C_STDOUT or None


_C_STDOUT: Any = None


def _capture_c_stdout(fn: Callable[[], Any], libc: Any, cstdout: Any) -> str:
    """oneDNN's log while fn() runs, read by pointing the C library's ``stdout`` FILE* at a temporary
    file: fd 1 is never touched, so nothing Python or another thread writes to it is moved or
    reordered."""
    with tempfile.NamedTemporaryFile(mode="w+b", delete=False) as tmp:
        path = tmp.name
    try:
        f = libc.fopen(path.encode(), b"w")
        if not f:
            raise OSError("cannot open a temporary file for oneDNN's log")
        old = cstdout.value
        libc.fflush(old)
        cstdout.value = f
        try:
            fn()
        finally:
            libc.fflush(f)
            cstdout.value = old
            libc.fclose(f)
        with open(path, "rb") as r:
            data = r.read()
    finally:
        os.unlink(path)
    return data.decode(errors="replace")


def _capture_stdout(fn: Callable[[], Any]) -> str:
    """The oneDNN log printed while fn() runs (the caller holds _CAPTURE_LOCK). Through the C
    library's stdout where it can be reached (fd 1 untouched); else through fd 1, writing the lines
    that are not oneDNN's log (another thread's prints) back to it afterwards."""
    c = _c_stdout()
    if c is not None:
        return _capture_c_stdout(fn, *c)
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with tempfile.TemporaryFile(mode="w+b") as f:
            os.dup2(f.fileno(), 1)
            try:
                fn()
            finally:
                try:
                    sys.stdout.flush()
                finally:
                    os.dup2(saved, 1)
            f.seek(0)
            data = f.read()
    finally:
        os.close(saved)
    other = b"".join(line for line in data.splitlines(keepends=True) if not line.startswith(b"onednn_verbose,"))
    if other:
        try:
            os.write(1, other)
        except OSError:
            pass
    return data.decode(errors="replace")


def executed_kernels(fn: Callable[[], Any], primitive: str) -> list:
    """Implementation names of the oneDNN `primitive` ("convolution", "deconvolution") that
    executing fn() ran, in order ([] when oneDNN's verbose mode is unavailable)."""
    import torch

    verbose = getattr(torch.backends, "mkldnn", None)
    if verbose is None or not hasattr(verbose, "verbose"):
        return []

    def run() -> None:
        with verbose.verbose(verbose.VERBOSE_ON):
            fn()

    try:
        with _CAPTURE_LOCK:
            text = _capture_stdout(run)
    except (OSError, RuntimeError):
        return []
    out = []
    for line in text.splitlines():
        f = line.split(",")
        # onednn_verbose,v1,primitive,exec,cpu,<primitive kind>,<implementation>,...
        if len(f) > 6 and f[0] == "onednn_verbose" and f[3] == "exec" and f[5] == primitive:
            out.append(f[6])
    return out


def module_kernel(module: Any, qx: Any) -> Optional[str]:
    """The oneDNN implementation torch runs for this quantized conv or linear module on the quint8
    tensor `qx` (run once more on exactly that input: oneDNN's choice can depend on the shape and
    on the input zero point), or None if it cannot be read."""
    transposed = bool(getattr(module, "transposed", False))
    primitive = "matmul" if hasattr(module, "in_features") else ("deconvolution" if transposed else "convolution")
    ks = executed_kernels(lambda: module(qx), primitive)
    return ks[-1] if ks else None


def x86_engine_kernel(module: Any, qx: Any) -> Optional[str]:
    """The oneDNN implementation torch's x86 engine runs on this host for a quantized Conv2d (or
    ConvReLU2d) module's weights on the quint8 tensor ``qx``, whatever engine packed the module: the
    weights are packed once more under the x86 engine and run (None where that engine runs fbgemm,
    for any other module, or where the log cannot be read). On an AMX CPU oneDNN picks an AMX or an
    avx512_core_vnni build per shape, and their rounding differs: this is how qref knows which."""
    import torch

    if type(module).__name__ not in ("Conv2d", "ConvReLU2d") or not getattr(qx, "is_quantized", False):
        return None
    prev = torch.backends.quantized.engine
    try:
        torch.backends.quantized.engine = "x86"
        packed = torch.ops.quantized.conv2d_prepack(module.weight(), module.bias(), list(module.stride),
                                                    list(module.padding), list(module.dilation), module.groups)
        op = torch.ops.quantized.conv2d_relu if "ReLU" in type(module).__name__ else torch.ops.quantized.conv2d
        ks = executed_kernels(lambda: op(qx, packed, float(module.scale), int(module.zero_point)), "convolution")
    except (RuntimeError, AttributeError, TypeError):
        return None
    finally:
        torch.backends.quantized.engine = prev
    return ks[-1] if ks else None


def _host_is_vnni() -> bool:
    """Named kernels are followed on the vnni and amx classes (this process's oneDNN class): on an AMX
    CPU the name also tells an AMX build from the avx512_core_vnni kernels oneDNN runs there."""
    return resolve_class("auto") in ("vnni", "amx")


def params_kernel(params: Any, qx: Any, isa: Any, input_scale: Any = None, input_zero_point: Any = None) -> Optional[str]:
    """The oneDNN kernel name a params object from ``qref.from_torch`` should follow for input qx:
    its own ``onednn_kernel`` if set, else (oneDNN-packed, this host's torch, a quint8 tensor, the
    module still known) the kernel torch's oneDNN runs on that input, read once per input shape and
    quantization and remembered on the params."""
    if params.onednn_kernel or params.engine != "onednn" or isa != "auto" or not _host_is_vnni():
        return params.onednn_kernel or None
    module = getattr(params, "_module", None)
    if module is None:
        return None
    if type(qx).__name__ != "Tensor":
        # a uint8 array with its quantization: the same input as a quint8 tensor (invalid operands:
        # no kernel here; the public function reports them)
        try:
            import torch

            a = np.ascontiguousarray(qx)
            if a.dtype != np.uint8:
                return None
            qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(a), float(input_scale),
                                                         int(input_zero_point))
        except Exception:  # noqa: BLE001
            return None
    if not getattr(qx, "is_quantized", False):
        return None
    try:
        key = (tuple(qx.shape), float(qx.q_scale()), int(qx.q_zero_point()))
    except RuntimeError:
        return None
    cache = params.__dict__.setdefault("_kernels", {})
    if key not in cache:
        if len(cache) >= 64:
            cache.clear()
        try:
            cache[key] = module_kernel(module, qx)
        except Exception:  # noqa: BLE001 - the log is a hint; qref's shape rules still apply without it
            cache[key] = None
    return cache[key]


def _with_onednn_kernel(runner: Any, module: Any, qx: Any) -> Any:
    """A params object that follows the oneDNN kernel torch runs for ``module`` on ``qx`` (read from
    oneDNN's log; qref.check and qref.explain), or ``runner`` itself where none is read."""
    if not _host_is_vnni():
        return runner  # named kernels are followed on the vnni and amx classes; the class rules apply
    try:
        k = module_kernel(module, qx)
    except Exception:  # noqa: BLE001 - the log is a hint; qref's shape rules still apply without it
        k = None
    return replace(runner, onednn_kernel=k) if k else runner
