"""qref.check_dataset: ``qref.check`` over every input of a validation set, per layer.

    report = qref.check_dataset(model, "val_inputs.npz", cluster="ray")
    report.mismatching_inputs        # sorted input indices where some layer differs from qref
    print(report)                    # per layer: inputs mismatching, elements, max |diff|, first input

The model is shipped once per worker; the inputs stream in shards. Each input gets its own
``qref.check(model, *input)`` (one Report per input), and the reports are merged by input index,
so the answer is the same for every ``cluster``. A dataset report is ok only if every input's
report is: a layer qref could not verify, an input whose run raised, or an input that called no
quantized layer makes it not ok, and the report says which and why.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ..common.records import find_named
from . import api as qref
from . import cluster as C

# ----------------------------------------------------------------------------- inputs


def _as_tensor(fn: str, v: Any, where: str) -> Any:
    import torch

    if isinstance(v, torch.Tensor):
        return v
    if isinstance(v, np.ndarray):
        return torch.from_numpy(np.array(v, copy=True))
    raise TypeError(f"{fn}: {where} is a {type(v).__name__} (each input must be a torch tensor or numpy array, or "
                    f"a tuple of them: the model's positional inputs)")


def _as_inputs(fn: str, item: Any, index: int) -> tuple:
    if isinstance(item, (tuple, list)):
        if not item:
            raise ValueError(f"{fn}: input #{index} is an empty {type(item).__name__} (a tuple holds the model's "
                             f"positional inputs)")
        return tuple(_as_tensor(fn, v, f"input #{index}[{j}]") for j, v in enumerate(item))
    return (_as_tensor(fn, item, f"input #{index}"),)


def _split_batch(a: Any) -> Iterator:
    for i in range(a.shape[0]):
        yield a[i:i + 1]


def _load_file(fn: str, path: str) -> Any:
    if path.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    import torch

    try:
        return torch.load(path, weights_only=True)
    except Exception as e:  # noqa: BLE001 - named in the message
        raise ValueError(f"{fn}: inputs file {path!r} cannot be read by torch.load(weights_only=True): "
                         f"{type(e).__name__}: {e}") from None


def open_inputs(fn: str, inputs: Any) -> tuple:
    """(iterator of raw items, count or None, description) for every accepted form of ``inputs``."""
    if isinstance(inputs, (str, os.PathLike)):
        path = os.fspath(inputs)
        if os.path.isdir(path):
            files = sorted(f for f in os.listdir(path) if f.endswith((".npy", ".pt")))
            if not files:
                raise ValueError(f"{fn}: inputs={path!r} is a folder without .npy or .pt files (one input per file, "
                                 f"taken in sorted file-name order)")
            return (FileInput(os.path.abspath(os.path.join(path, f))) for f in files), len(files), f"folder {path}"
        if not os.path.exists(path):
            raise ValueError(f"{fn}: inputs={path!r} does not exist (a .npz file or a folder of .npy / .pt files)")
        if not path.endswith(".npz"):
            raise ValueError(f"{fn}: inputs={path!r} is not a .npz file or a folder of .npy / .pt files")
        z = np.load(path, allow_pickle=False)
        keys = list(z.files)
        if not keys:
            raise ValueError(f"{fn}: inputs={path!r} holds no arrays")
        if len(keys) == 1:  # one stacked array: one input per entry along axis 0 (batch 1 each)
            a = z[keys[0]]
            if a.ndim == 0:
                raise ValueError(f"{fn}: inputs={path!r}: array {keys[0]!r} is a scalar (must be stacked inputs "
                                 f"(B, ...))")
            return _split_batch(a), int(a.shape[0]), f"{path} ({keys[0]}: {a.shape[0]} inputs)"
        return (z[k] for k in keys), len(keys), f"{path} ({len(keys)} arrays)"
    torch = _torch_or_none()
    if isinstance(inputs, np.ndarray) or (torch is not None and isinstance(inputs, torch.Tensor)):
        if inputs.ndim == 0:
            raise ValueError(f"{fn}: inputs is a scalar (must be stacked inputs (B, ...) or a list of inputs)")
        return _split_batch(inputs), int(inputs.shape[0]), f"stacked {type(inputs).__name__} of {inputs.shape[0]}"
    if torch is not None:
        from torch.utils.data import DataLoader, Dataset

        if isinstance(inputs, DataLoader):
            try:
                n: Optional[int] = len(inputs)
            except TypeError:
                n = None
            return iter(inputs), n, "DataLoader (one input per batch)"
        if isinstance(inputs, Dataset) and hasattr(inputs, "__len__"):
            return (inputs[i] for i in range(len(inputs))), len(inputs), f"{type(inputs).__name__}"
    if isinstance(inputs, (bytes, dict)) or not hasattr(inputs, "__iter__"):
        raise TypeError(f"{fn}: inputs has type {type(inputs).__name__} (must be an iterable of input tensors or "
                        f"tuples of them, a torch Dataset or DataLoader, or the path of a .npz file or of a folder "
                        f"of .npy / .pt files)")
    try:
        n = len(inputs)
    except TypeError:
        n = None
    return iter(inputs), n, type(inputs).__name__


def _torch_or_none() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


# ----------------------------------------------------------------------------- one shard


class FileInput(str):
    """An input file of a folder: read by the worker that checks it (a cluster needs the folder on
    a file system its nodes share), so the driver streams names, not tensors."""


def _check_one(model: Any, isa: str, index: int, inputs: Any) -> dict:
    if isinstance(inputs, FileInput):
        try:
            inputs = _as_inputs("check_dataset", _load_file("check_dataset", str(inputs)), index)
        except (ValueError, TypeError, OSError) as e:
            return dict(index=index, error=f"cannot read {str(inputs)!r}: {e}", layers=[])
    try:
        r = qref.check(model, *inputs, isa=isa)
    except Exception as e:  # noqa: BLE001 - the model failed on this input: recorded, never ok
        return dict(index=index, error=f"{type(e).__name__}: {e}", layers=[])
    rows = [dict(name=x.name, type=x.type, status=x.status, numel=int(x.numel), mismatches=int(x.mismatches),
                 max_abs_diff=int(x.max_abs_diff),
                 first_mismatch=None if x.first_mismatch is None else [int(v) for v in x.first_mismatch],
                 torch_value=x.torch_value, qref_value=x.qref_value, path=x.path, reason=x.reason)
            for x in r.layers]
    return dict(index=index, error=None, layers=rows)


def run_shard(state: dict, shard: list) -> list:
    """Worker entry: ``shard = [(index, inputs), ...]`` -> ``[partial]``, the shard's inputs
    merged per layer (``_partial`` / ``_combine``): a shard's result has the size of the model's
    layer list, not of its inputs."""
    model, isa = state["model"], state["isa"]
    part = _partial([])
    for index, inputs in shard:
        part = _combine(part, _partial([_check_one(model, isa, index, inputs)]))
    return [part]


# ----------------------------------------------------------------------------- report


@dataclass
class DatasetLayer:
    """One layer (a captured call name of ``qref.check``) over the whole dataset."""

    name: str
    type: str
    inputs: int = 0  # inputs that called it
    mismatching_inputs: int = 0  # inputs where it differs from qref
    elements: int = 0  # mismatching output elements over all inputs
    numel: int = 0  # output elements over all inputs
    max_abs_diff: int = 0
    first_input: Optional[int] = None  # the first mismatching input's index
    first_mismatch: Optional[tuple] = None  # (n, c, h, w) in that input's output
    torch_value: Optional[int] = None
    qref_value: Optional[int] = None
    unsupported_inputs: int = 0
    torch_wrong_inputs: int = 0
    reason: str = ""
    paths: list = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.unsupported_inputs:
            return "unsupported"
        if self.mismatching_inputs:
            return "MISMATCH"
        if self.torch_wrong_inputs:
            return "TORCH_WRONG"
        return "ok"

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["status"] = self.status
        return d


@dataclass
class DatasetReport:
    """The result of ``qref.check_dataset``."""

    inputs_checked: int
    mismatching_inputs: list  # sorted input indices where some layer differs from qref
    layers: list  # [DatasetLayer], in first-call order
    errors: list  # [(index, message)]: inputs whose run raised
    empty_inputs: list  # input indices that called no quantized layer
    torch_wrong_inputs: list
    isa: str
    source: str = ""

    @property
    def ok(self) -> bool:
        return (self.inputs_checked > 0 and not self.mismatching_inputs and not self.errors
                and not self.empty_inputs and not self.torch_wrong_inputs
                and all(x.status == "ok" for x in self.layers) and bool(self.layers))

    @property
    def unsupported(self) -> list:
        return [x for x in self.layers if x.unsupported_inputs]

    def __getitem__(self, name: str) -> DatasetLayer:
        return find_named(self.layers, name)

    def to_dict(self) -> dict:
        return dict(ok=self.ok, inputs_checked=self.inputs_checked, mismatching_inputs=list(self.mismatching_inputs),
                    layers=[x.to_dict() for x in self.layers], errors=[list(e) for e in self.errors],
                    empty_inputs=list(self.empty_inputs), torch_wrong_inputs=list(self.torch_wrong_inputs),
                    isa=self.isa)

    def __str__(self) -> str:
        rows = []
        for x in self.layers:
            first = "" if x.first_input is None else (
                f"input #{x.first_input} at {x.first_mismatch}: qref {x.qref_value} torch {x.torch_value}")
            rows.append((x.name, x.type.split(".")[-1], "/".join(x.paths), x.status,
                         f"{x.mismatching_inputs}/{x.inputs}", f"{x.elements}/{x.numel}", str(x.max_abs_diff),
                         first))
        lines = [f"qref check_dataset (isa={self.isa}): {self.inputs_checked} inputs"
                 + (f" from {self.source}" if self.source else "")]
        lines += _table(rows, ["layer", "type", "path", "status", "inputs mismatching", "elements", "max|diff|",
                               "first mismatch"])
        for x in self.unsupported:
            lines.append(f"  {x.name}: not verified on {x.unsupported_inputs} input(s): {x.reason}")
        for x in self.layers:
            if x.torch_wrong_inputs:
                lines.append(f"  {x.name}: torch is wrong on {x.torch_wrong_inputs} input(s): {x.reason}")
        for i, msg in self.errors[:10]:
            lines.append(f"  input #{i}: the model raised {msg}")
        if len(self.errors) > 10:
            lines.append(f"  ... {len(self.errors) - 10} more inputs raised")
        if self.empty_inputs:
            lines.append(f"  {len(self.empty_inputs)} input(s) called no quantized layer (first: "
                         f"#{self.empty_inputs[0]}): nothing was verified on them")
        if self.ok:
            lines.append(f"OK: every layer bit-exact on all {self.inputs_checked} inputs")
        elif self.inputs_checked == 0:
            lines.append("NOT OK: no inputs were checked")
        else:
            why = []
            if self.mismatching_inputs:
                shown = ", ".join(f"#{i}" for i in self.mismatching_inputs[:20])
                more = f" (+{len(self.mismatching_inputs) - 20} more)" if len(self.mismatching_inputs) > 20 else ""
                why.append(f"{len(self.mismatching_inputs)} input(s) mismatch: {shown}{more}")
            if self.unsupported:
                why.append(f"{len(self.unsupported)} layer(s) not verifiable")
            if self.errors:
                why.append(f"{len(self.errors)} input(s) raised")
            if self.empty_inputs:
                why.append(f"{len(self.empty_inputs)} input(s) called no quantized layer")
            if self.torch_wrong_inputs:
                why.append(f"torch is wrong on {len(self.torch_wrong_inputs)} input(s)")
            if not self.layers and not why:
                why.append("no quantized layers were called")
            lines.append("NOT OK: " + "; ".join(why))
        return "\n".join(lines)


def _table(rows: list, cols: list) -> list:
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    return [fmt.format(*cols), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows]


_SUMS = ("inputs", "mismatching_inputs", "elements", "numel", "unsupported_inputs", "torch_wrong_inputs")


def _partial(items: list) -> dict:
    """Per-input check results (dicts of ``_check_one``) as one mergeable aggregate."""
    layers: dict = {}
    out = dict(inputs=len(items), layers=layers, mismatching=[], errors=[], empty=[], torch_wrong=[])
    for it in items:
        i = it["index"]
        if it["error"] is not None:
            out["errors"].append([i, it["error"]])
            continue
        if not it["layers"]:
            out["empty"].append(i)
        bad = wrong = False
        for pos, r in enumerate(it["layers"]):
            x = layers.setdefault(r["name"], dict(name=r["name"], type=r["type"], seen=[i, pos], paths=[],
                                                  reason=None, first=None, max_abs_diff=0,
                                                  **{k: 0 for k in _SUMS}))
            x["inputs"] += 1
            if r["path"] and r["path"] not in x["paths"]:
                x["paths"].append(r["path"])
            if r["status"] == "unsupported":
                x["unsupported_inputs"] += 1
            elif r["status"] == "TORCH_WRONG":
                x["numel"] += r["numel"]
                x["torch_wrong_inputs"] += 1
                wrong = True
            else:
                x["numel"] += r["numel"]
                if r["mismatches"]:
                    bad = True
                    x["mismatching_inputs"] += 1
                    x["elements"] += r["mismatches"]
                    x["max_abs_diff"] = max(x["max_abs_diff"], r["max_abs_diff"])
                    if x["first"] is None:
                        x["first"] = [i, r["first_mismatch"], r["torch_value"], r["qref_value"]]
            if r["reason"] and x["reason"] is None:
                x["reason"] = [i, r["reason"]]
        if bad:
            out["mismatching"].append(i)
        if wrong:
            out["torch_wrong"].append(i)
    return out


def _combine(a: dict, b: dict) -> dict:
    """Two aggregates as one; the same result in any order and any grouping (sums, maxima,
    the earliest input's values), so the report does not depend on how inputs were sharded."""
    layers = {k: dict(v, paths=list(v["paths"])) for k, v in a["layers"].items()}
    for name, y in b["layers"].items():
        x = layers.get(name)
        if x is None:
            layers[name] = dict(y, paths=list(y["paths"]))
            continue
        for k in _SUMS:
            x[k] += y[k]
        x["max_abs_diff"] = max(x["max_abs_diff"], y["max_abs_diff"])
        x["seen"] = min(x["seen"], y["seen"])
        x["paths"] = sorted(set(x["paths"]) | set(y["paths"]))
        for k in ("first", "reason"):
            if y[k] is not None and (x[k] is None or y[k][0] < x[k][0]):
                x[k] = y[k]
    return dict(inputs=a["inputs"] + b["inputs"], layers=layers,
                **{k: sorted(a[k] + b[k]) for k in ("mismatching", "errors", "empty", "torch_wrong")})


def merge(parts: list, isa: str, source: str = "") -> DatasetReport:
    """The dataset report of shard aggregates (any order)."""
    total = _partial([])
    for p in parts:
        total = _combine(total, p)
    layers = []
    for x in sorted(total["layers"].values(), key=lambda v: v["seen"]):
        d = DatasetLayer(x["name"], x["type"], **{k: x[k] for k in _SUMS}, max_abs_diff=x["max_abs_diff"],
                         reason="" if x["reason"] is None else x["reason"][1], paths=sorted(x["paths"]))
        if x["first"] is not None:
            d.first_input, fm, d.torch_value, d.qref_value = x["first"]
            d.first_mismatch = None if fm is None else tuple(fm)
        layers.append(d)
    return DatasetReport(total["inputs"], total["mismatching"], layers, [tuple(e) for e in total["errors"]],
                         total["empty"], total["torch_wrong"], isa, source)


def _fingerprint(model: Any) -> str:
    """A digest of the model's class and state (quantized weights by their integer values and
    quantization parameters, plus the names of its hooks and of any ``forward`` set on a module
    instance), naming the campaign in a results file."""
    import torch

    h = hashlib.sha256(type(model).__qualname__.encode())
    for name, mod in model.named_modules():  # hooks change what a model computes, not its state
        for kind in ("_forward_pre_hooks", "_forward_hooks"):
            for hook in getattr(mod, kind, {}).values():
                h.update(f"{name}.{kind}:{getattr(hook, '__module__', '')}.{getattr(hook, '__qualname__', '')}"
                         .encode())
        fwd = mod.__dict__.get("forward")  # a forward set on the instance replaces its class's
        if fwd is not None:
            h.update(f"{name}.forward:{getattr(fwd, '__module__', '')}."
                     f"{getattr(fwd, '__qualname__', type(fwd).__qualname__)}".encode())
    for k, v in model.state_dict().items():
        h.update(k.encode())
        if isinstance(v, torch.Tensor):
            if v.is_quantized:
                h.update(v.int_repr().contiguous().numpy().tobytes())
                if v.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
                    h.update(repr((v.q_scale(), v.q_zero_point())).encode())
                else:
                    h.update(v.q_per_channel_scales().numpy().tobytes())
                    h.update(v.q_per_channel_zero_points().numpy().tobytes())
            else:
                h.update(v.detach().contiguous().cpu().numpy().tobytes())
        else:
            h.update(repr(v).encode())
    return h.hexdigest()[:16]


def check_dataset(model: Any, inputs: Any, *, cluster: Any = None, isa: str = "auto", workers: Optional[int] = None,
                  results: Optional[str] = None, shard_size: int = 8, progress: bool = True) -> DatasetReport:
    """``qref.check(model, *input, isa=isa)`` on every input of ``inputs``, merged per layer.

    ``inputs``: an iterable of input tensors or numpy arrays (or tuples of them: the model's
    positional inputs), a stacked tensor / array (one input per entry along axis 0, batch 1 each),
    a torch Dataset (its items, in index order) or DataLoader (one input per batch), the path of a
    ``.npz`` file (one array: stacked inputs; several: one input per array, in stored order) or of
    a folder of ``.npy`` / ``.pt`` files (one input per file, sorted by name). Input indices count
    from 0 in that order. ``cluster`` / ``workers`` / ``results``: as ``qref.fuzz``.
    """
    fn = "check_dataset"
    if not hasattr(model, "named_modules") or not callable(model):
        raise TypeError(f"{fn}: model must be a torch.nn.Module, got {type(model).__name__}")
    if isa not in ("auto", "avx2", "vnni"):
        raise ValueError(f"{fn}: isa={isa!r} is not valid (valid: 'auto', 'avx2', 'vnni')")
    cluster = C.check_cluster(fn, cluster)
    workers = C.check_workers(fn, workers)
    shard_size = C.check_shard_size(fn, shard_size)
    it, total, source = open_inputs(fn, inputs)
    key = dict(kind="check_dataset", model=_fingerprint(model), inputs=source, isa=isa, shard_size=shard_size)
    res = C.ResultsFile(fn, results, key)

    def shards() -> Iterator:
        buf: list = []
        sid = 0
        for index, item in enumerate(it):
            if sid in res.done:  # finished before: not even converted
                buf.append(None)
            else:
                buf.append((index, item if isinstance(item, FileInput) else _as_inputs(fn, item, index)))
            if len(buf) == shard_size:
                yield sid, buf
                buf, sid = [], sid + 1
        if buf:
            yield sid, buf

    bar = C.Progress("qref check_dataset", total, "input", progress)
    try:
        done = C.run(fn, "qref.campaign.dataset:run_shard", dict(model=model, isa=isa), shards(), cluster=cluster,
                     workers=workers, results=res, progress=bar, n_items=lambda parts: sum(p["inputs"] for p in parts),
                     n_failures=lambda parts: sum(len(set(p["mismatching"]) | {e[0] for e in p["errors"]})
                                                  for p in parts))
    finally:
        bar.close()
        res.close()
    return merge([x for v in done.values() for x in v], isa, source)
