"""The campaign subcommands of the ``qref`` command line.

  qref fuzz module:function --n N [--seed S] [--isa ISA] [--engine E] [--cluster C] [--workers W]
                              [--results FILE] [--json]
  qref check module:function --inputs PATH [--isa ISA] [--cluster C] [--workers W] [--results FILE] [--json]

``module:function`` is an importable module or a ``.py`` file; for ``fuzz`` the function is the
kernel itself, for ``check`` it builds the model (returning ``model`` or ``(model, *inputs)``; the
inputs are then ignored). A file's folder is put on the import path, so worker processes and Ray
actors on this machine import it by name as well. Every failure is one line on stderr and exit
status 1; a campaign that finds a mismatch also exits with 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Any

from .dataset import check_dataset
from .fuzzer import fuzz


def _fail(cmd: str, msg: Any) -> None:
    text = " ".join(str(msg).split())  # one line
    for prefix in ("fuzz: ", "check_dataset: "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    sys.exit(f"qref {cmd}: {text}")


def _cluster(cmd: str, text: str) -> Any:
    if text in ("none", "None", ""):
        return None
    if text in ("local", "ray") or text.startswith("ray://"):
        return text
    _fail(cmd, f"--cluster={text!r} is not valid (none, local, ray or ray://host:port)")


def import_function(spec: str, cmd: str) -> Any:
    """The callable named by ``module:function`` (a module on the import path, or a .py file)."""
    if ":" not in spec:
        _fail(cmd, f"{spec!r} must be module:function")
    modname, name = spec.rsplit(":", 1)
    if modname.endswith(".py") or os.sep in modname:
        if not os.path.isfile(modname):
            _fail(cmd, f"file {modname!r} does not exist")
        folder = os.path.dirname(os.path.abspath(modname))
        if folder not in sys.path:
            sys.path.insert(0, folder)
        modname = os.path.splitext(os.path.basename(modname))[0]
    elif os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        mod = importlib.import_module(modname)
    except Exception as e:  # noqa: BLE001 - any import failure is the user's module's, one line
        _fail(cmd, f"cannot import {modname!r}: {type(e).__name__}: {e}")
    f = getattr(mod, name, None)
    if not callable(f):
        _fail(cmd, f"{modname!r} has no function {name!r}")
    return f


def add_fuzz_parser(sub: Any) -> None:
    f = sub.add_parser("fuzz", help="run a custom conv kernel on N random configurations against qref "
                                    "(failures shrunk and diagnosed)")
    f.error = lambda message: _fail("fuzz", message)  # type: ignore[method-assign]  # one line, not usage + error
    f.add_argument("kernel", help="module:function, the kernel kernel(x_u8, w_i8, bias_f32, **kw) -> uint8 array")
    f.add_argument("--n", type=int, required=True, help="how many configurations")
    f.add_argument("--seed", type=int, default=0, help="campaign seed (configuration i depends on (seed, i) only)")
    f.add_argument("--isa", default="auto", help="whose arithmetic: auto (torch here), avx2, vnni (oneDNN engines: "
                                                 "also amx, avx512_core, sse41)")
    f.add_argument("--engine", default="fbgemm", help="fbgemm (default), x86 or onednn")
    f.add_argument("--json", action="store_true", help="print the structured form")
    add_cluster_args(f)


def add_cluster_args(p: Any) -> None:
    p.add_argument("--cluster", default="none", help="none (this process, default), local (worker processes), ray "
                                                     "(the local Ray instance), ray://host:port (a Ray cluster)")
    p.add_argument("--workers", type=int, default=None, help="worker count (default: every CPU of the cluster)")
    p.add_argument("--results", metavar="FILE", help="JSON-lines file of finished shards; a rerun resumes from it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def cmd_fuzz(args: argparse.Namespace) -> int:
    kernel = import_function(args.kernel, "fuzz")
    try:
        r = fuzz(kernel, args.n, seed=args.seed, isa=args.isa, engine=args.engine,
                      cluster=_cluster("fuzz", args.cluster), workers=args.workers, results=args.results,
                      progress=not args.no_progress)
    except (ValueError, TypeError, ImportError, RuntimeError, OSError) as e:
        _fail("fuzz", e)
    print(json.dumps(r.to_dict(), indent=1) if args.json else r)
    return 0 if r.ok else 1


def cmd_check_dataset(args: argparse.Namespace) -> int:
    for opt, given in (("--input-shape", args.input_shape), ("--plot", args.plot)):
        if given:
            _fail("check", f"--inputs and {opt} exclude each other ({opt} applies to a single input)")
    build = import_function(args.model, "check")
    try:
        res = build()
    except Exception as e:  # noqa: BLE001 - the user's builder failed: one line
        _fail("check", f"{args.model}() raised {type(e).__name__}: {e}")
    model = res[0] if isinstance(res, tuple) else res
    try:
        r = check_dataset(model, args.inputs, cluster=_cluster("check", args.cluster), isa=args.isa,
                               workers=args.workers, results=args.results, progress=not args.no_progress)
    except (ValueError, TypeError, ImportError, RuntimeError, OSError) as e:
        _fail("check", e)
    print(json.dumps(r.to_dict(), indent=1) if args.json else r)
    return 0 if r.ok else 1
