"""Which qref kernel runs: the kernels compiled in and usable on this CPU, and ``kernel="auto"``
(``QREF_KERNEL`` or the best usable one)."""

from __future__ import annotations

import os
from typing import Any

from .. import _core


def kernels() -> list[str]:
    """The qref kernels compiled in and usable on this CPU, best first."""
    return list(_core.kernels())


def _resolve_kernel(fn: str, kernel: Any) -> str:
    usable = kernels()
    if not isinstance(kernel, str):
        raise TypeError(f"{fn}: kernel={kernel!r} has type {type(kernel).__name__} (must be a string, one of "
                        f"{['auto'] + usable})")
    if kernel == "auto":
        env = os.environ.get("QREF_KERNEL")
        if env:
            if env not in usable:
                raise ValueError(f"{fn}: QREF_KERNEL={env!r} is not a usable kernel (usable: {usable})")
            return env
        return usable[0]
    if kernel not in usable:
        compiled = list(_core.compiled_kernels())
        why = "compiled in but this CPU lacks its instructions" if kernel in compiled else "not a qref kernel"
        raise ValueError(f"{fn}: kernel={kernel!r} is {why} (usable: {['auto'] + usable})")
    return kernel
