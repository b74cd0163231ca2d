"""Pictures of a check / portability report (matplotlib, an optional extra: ``pip install qref[plot]``).

For every layer that mismatches torch (``qref.check``) or gives different bytes on an AVX2 host
than on an AVX512-VNNI host (``qref.portability``), one row of two panels:
- where: a channel x spatial map (rows = output channels, columns = output positions h*W + w,
  batch summed) of the number of differing elements;
- how much: a histogram of the differences.
A report with nothing differing draws a single panel saying so per layer.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np


def _require_matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install 'qref[plot]' (or pip install matplotlib)") from e
    return plt


def _where_map(diff: np.ndarray) -> np.ndarray:
    """(channels, positions) count of differing elements, batch summed."""
    d = diff != 0
    if d.ndim == 4:  # (N, C, H, W)
        return d.sum(axis=0).reshape(d.shape[1], -1)
    if d.ndim == 2:  # (N, features)
        return d.sum(axis=0)[:, None]
    return d.reshape(d.shape[0] if d.ndim > 1 else 1, -1)


def _binned(m: np.ndarray, max_cols: int = 400) -> tuple:
    """Sum neighbouring positions so a lone differing element stays visible: (map, bin width)."""
    C, P = m.shape
    k = -(-P // max_cols)
    if k <= 1:
        return m, 1
    pad = np.zeros((C, k * (-(-P // k)) - P), m.dtype)
    return np.concatenate([m, pad], axis=1).reshape(C, -1, k).sum(axis=2), k


def plot_layers(path: str, check: Optional[Any] = None, portability: Optional[Any] = None) -> str:
    """Draw the differing layers of ``check`` (qref vs torch) and ``portability`` (AVX2 vs VNNI)
    into one PNG (or any format matplotlib infers from ``path``). Returns ``path``."""
    plt = _require_matplotlib()
    panels = []  # (title, diff array, what)
    if check is not None:
        for r in check.layers:
            if r.diff is not None:
                panels.append((f"{r.name}: qref (isa={check.isa}) vs torch, {r.mismatches}/{r.numel} differ",
                               r.diff, "qref - torch"))
    if portability is not None:
        for r in portability.rows:
            if r.diff is not None:
                panels.append((f"{r.name} ({r.path_avx2}): AVX2 vs VNNI host, {r.differing}/{r.numel} differ"
                               + (f", {r.saturated} saturated acc" if r.saturated else ""), r.diff,
                               "AVX2 - VNNI"))
    if not panels:
        fig, ax = plt.subplots(figsize=(7, 2.5))
        names = []
        if check is not None:
            names += [f"{r.name}: {r.status}" for r in check.layers]
        if portability is not None:
            names += [f"{r.name}: same bytes on AVX2 and VNNI" for r in portability.rows if not r.differing]
        ax.axis("off")
        ax.text(0.01, 0.95, "No differing elements\n" + "\n".join(names), va="top", family="monospace", fontsize=8)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return path
    fig, axes = plt.subplots(len(panels), 2, figsize=(12, 3.0 * len(panels)), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 1]})
    for (title, diff, what), (ax_map, ax_hist) in zip(panels, axes):
        m, k = _binned(_where_map(diff))
        im = ax_map.imshow(m, aspect="auto", interpolation="nearest", cmap="magma_r", vmin=0)
        ax_map.set_title(title, fontsize=9)
        ax_map.set_ylabel("output channel")
        xl = "output position h*W + w" if diff.ndim == 4 else "position"
        ax_map.set_xlabel(xl + (f" (bins of {k})" if k > 1 else ""))
        fig.colorbar(im, ax=ax_map, label="differing (batch sum)")
        v = diff[diff != 0].astype(np.int64)
        lo, hi = int(v.min()), int(v.max())
        bins = np.arange(lo, hi + 2) - 0.5 if hi - lo <= 60 else 60
        ax_hist.hist(v, bins=bins, color="tab:red")
        ax_hist.set_title(f"{what} (uint8 units)", fontsize=9)
        ax_hist.set_xlabel("difference")
        ax_hist.set_ylabel("elements")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
