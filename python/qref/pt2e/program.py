"""Lowering a converted PT2E model exactly as ``torch.compile`` with freezing does, and capturing
the int8 program it runs: the post-grad FX graph (``torch._inductor.config.post_grad_custom_post_pass``)
and, for every oneDNN int8 op the compiled code calls, its runtime arguments and output."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

_OPS = ("qconv_pointwise", "qconv2d_pointwise", "qlinear_pointwise")
_LOCK = threading.Lock()


@dataclass
class Call:
    name: str        # e.g. "qconv_pointwise.tensor"
    args: list       # positional arguments, tensors cloned before the call
    output: Any      # torch's output (cloned)


@dataclass
class Program:
    """A compiled converted model: ``compiled`` is ``torch.compile(converted)`` (freezing on);
    ``graph`` the post-grad FX graph inductor lowered; ``calls`` the int8 op calls of one run;
    ``inputs`` copies of the inputs that run started from (the compiled code may write into its
    inputs: a qlinear ``.binary`` sum whose accumulator is a graph input does, in torch 2.13)."""

    compiled: Any
    graph: Any = None
    calls: list = field(default_factory=list)
    output: Any = None
    inputs: tuple = ()


class _Wrapped:
    """Stands in for ``torch.ops.onednn.<op>`` while the compiled code runs: each overload call
    goes to ``hook(name, overload_packet_op, args)``."""

    def __init__(self, name: str, packet: Any, hook: Callable) -> None:
        self._name, self._packet, self._hook = name, packet, hook

    def __getattr__(self, overload: str) -> Any:
        op = getattr(self._packet, overload)
        name = f"{self._name}.{overload}"

        def call(*args: Any, **kwargs: Any) -> Any:
            if kwargs:
                raise TypeError(f"qref.pt2e: unexpected keyword arguments to {name}: {sorted(kwargs)}")
            return self._hook(name, op, list(args))

        return call


@contextlib.contextmanager
def intercept(hook: Callable):
    """Route the compiled code's oneDNN int8 op calls through ``hook`` (the generated wrapper
    looks ``torch.ops.onednn.<op>`` up at each call)."""
    import torch

    ns = torch.ops.onednn
    with _LOCK:
        saved = {n: getattr(ns, n) for n in _OPS}
        try:
            for n, p in saved.items():
                setattr(ns, n, _Wrapped(n, p, hook))
            yield
        finally:
            for n, p in saved.items():
                setattr(ns, n, p)


def onednn_op(name: str) -> Any:
    """torch's own ``torch.ops.onednn.<name>`` overload packet, also while ``intercept`` stands in for it."""
    import torch

    p = getattr(torch.ops.onednn, name)
    return p._packet if isinstance(p, _Wrapped) else p


def _clone(a: Any) -> Any:
    import torch

    if isinstance(a, torch.Tensor) and not a.is_mkldnn:
        return a.detach().clone()
    return a


def compile_model(converted: Any, inputs: tuple) -> Program:
    """``torch.compile(converted)`` with ``freezing = True``, run once on ``inputs`` while the
    post-grad graph and every int8 op call are recorded. The compiled code runs on copies of
    ``inputs`` (it may write into them); ``inputs`` are left as they are."""
    import torch
    import torch._inductor.config as icfg

    prog = Program(compiled=None)
    graphs: list = []

    def post_pass(g: Any) -> None:
        graphs.append(g)

    prog.inputs = tuple(_clone(x) for x in inputs)
    torch._dynamo.reset()
    with icfg.patch(freezing=True, post_grad_custom_post_pass=post_pass), torch.no_grad():
        compiled = torch.compile(converted)
        compiled(*_copies(prog.inputs))  # compiles; the run below records
    prog.compiled = compiled
    prog.graph = graphs[-1] if graphs else None

    def record(name: str, op: Any, args: list) -> Any:
        cl = [_clone(a) for a in args]
        out = op(*args)
        prog.calls.append(Call(name, cl, out.detach().clone()))
        return out

    with intercept(record), torch.no_grad():
        prog.output = compiled(*_copies(prog.inputs))
    return prog


def _copies(inputs: tuple) -> tuple:
    return tuple(_clone(x) for x in inputs)


def run_with(prog: Program, inputs: tuple, compute: Callable) -> Any:
    """Run the compiled program (on copies of ``inputs``) with every int8 op computed by
    ``compute(name, args)`` instead of oneDNN (binary "sum" ops write into their accumulator, as
    oneDNN's do)."""
    import torch

    def sub(name: str, op: Any, args: list) -> Any:
        out = compute(name, args)
        if ".binary" in name:
            acc = args[6]
            binary = args[17] if name.startswith("qconv") else args[13]
            if binary == "sum" and acc is not None and acc.dtype == out.dtype and acc.shape == out.shape:
                acc.copy_(out)
                return acc
        return out

    with intercept(sub), torch.no_grad():
        return prog.compiled(*_copies(inputs))
