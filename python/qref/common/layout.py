"""Array layouts: integer views of quantized tensors, channels-last conversions, output wrapping.

numpy arrays and quint8/qint8 torch tensors in, numpy arrays (or a quint8 tensor on the way out)
back; torch is imported only where a torch tensor is handled.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .. import _core


class _StorageView:
    """numpy's array interface over a CPU quantized tensor's bytes (read-only); holds the
    tensor alive."""

    def __init__(self, t: Any, typestr: str, shape: tuple, strides: tuple) -> None:
        self._t = t
        self.__array_interface__ = dict(shape=shape, typestr=typestr, data=(t.data_ptr(), True), strides=strides,
                                        version=3)


def _int_view(t: Any, perm: Optional[tuple] = None) -> np.ndarray:
    """The integer values of a CPU quint8/qint8 tensor (dimensions permuted by `perm`) without
    a copy (``int_repr()`` copies the whole tensor, through a slow path for channels_last inputs
    and per-channel weights)."""
    perm = tuple(range(t.dim())) if perm is None else perm
    if t.device.type != "cpu" or t.numel() == 0:
        return t.int_repr().permute(*perm).numpy()
    import torch

    typestr = "|u1" if t.dtype == torch.quint8 else "|i1"
    st = t.stride()
    return np.asarray(_StorageView(t, typestr, tuple(t.shape[i] for i in perm), tuple(st[i] for i in perm)))


def _quint8_nhwc_view(x: Any) -> np.ndarray:
    """(N, H, W, C) uint8 values of a quint8 (N, C, H, W) tensor, no copy: a channels_last
    tensor -- what fbgemm's quantized ops return -- gives a contiguous view."""
    return _int_view(x, (0, 2, 3, 1))


def _channels_last(a: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> C-contiguous (N, H, W, C) (also OIHW -> OHWI)."""
    if a.dtype in (np.uint8, np.int8) and a.ndim == 4 and a.flags.c_contiguous:
        return _core.channels_transpose(a, True)  # ~10x numpy's transpose
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def _channels_first(a: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> C-contiguous (N, C, H, W)."""
    if a.dtype in (np.uint8, np.int8) and a.ndim == 4 and a.flags.c_contiguous:
        return _core.channels_transpose(a, False)
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def _wrap_output(out_nhwc: np.ndarray, as_torch: bool, scale: float, zero_point: int) -> Any:
    if as_torch:
        import torch

        t = torch.from_numpy(out_nhwc).permute(0, 3, 1, 2)  # NCHW view, channels_last strides
        return torch._make_per_tensor_quantized_tensor(t, scale, zero_point)
    return _channels_first(out_nhwc)


def _wrap_quint8(out: np.ndarray, as_torch: bool, scale: float, zero_point: int) -> Any:
    """The uint8 output as the caller's kind: itself, or a quint8 tensor of its (contiguous) layout."""
    if not as_torch:
        return out
    import torch

    return torch._make_per_tensor_quantized_tensor(torch.from_numpy(np.ascontiguousarray(out)), scale, zero_point)
