"""The prepared-weight cache of the one-shot layer functions (``qref.conv2d(qx, qw, bias, ...)`` in
a loop): the weights transposed, column-summed and packed once, reused while the weight-side
arguments are unchanged, and never reused after they change.

An entry is found by the identity of the caller's weight-side arrays (weight, bias, and scale or
zero-point arrays), the value of every scalar or sequence argument, and the call's other
arguments (the caller's key). It is used only when every array it was made from

- is still the same live object (a weak reference, so the cache keeps nobody's arrays alive and an
  id reused by a new object never matches), with the same dtype, shape and strides, and
- holds the same bytes as a copy taken when the entry was made (compared in full, ``memcmp``
  speed: ``_core.bytes_equal``), and for a quantized tensor the same quantization parameters.

The content comparison, not torch's version counter, is what makes a stale result impossible:
writes through ``tensor.data``, through a numpy array sharing the tensor's memory
(``torch.from_numpy``) or through a view of a numpy array leave ``tensor._version`` (and any
identity) unchanged (tests/test_prep_cache.py shows each). The version counter is only a shortcut
that rejects a changed torch tensor without reading it.

Bounded: at most ``MAX_ENTRIES`` entries and ``MAX_BYTES`` of kept copies, least recently used
first out; arrays above ``MAX_ENTRY_BYTES`` are not cached (they are packed per call, as before).
One lock guards the table; a prepared conv is only read by a run, so threads share entries.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any, Optional

import numpy as np

from .. import _core
from ..common.layout import _int_view
from ..common.validate import is_torch_tensor

MAX_ENTRIES = 32
MAX_BYTES = 256 << 20
MAX_ENTRY_BYTES = 64 << 20

_SCALARS = (int, float, bool, str)


class _Uncacheable(Exception):
    pass


def _value_key(v: Any) -> Any:
    """A hashable value standing for an immutable-by-value argument (None, a Python or numpy
    scalar, a flat sequence of them); _Uncacheable for anything else."""
    if v is None or type(v) in _SCALARS:
        return (type(v).__name__, v)
    if isinstance(v, np.generic):
        return ("np", v.dtype.str, v.item())
    if type(v) in (list, tuple):
        parts = []
        for e in v:
            if type(e) in _SCALARS:
                parts.append((type(e).__name__, e))
            elif isinstance(e, np.generic):
                parts.append(("np", e.dtype.str, e.item()))
            else:
                raise _Uncacheable
        return (type(v).__name__, tuple(parts))
    raise _Uncacheable


def _is_array(v: Any) -> bool:
    return isinstance(v, np.ndarray) or is_torch_tensor(v)


def _torch_meta(t: Any) -> Optional[tuple]:
    """What a CPU torch tensor's values mean besides their bytes (dtype, shape, strides,
    quantization), or None (not cacheable)."""
    if t.device.type != "cpu" or getattr(t, "is_sparse", False):
        return None
    if t.is_quantized:
        import torch

        qs = t.qscheme()
        if qs in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            qmeta: tuple = (str(qs), float(t.q_scale()), int(t.q_zero_point()))
        elif qs in (torch.per_channel_affine, torch.per_channel_symmetric):
            qmeta = (str(qs), int(t.q_per_channel_axis()), t.q_per_channel_scales().numpy().tobytes(),
                     t.q_per_channel_zero_points().numpy().tobytes())
        else:
            return None
    else:
        qmeta = ()
    return (str(t.dtype), tuple(t.shape), tuple(t.stride()), int(t.storage_offset()), qmeta)


def _torch_values(t: Any) -> Optional[np.ndarray]:
    """A numpy view of a CPU torch tensor's values (the integers of a quantized one), or None."""
    if t.is_quantized:
        return _int_view(t)
    try:
        return t.detach().numpy()
    except (RuntimeError, TypeError):  # e.g. bfloat16, a tensor numpy cannot view
        return None


def _version(t: Any) -> Optional[int]:
    try:
        return int(t._version)
    except RuntimeError:  # an inference tensor keeps no version counter
        return None


def _meta(v: Any) -> Optional[tuple]:
    if isinstance(v, np.ndarray):
        return None if v.dtype.hasobject else (v.dtype.str, v.shape, v.strides)
    return _torch_meta(v)


def _same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.flags.c_contiguous and b.flags.c_contiguous:
        return bool(_core.bytes_equal(a, b))
    return bool(np.array_equal(a, b))


class _Check:
    """What one array argument was when the entry was made."""

    __slots__ = ("ref", "meta", "version", "copy")

    def __init__(self, obj: Any, values: np.ndarray, meta: tuple, on_death: Any) -> None:
        self.ref = weakref.ref(obj, on_death)
        self.meta = meta
        self.version = None if isinstance(obj, np.ndarray) else _version(obj)
        self.copy = np.array(values, copy=True, order="C")

    def holds(self, obj: Any) -> bool:
        if self.ref() is not obj:
            return False
        if isinstance(obj, np.ndarray):
            return obj.dtype.str == self.meta[0] and obj.shape == self.meta[1] and obj.strides == self.meta[2] \
                and _same_bytes(obj, self.copy)
        if _version(obj) != self.version:
            return False  # torch's counter moved: changed, no need to read it
        if _torch_meta(obj) != self.meta:
            return False
        if obj.is_contiguous():
            return bool(_core.bytes_equal_at(obj.data_ptr(), self.copy.nbytes, self.copy))
        values = _torch_values(obj)
        return values is not None and _same_bytes(values, self.copy)


class PrepCache:
    """Prepared convs keyed by (weight-side arguments, the caller's key); see the module doc."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES,
                 max_entry_bytes: int = MAX_ENTRY_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self._table: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._dead: list = []  # keys whose arrays died (weakref callbacks only append: no lock there)

    def key(self, objs: tuple, call_key: tuple) -> Optional[tuple]:
        """The table key of a call, or None when an argument cannot be keyed (then no caching)."""
        parts = []
        try:
            for v in objs:
                parts.append(("id", id(v)) if _is_array(v) else _value_key(v))
        except _Uncacheable:
            return None
        return tuple(parts) + call_key

    def get(self, key: Optional[tuple], objs: tuple) -> Any:
        """The prepared object stored under ``key`` if every array argument in ``objs`` is the
        same object with the same contents as when it was stored, else None."""
        if key is None:
            return None
        with self._lock:
            entry = self._table.get(key)
            if entry is not None:
                self._table.move_to_end(key)
        if entry is None:
            return None
        prep, checks, _ = entry
        for obj, chk in zip(objs, checks):
            if chk is not None and not chk.holds(obj):
                with self._lock:
                    if self._table.get(key) is entry:
                        self._drop(key)
                return None
        return prep

    def put(self, key: Optional[tuple], objs: tuple, prep: Any) -> None:
        """Remember ``prep`` for the current contents of ``objs`` (no-op when not cacheable)."""
        if key is None:
            return
        checks = []
        size = 0
        for v in objs:
            if not _is_array(v):
                checks.append(None)
                continue
            meta = _meta(v)
            values = None if meta is None else (v if isinstance(v, np.ndarray) else _torch_values(v))
            if values is None:
                return
            size += values.nbytes
            if size > self.max_entry_bytes:
                return
            try:
                checks.append(_Check(v, values, meta, lambda _ref, k=key: self._dead.append(k)))
            except TypeError:  # an object without weak references
                return
        with self._lock:
            self._purge()
            if key in self._table:
                self._drop(key)
            self._table[key] = (prep, checks, size)
            self._bytes += size
            while len(self._table) > self.max_entries or self._bytes > self.max_bytes:
                self._drop(next(iter(self._table)))

    def _drop(self, key: tuple) -> None:
        _, _, size = self._table.pop(key)
        self._bytes -= size

    def _purge(self) -> None:
        """Drop the entries whose arrays were freed (their memory goes with them)."""
        while self._dead:
            key = self._dead.pop()
            entry = self._table.get(key)
            if entry is not None and any(c is not None and c.ref() is None for c in entry[1]):
                self._drop(key)

    def clear(self) -> None:
        with self._lock:
            self._table.clear()
            self._dead.clear()
            self._bytes = 0

    def __len__(self) -> int:
        with self._lock:
            self._purge()
            return len(self._table)

    @property
    def nbytes(self) -> int:
        """Bytes of the kept copies (the packed weights come on top, about as many again)."""
        return self._bytes


# The one table of the public layer functions.
ONESHOT = PrepCache()
