"""Test oracle: oneDNN's Conv3d / deconvolution arithmetic in numpy, the route qref.onednn_nd
computed in Python before it moved into the C++ core (csrc/qref/onednn/conv_nd.cc and
onednn/requant.h). Tests compare the core with it (tests/test_onednn_nd.py) and use it to force
alternative scale orders; qref itself does not import it.

The integer sums are float64 GEMMs per kernel tap (exact: every partial sum is far below 2^53)
reduced modulo 2^32 like oneDNN's int32 registers; the requantization runs in numpy float32, one
IEEE operation at a time in oneDNN's order."""

from __future__ import annotations

from typing import Optional

import numpy as np

from qref import _core
from qref.engines.onednn.nd import _tap_slices

_I32 = 1 << 32


def _wrap32(v: np.ndarray) -> np.ndarray:
    """int64 -> the int32 a wrapping register holds."""
    return ((v + (1 << 31)) % _I32 - (1 << 31)).astype(np.int64)


def integer_sums(x_cl: np.ndarray, w: np.ndarray, groups: int, stride, padding, dilation, out_spatial,
                 transposed: bool):
    """(acc, colsum_real): per output element the sum of a*w over the taps that read a real input
    pixel, and the sum of w over the same taps (int64, exact; not yet wrapped).

    ``x_cl`` uint8 (N, *S, C) channels last; ``w`` int8 (O, Cg, *k) with output channel
    o = g*Og + oc reading input channels g*Cg ... (for a transposed conv pass the weight already
    regrouped to that form, no kernel flip). Returns acc (N, *OS, O), colsum (*OS, O)."""
    N = x_cl.shape[0]
    S = x_cl.shape[1:-1]
    O, Cg = w.shape[:2]
    ks = w.shape[2:]
    Og = O // groups
    acc = np.zeros((N,) + tuple(out_spatial) + (O,), np.float64)
    col = np.zeros(tuple(out_spatial) + (O,), np.int64)
    xf = x_cl.astype(np.float64)
    for tap in np.ndindex(*ks):
        sl = [_tap_slices(k, n, m, s, p, d, transposed)
              for k, n, m, s, p, d in zip(tap, S, out_spatial, stride, padding, dilation)]
        if any(v is None for v in sl):
            continue
        ins = tuple(v[0] for v in sl)
        outs = tuple(v[1] for v in sl)
        wt = w[(slice(None), slice(None)) + tap]  # (O, Cg)
        for g in range(groups):
            wg = wt[g * Og:(g + 1) * Og].astype(np.float64).T  # (Cg, Og)
            xs = xf[(slice(None),) + ins + (slice(g * Cg, (g + 1) * Cg),)]
            acc[(slice(None),) + outs + (slice(g * Og, (g + 1) * Og),)] += xs @ wg
        col[outs + (slice(None),)] += wt.astype(np.int64).sum(axis=1)
    return acc.astype(np.int64), col


def compensated(acc: np.ndarray, col_real: np.ndarray, col_all: np.ndarray, a_zp: int, chain: str) -> np.ndarray:
    """oneDNN's zero-point-compensated accumulator A (float32), per kernel family.

    "int": A = f32(wrap32(acc - a_zp*colsum_real)) (brgemm / jit kernels, vpmulld + vpsubd).
    "float": AMX micro-kernel, A = f32(f32(acc) + f32(f32(-colsum_real) * f32(a_zp))).
    "ref_deconv": ref_deconvolution's float round trip (module doc)."""
    acc32 = _wrap32(acc)
    if chain == "int":
        return _wrap32(acc32 - _wrap32(a_zp * col_real)).astype(np.float32)
    if chain == "float":
        return acc32.astype(np.float32) + (-_wrap32(col_real)).astype(np.float32) * np.float32(a_zp)
    if chain == "ref_deconv":
        comp_all = _wrap32(a_zp * col_all)  # int32 per output channel
        t = acc32.astype(np.float32) - comp_all.astype(np.float32)
        conv_result = _wrap32(np.trunc(t.astype(np.float64)).astype(np.int64))
        outside = _wrap32(a_zp * (col_all - col_real))
        return _wrap32(conv_result + outside).astype(np.float32)
    raise ValueError(chain)


def requantize(A: np.ndarray, input_scale: float, weight_scale: np.ndarray, bias: Optional[np.ndarray],
               output_scale: float, output_zero_point: int, relu: bool, combined: bool,
               divide_dst: bool) -> np.ndarray:
    """oneDNN's requantization of A (float32, channels last) to uint8, in its order
    (csrc/qref/onednn.h): scales, bias, ReLU, 1/dst (or /dst), + zero point, clamp, RNE."""
    ss, inv = _core.onednn_scales(float(input_scale), float(output_scale))
    ss, inv = np.float32(ss), np.float32(inv)
    ws = np.asarray(weight_scale, np.float64).astype(np.float32)
    if combined:
        y = A * (ss * ws)
    else:
        y = (A * ss) * ws
    if bias is not None:
        y = y + np.asarray(bias, np.float32)
    if relu:
        y = np.where(y < 0, np.float32(0), y)
    if divide_dst:
        y = y / (np.float32(1) / np.float32(1.0 / output_scale))
    else:
        y = y * inv
    y = y + np.float32(output_zero_point)
    y = np.where(y > 0, y, np.float32(0))
    y = np.minimum(y, np.float32(255))
    return np.rint(y).astype(np.uint8)
