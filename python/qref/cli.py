"""The ``qref`` command line (also ``python -m qref``).

  qref demo                      the forum question answered, then whole-model checks (fbgemm, x86)
  qref explain [module:function] [--layer NAME] [--index n,c,h,w] [--isa ISA] [--json]
  qref check module:function [--input-shape 1,3,224,224] [--isa ISA] [--plot out.png] [--json]
  qref check module:function --inputs PATH [--cluster ray]   every input of a data set (qref.check_dataset)
  qref fuzz module:function --n N [--seed S] [--cluster ray]   a custom kernel on N random convs (qref.fuzz)
  qref info                      CPU features, qref kernels, what isa="auto" means here
  qref bench [...]               qref vs torch timings (qref.bench)
  qref export DIR [...]          a golden test case for a custom kernel (qref.export)
  qref paths --include|--cmake-dir   where the C++ headers / CMake package are

``module:function`` names a function (in an importable module or a ``.py`` file) that builds a
converted quantized model and returns ``model`` or ``(model, *inputs)``; without inputs,
``--input-shape`` gives a seeded ``torch.rand`` input.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import sys
import time
import warnings
from typing import Optional

import numpy as np

from . import bench
from . import onnx as qonnx
from ._paths import main as paths_main
from ._version import __version__
from .bridge.from_torch import from_torch
from .campaign.cli import add_cluster_args, add_fuzz_parser, cmd_check_dataset, cmd_fuzz
from .check import _capture, check, module_key, portability
from .common.isa import torch_isa
from .common.kernels import kernels
from .demo import (
    demo_model,
    forum_element,
    forum_hand_formula,
    forum_model,
    printed_scale,
    quantized_engine,
    residual_model,
    runtimes_model,
)
from .explain import explain
from .export import main as export_main  # qref.export (the attribute) is the function
from .models import run as qref_run
from .pt2e.api import check_saved
from .runtimes import runtimes as runtimes_report


def _quiet() -> None:
    for msg in (r".*torch\.ao\.quantization is deprecated.*", r".*reduce_range will be deprecated.*",
                r".*quantized tensor creation functions.*", r".*are deprecated and will be removed.*"):
        warnings.filterwarnings("ignore", message=msg)


def _need_torch(cmd: str):
    try:
        import torch
    except ImportError:
        sys.exit(f"qref {cmd}: needs PyTorch (pip install 'qref[torch]' or pip install torch)")
    return torch


def _shape(text: str, what: str) -> tuple:
    try:
        # "1,3,224,224" or "1x3x224x224"; an empty part ("1,3,x") is an error, not skipped
        v = tuple(int(s) for s in re.split(r"[,x]", text.strip()))
    except ValueError:
        sys.exit(f"qref: {what}={text!r} is not a comma-separated list of integers (e.g. 1,3,224,224)")
    if not v or any(d < 0 for d in v):
        sys.exit(f"qref: {what}={text!r} must be non-negative integers")
    n = 1
    for d in v:
        n *= d
    if n > _MAX_INPUT_ELEMENTS:
        sys.exit(f"qref: {what}={text!r} has {n} elements (at most 2^30 = {_MAX_INPUT_ELEMENTS}: a float32 input of "
                 f"4 GiB)")
    return v


_MAX_INPUT_ELEMENTS = 1 << 30


def _one_line(e: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0]}" if msg else type(e).__name__


def _load(spec: str, input_shape: Optional[str], cmd: str) -> tuple:
    """(model, inputs) from ``module:function``."""
    torch = _need_torch(cmd)
    if ":" not in spec:
        sys.exit(f"qref {cmd}: {spec!r} must be module:function (a function that returns a converted model "
                 f"or (model, *inputs))")
    modname, fn = spec.rsplit(":", 1)
    if modname.endswith(".py") or os.sep in modname:
        if not os.path.exists(modname):
            sys.exit(f"qref {cmd}: file {modname!r} does not exist")
        s = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(modname))[0], modname)
        if s is None or s.loader is None:
            sys.exit(f"qref {cmd}: cannot load {modname!r} as a Python module")
        mod = importlib.util.module_from_spec(s)
        sys.modules[s.name] = mod
        try:
            s.loader.exec_module(mod)
        except Exception as e:  # noqa: BLE001 - a syntax error or any failure of the user's module
            sys.exit(f"qref {cmd}: cannot load {modname!r}: {_one_line(e)}")
    else:
        sys.path.insert(0, os.getcwd())
        try:
            mod = importlib.import_module(modname)
        except Exception as e:  # noqa: BLE001 - ImportError, SyntaxError, or the module's own failure
            sys.exit(f"qref {cmd}: cannot import {modname!r}: {_one_line(e)}")
    f = getattr(mod, fn, None)
    if not callable(f):
        sys.exit(f"qref {cmd}: {modname!r} has no function {fn!r}")
    try:
        res = f()
    except Exception as e:  # noqa: BLE001 - the user's model builder
        sys.exit(f"qref {cmd}: {spec}() raised {_one_line(e)}")
    if isinstance(res, tuple):
        model, inputs = res[0], tuple(res[1:])
    else:
        model, inputs = res, ()
    if input_shape:
        g = torch.Generator().manual_seed(0)
        inputs = (torch.rand(*_shape(input_shape, "--input-shape"), generator=g),)
    if not inputs:
        sys.exit(f"qref {cmd}: {spec} returned a model without inputs; pass --input-shape N,C,H,W")
    return model, inputs


# ---------------------------------------------------------------------------- demo


def _grid(a, width: int = 16) -> list:
    flat = [int(v) for v in a.flatten()]
    return [" ".join(f"{v:3d}" for v in flat[i:i + width]) for i in range(0, len(flat), width)]


def cmd_demo(args: argparse.Namespace) -> int:
    torch = _need_torch("demo")

    t0 = time.time()
    print("=" * 100)
    print("1. The forum question: 'the result of quantized conv2d is different from the result I calculate'")
    print("=" * 100)
    print("QuantStub -> Conv2d(1, 1, 1) -> DeQuantStub; HistogramObserver(reduce_range=True) activations,")
    print("PerChannelMinMaxObserver(per_channel_symmetric) qint8 weights, engine 'fbgemm', calibrated on")
    print("and fed arange(64)/255 as (1, 1, 4, 16); torch.manual_seed(128) before the model is built.\n")
    net, x = forum_model()
    print(net)
    qx = net.quant(x)
    ref = net.conv1(qx)
    mine = from_torch(net.conv1)(qx)
    t_out, q_out = ref.int_repr().numpy(), mine.int_repr().numpy()
    same = int((t_out == q_out).sum())
    print(f"\nqref.from_torch(model.conv1)(qx) == torch: {same}/{t_out.size} elements bit-exact"
          + ("" if same == t_out.size else "   <-- MISMATCH"))
    hand = forum_hand_formula(net, x)
    w = net.conv1.weight()
    print("\nThe hand formula with the scales as print(model) shows them:")
    print(f"  out = round((s_in*q_in * s_w*q_w + bias) / s_out) + zp, s_in = {printed_scale(qx.q_scale())}, "
          f"s_w = {printed_scale(float(w.q_per_channel_scales()[0]))}, s_out = {printed_scale(net.conv1.scale)}")
    print("torch (quantized values of the output):")
    print("\n".join("  " + line for line in _grid(t_out)))
    print("hand formula:")
    print("\n".join("  " + line for line in _grid(hand)))
    print(f"  -> {int((hand != t_out).sum())} of {t_out.size} elements differ; with the exact float32 scales the same "
          f"formula differs in {int((forum_hand_formula(net, x, printed=False) != t_out).sum())}")
    idx = forum_element(net, x)
    flat = int(np.ravel_multi_index(idx, t_out.shape))
    print(f"\nWhy element {idx} (flat index {flat}, input quantized value "
          f"{int(qx.int_repr()[idx[0], 0, idx[2], idx[3]])}) is {int(t_out[idx])}, not {int(hand[idx])}:  "
          f"qref.explain(model.conv1, qx, {idx})\n")
    e = explain(net.conv1, qx, idx, layer="conv1")
    print(e)
    if not args.quick:
        print()
        print("=" * 100)
        print(f"2. A whole model: qref.check(model, x) on a {args.size}x{args.size} stem with every fbgemm conv path")
        print("=" * 100)
        net2, x2 = demo_model(size=args.size)
        r = check(net2, x2)
        print(r)
        print()
        p = portability(net2, x2)
        print(p)
        if args.plot:
            r.plot(args.plot, portability=p)
            print(f"\nplot written to {args.plot}")
        print()
        print("=" * 100)
        print("3. torch's default engine: the same stem converted under torch.backends.quantized.engine = 'x86'")
        print("=" * 100)
        print("('x86' packs symmetric-weight convs for oneDNN on an AVX512-VNNI host, whose arithmetic differs from "
              "fbgemm's;\nqref.from_torch tells the two apart and check verifies each layer with its engine's "
              "arithmetic)\n")
        net3, x3 = demo_model(size=args.size, engine="x86")
        r3 = check(net3, x3)
        print(r3)
        print()
        print("=" * 100)
        print("4. A residual network, every op: conv, add_relu, pools, linear, quantize/dequantize, end to end")
        print("=" * 100)
        print("(qref.check sees every op on quantized tensors through torch's dispatcher, modules and functional "
              "calls alike,\nrecomputes each from torch's inputs, then runs the whole model with qref (qref.run) "
              "and compares the output)\n")
        net4, x4 = residual_model()
        with quantized_engine("fbgemm"):
            r4 = check(net4, x4)
            y_qref = qref_run(net4, x4)
            y_torch = net4(x4)
        print(r4)
        same4 = bool(torch.equal(y_qref, y_torch))
        print(f"qref.run(model, x) == model(x) (float output, bit for bit): {same4}")
        print()
        print("=" * 100)
        print("5. Which bytes each runtime gives: torch fbgemm / x86 / qnnpack and ONNX Runtime, same integer "
              "parameters")
        print("=" * 100)
        net5, x5 = runtimes_model()
        with quantized_engine("fbgemm"):
            print(runtimes_report(net5, x5))
        ok = r.ok and r3.ok and r4.ok and same4 and same == t_out.size
    else:
        ok = same == t_out.size
    print(f"\n(demo took {time.time() - t0:.1f} s; torch {torch.__version__}, "
          f"fbgemm arithmetic here: {torch_isa().gemm_isa})")
    return 0 if ok else 1


# ---------------------------------------------------------------------------- explain


def cmd_explain(args: argparse.Namespace) -> int:
    _need_torch("explain")

    if args.model is None:
        net, x = forum_model()
        inputs = (x,)
        layer = args.layer or "conv1"
        default_index = forum_element(net, x)
    else:
        net, inputs = _load(args.model, args.input_shape, "explain")
        layer = args.layer
        default_index = (0, 0, 0, 0)
    calls = _capture(net, inputs)
    convs = [c for c in calls if ("Conv" in c.key or "Linear" in c.key) and c.inputs]
    if layer is None:
        if not convs:
            sys.exit("qref explain: the model has no quantized conv or linear layer")
        call = convs[0]
    else:
        match = [c for c in calls if c.name == layer]
        if not match:
            sys.exit(f"qref explain: --layer {layer!r} is not a quantized layer of the model "
                     f"(layers: {', '.join(c.name for c in calls)})")
        call = match[0]
    index = _shape(args.index, "--index") if args.index else default_index
    try:
        e = explain(call.module, call.inputs[0], index, isa=args.isa,
                         layer=f"{call.name} ({module_key(call.module)})")
    except (ValueError, TypeError, NotImplementedError) as err:
        sys.exit(f"qref explain: {err}")
    print(json.dumps(e.to_dict(), indent=1) if args.json else e)
    return 0


# ---------------------------------------------------------------------------- check


def cmd_check_onnx(args: argparse.Namespace) -> int:
    """``qref check model.onnx --input-shape N,C,H,W``: a seeded standard-normal float32 input
    for the model's first input (other inputs take their declared shapes)."""
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        sys.exit("qref check: ONNX models need onnx and onnxruntime (pip install 'qref[onnx]')")
    import onnx as _onnx_pkg

    if not os.path.exists(args.model):
        sys.exit(f"qref check: {args.model}: no such file")
    m = _onnx_pkg.load(args.model)
    inits = {i.name for i in m.graph.initializer}
    graph_inputs = [i for i in m.graph.input if i.name not in inits]
    rng = np.random.default_rng(0)
    feeds = {}
    for k, gi in enumerate(graph_inputs):
        if k == 0 and args.input_shape:
            shape = _shape(args.input_shape, "--input-shape")
        else:
            dims = [d.dim_value for d in gi.type.tensor_type.shape.dim]
            if any(d <= 0 for d in dims):
                sys.exit(f"qref check: input {gi.name!r} has a dynamic shape; pass --input-shape")
            shape = tuple(dims)
        feeds[gi.name] = rng.standard_normal(shape).astype(np.float32)
    rep = qonnx.check(args.model, feeds)
    print(rep.summary())
    return 0 if rep.ok else 1


def cmd_check(args: argparse.Namespace) -> int:
    if args.model.lower().endswith(".onnx"):  # an ONNX Runtime model (qref.onnx, docs/onnxruntime.md)
        return cmd_check_onnx(args)
    _need_torch("check")
    if args.inputs is not None:  # a whole input set (qref.check_dataset)
        return cmd_check_dataset(args)
    if args.model.endswith(".pt2"):  # a saved ExportedProgram of a torchao PT2E model: docs/pt2e.md
        try:
            r = check_saved(args.model, _shape(args.input_shape, "--input-shape") if args.input_shape else None,
                            args.isa)
        except (RuntimeError, ValueError, TypeError, OSError) as err:
            sys.exit(f"qref check: {args.model}: {type(err).__name__}: {err}")
        print(json.dumps(r.to_dict(), indent=1) if args.json else r)
        return 0 if r.ok else 1

    model, inputs = _load(args.model, args.input_shape, "check")
    try:
        r = check(model, *inputs, isa=args.isa)
        p = None if args.no_portability else portability(model, *inputs)
    except (RuntimeError, ValueError, TypeError) as err:  # the user's model failed on these inputs
        sys.exit(f"qref check: running {args.model} on inputs of shape "
                 f"{[tuple(getattr(t, 'shape', ())) for t in inputs]} failed: {type(err).__name__}: {err}")
    if args.json:
        print(json.dumps(dict(check=r.to_dict(), portability=None if p is None else p.to_dict()), indent=1))
    else:
        print(r)
        if p is not None:
            print()
            print(p)
    if args.plot:
        try:
            r.plot(args.plot, portability=p)
        except ImportError as err:
            sys.exit(f"qref check --plot: {err}")
        print(f"plot written to {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0 if r.ok else 1


# ---------------------------------------------------------------------------- info


def cmd_info(args: argparse.Namespace) -> int:
    print(f"qref {__version__}")
    print(f"kernels compiled and usable here (best first): {', '.join(kernels())}")
    print(torch_isa())
    try:
        import torch

        print(f"torch {torch.__version__}; torch.backends.quantized.engine = {torch.backends.quantized.engine!r} "
              f"(supported: {', '.join(torch.backends.quantized.supported_engines)})")
    except ImportError:
        print("torch: not installed (qref.check / explain on torch modules need it)")
    return 0


def cmd_bench(argv: list) -> int:
    return int(bench.main(argv) or 0)


def cmd_export(argv: list) -> int:
    return int(export_main(argv) or 0)


def cmd_paths(argv: list) -> int:
    return int(paths_main(argv) or 0)


# ---------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="qref", description="Bit-exact reference for PyTorch's quantized int8 "
                                 "convolution (fbgemm): reproduce, explain, check.")
    sub = ap.add_subparsers(dest="cmd", metavar="{demo,explain,check,fuzz,export,info,bench,paths}")
    isa_help = "whose fbgemm arithmetic: auto (torch in this process), avx2, vnni"

    d = sub.add_parser("demo", help="answer the forum question, then check a whole model (no arguments needed)")
    d.add_argument("--size", type=int, default=224, help="input size of the multi-layer model (default 224)")
    d.add_argument("--quick", action="store_true", help="only the forum part")
    d.add_argument("--plot", metavar="PNG", help="also draw the cross-machine differences (needs matplotlib)")

    e = sub.add_parser("explain", help="derive one output element step by step")
    e.add_argument("model", nargs="?", help="module:function returning (model, *inputs); default: the forum model")
    e.add_argument("--layer", help="layer name (default: the first quantized conv or linear)")
    e.add_argument("--index", help="output element n,c,h,w (default: the demo's element, else 0,0,0,0)")
    e.add_argument("--input-shape", help="input shape when the function returns no inputs, e.g. 1,3,224,224")
    e.add_argument("--isa", default="auto", choices=["auto", "avx2", "vnni"], help=isa_help)
    e.add_argument("--json", action="store_true", help="print the structured form")

    c = sub.add_parser("check", help="verify every quantized layer of a model against qref, bit for bit")
    c.add_argument("model", help="module:function returning a converted model or (model, *inputs)")
    c.add_argument("--input-shape", help="input shape, e.g. 1,3,224,224 (seeded torch.rand)")
    c.add_argument("--isa", default="auto", choices=["auto", "avx2", "vnni"], help=isa_help)
    c.add_argument("--plot", metavar="PNG", help="draw differing layers (needs matplotlib)")
    c.add_argument("--no-portability", action="store_true", help="skip the AVX2 vs VNNI comparison")
    c.add_argument("--json", action="store_true", help="print the structured form")
    c.add_argument("--inputs", metavar="PATH", help="check every input of a .npz file or a folder of .npy / .pt files "
                   "(qref.check_dataset)")
    add_cluster_args(c)
    add_fuzz_parser(sub)

    sub.add_parser("info", help="CPU features, qref kernels, what isa='auto' means here")
    sub.add_parser("bench", help="qref vs torch timings (arguments go to qref.bench)", add_help=False)
    sub.add_parser("export", help="write a golden test case for a custom kernel (arguments go to qref.export)",
                   add_help=False)
    sub.add_parser("paths", help="--include / --cmake-dir: the C++ reference headers and CMake package",
                   add_help=False)
    return ap


def main(argv: Optional[list] = None) -> int:
    """Every failure is one line on stderr and a non-zero exit (QREF_TRACEBACK=1: the traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = argv[0] if argv and not argv[0].startswith("-") else ""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print(f"qref{' ' + cmd if cmd else ''}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("QREF_TRACEBACK"):
            raise
        print(f"qref{' ' + cmd if cmd else ''}: {_one_line(e)}", file=sys.stderr)
        return 1


def _main(argv: list) -> int:
    _quiet()
    passthrough = {"bench": cmd_bench, "export": cmd_export, "paths": cmd_paths}
    if argv and argv[0] in passthrough:
        return passthrough[argv[0]](argv[1:])
    ap = _parser()
    args = ap.parse_args(argv)
    if args.cmd is None:
        ap.print_help()
        return 2
    if args.cmd == "fuzz":
        return cmd_fuzz(args)
    return {"demo": cmd_demo, "explain": cmd_explain, "check": cmd_check, "info": cmd_info}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
