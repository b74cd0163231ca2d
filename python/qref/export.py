"""Golden vectors: a self-describing conv test case for C, RTL and Python testbenches.

``qref.export(dir, input, weight, bias, **conv_args)`` (or ``params=`` a
``qref.Conv2dParams`` plus ``input=``) computes the expected output with qref
and writes into ``dir``:

- ``case.json``   every parameter, each float also as its exact float32 bit
                  pattern (hex), the fbgemm path / saturation, and an index of
                  the arrays with shapes, layouts and SHA-256 of their bytes;
- ``case.npz``    the arrays in torch's layouts (NCHW input/output, OIHW weight);
- ``bin/*.bin``   the same arrays in the layouts a kernel uses (NHWC input and
                  output, OHWI weight), raw little-endian after a 32-byte header
                  (``BIN_HEADER``);
- ``memh/*.memh`` the same bytes for ``$readmemh``: one element per line, hex,
                  two's complement, floats as their IEEE bit pattern;
- ``params.txt``  the scalars as ``name value`` lines (floats as float32 hex bits),
                  easy to ``fscanf`` from C.

Arrays: input, weight, bias (if any), weight_scale (float32 as fbgemm uses it;
the npz also holds the float64 given), weight_zero_point, output, and with
``intermediates=True`` acc (int32 sum of products, saturated pairs where fbgemm
saturates), raw (int32 after the zero-point terms) and y (float32 pre-rounding),
plus fbgemm's prepared per-channel multiplier, col_offset and bias_term (per-channel weights) or
bias_rcp (per-tensor weights: the bias enters as fma(bias, bias_rcp, float(raw)), one rounding).

``qref.load_case(dir)`` reads it back (from the npz or the binaries) and
``case.verify()`` recomputes it with qref.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import sys
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from . import variants as V
from ._version import __version__
from .common.isa import torch_isa
from .common.validate import check_choice
from .compare import compare
from .engines.fbgemm.conv2d import conv_plan
from .layers.conv2d import conv2d

FORMAT = "qref-golden-case"
VERSION = 1
MAGIC = b"QREF"

BIN_HEADER = """\
bin/<name>.bin: a 32-byte little-endian header, then the array, C order, little-endian.
  offset size  field
       0    4  magic "QREF"
       4    2  uint16 header version (1)
       6    1  uint8  dtype: 1 uint8, 2 int8, 3 int32, 4 float32 (IEEE binary32)
       7    1  uint8  ndim (0..4)
       8   16  uint32 dims[4] (unused trailing dims are 1)
      24    8  uint64 payload size in bytes
Layouts: input NHWC, weight OHWI ([O][KH][KW][C/groups]), output / acc / raw / y NHWC,
per-channel vectors (O) or (1) for per-tensor quantization."""

_DTYPES = {np.dtype(np.uint8): 1, np.dtype(np.int8): 2, np.dtype(np.int32): 3, np.dtype(np.float32): 4}
_CODES = {v: k for k, v in _DTYPES.items()}


def f32_hex(v: float) -> str:
    """The float32 bit pattern of v (after rounding to float32), as 0x%08x."""
    return "0x%08x" % struct.unpack("<I", struct.pack("<f", float(np.float32(v))))[0]


def _hexfloat(v: float) -> dict:
    return {"value": float(v), "float32": float(np.float32(v)), "float32_hex": f32_hex(v)}


def write_bin(path: str, a: np.ndarray) -> bytes:
    a = np.ascontiguousarray(a)
    if a.dtype not in _DTYPES or a.ndim > 4:
        raise ValueError(f"write_bin: array of dtype {a.dtype} and {a.ndim} dims is not storable "
                         f"(uint8/int8/int32/float32, at most 4 dims)")
    dims = list(a.shape) + [1] * (4 - a.ndim)
    payload = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
    hdr = MAGIC + struct.pack("<HBB4IQ", 1, _DTYPES[a.dtype], a.ndim, *dims, len(payload))
    assert len(hdr) == 32
    with open(path, "wb") as f:
        f.write(hdr + payload)
    return payload


def read_bin(path: str) -> np.ndarray:
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != MAGIC[:len(data[:4])]:
        raise ValueError(f"read_bin: {path} is not a qref binary (magic {data[:4]!r}, expected {MAGIC!r})")
    if len(data) < 32:
        raise ValueError(f"read_bin: {path} is truncated: {len(data)} bytes, shorter than the 32-byte header of a "
                         f"qref binary")
    ver, code, ndim, d0, d1, d2, d3, size = struct.unpack("<HBB4IQ", data[4:32])
    if ver != 1 or code not in _CODES or ndim > 4:
        raise ValueError(f"read_bin: {path}: unsupported header (version {ver}, dtype code {code}, ndim {ndim})")
    if len(data) - 32 != size:
        raise ValueError(f"read_bin: {path}: payload has {len(data) - 32} bytes, header says {size}")
    dt = _CODES[code]
    return np.frombuffer(data[32:], dt.newbyteorder("<")).astype(dt).reshape((d0, d1, d2, d3)[:ndim])


def _write_memh(path: str, a: np.ndarray) -> None:
    width = a.dtype.itemsize * 2
    u = np.ascontiguousarray(a).reshape(-1).view({1: np.uint8, 4: np.uint32}[a.dtype.itemsize])
    with open(path, "w") as f:
        f.write("\n".join(format(int(v), f"0{width}x") for v in u))
        f.write("\n")


def _nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def _nchw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def _named_isa(case: V.ConvCase) -> str:
    """A host-independent isa ("avx2" or "vnni") that gives this case's saturation."""
    for isa in ("vnni", "avx2"):
        p = conv_plan(case.input.shape, case.weight.shape, case.stride, case.padding, case.dilation, case.groups,
                      isa)
        if p.saturates == case.saturates:
            return isa
    return case.isa  # pragma: no cover - every path saturates under one of the two


def export(path: str, input: Any = None, weight: Any = None, bias: Any = None, *, params: Any = None,
           intermediates: bool = True, rtl: bool = True, name: Optional[str] = None, **conv_args: Any) -> str:
    """Write a golden test case (see the module docstring) into directory ``path``; returns it.

    Conv arguments as ``qref.conv2d`` takes them (input may be a torch quint8 tensor or a uint8
    array with input_scale/input_zero_point; weight a qint8 tensor or an int8 array with
    weight_scale/weight_zero_point), or ``params=`` a ``qref.Conv2dParams``; ``isa`` picks the
    fbgemm arithmetic of the expected output (default "auto": this host's torch)."""
    unknown = sorted(set(conv_args) - set(V.CONV_ARGS))
    if unknown:
        raise TypeError(f"export: unexpected argument(s) {unknown} (conv arguments: {', '.join(V.CONV_ARGS)})")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"export: path must be a directory path, got {type(path).__name__}")
    case = V.make_case("export", input, weight, bias, params=params, **conv_args)
    out, inter = conv2d(**case.conv_kwargs(), return_intermediates=True)
    prep = V.prepared(case)
    O = case.weight.shape[0]
    os.makedirs(os.path.join(path, "bin"), exist_ok=True)
    if rtl:
        os.makedirs(os.path.join(path, "memh"), exist_ok=True)

    # name -> (npz array in torch layout, bin array in kernel layout, layout text)
    arrays: dict = {
        "input": (case.input, _nhwc(case.input), "NCHW", "NHWC"),
        "weight": (case.weight, np.ascontiguousarray(case.weight.transpose(0, 2, 3, 1)), "OIHW", "OHWI"),
        "weight_scale": (case.weight_scale.astype(np.float64), case.weight_scale.astype(np.float32), "(O,) or (1,)",
                         "(O,) or (1,), float32"),
        "weight_zero_point": (case.weight_zero_point, case.weight_zero_point, "(O,) or (1,)", "(O,) or (1,)"),
        "output": (out, _nhwc(out), "NCHW", "NHWC"),
    }
    if case.bias is not None:
        arrays["bias"] = (case.bias, case.bias, "(O,)", "(O,)")
    if intermediates:
        arrays["acc"] = (inter.acc, _nhwc(inter.acc), "NCHW", "NHWC")
        arrays["raw"] = (inter.raw, _nhwc(inter.raw), "NCHW", "NHWC")
        arrays["y"] = (inter.y, _nhwc(inter.y), "NCHW", "NHWC")
        arrays["multiplier"] = (prep["M"], prep["M"], "(O,)", "(O,)")
        arrays["col_offset"] = (prep["col_offset"], prep["col_offset"], "(O,)", "(O,)")
        if case.bias is not None and case.per_channel:
            arrays["bias_term"] = (prep["bias_term"], prep["bias_term"], "(O,)", "(O,)")
        elif case.bias is not None:  # per-tensor: fma(bias[o], bias_rcp[o], float(raw)), one rounding
            arrays["bias_rcp"] = (prep["R"], prep["R"], "(O,)", "(O,)")

    index = {}
    for k, (a_npz, a_bin, lay_npz, lay_bin) in arrays.items():
        payload = write_bin(os.path.join(path, "bin", f"{k}.bin"), a_bin)
        if rtl:
            _write_memh(os.path.join(path, "memh", f"{k}.memh"), a_bin)
        index[k] = dict(dtype=str(a_bin.dtype), npz_dtype=str(a_npz.dtype), npz_shape=list(a_npz.shape),
                        npz_layout=lay_npz, bin=f"bin/{k}.bin", bin_shape=list(a_bin.shape), bin_layout=lay_bin,
                        memh=f"memh/{k}.memh" if rtl else None, sha256=hashlib.sha256(payload).hexdigest())
    np.savez(os.path.join(path, "case.npz"), **{k: v[0] for k, v in arrays.items()})

    N, C, H, W = case.input.shape
    _, Cg, KH, KW = case.weight.shape
    OH, OW = out.shape[2], out.shape[3]
    conv = dict(N=N, C=C, H=H, W=W, O=O, KH=KH, KW=KW, OH=OH, OW=OW, stride=list(case.stride),
                padding=list(case.padding), dilation=list(case.dilation), groups=case.groups, relu=case.relu,
                per_channel=case.per_channel, has_bias=case.bias is not None)
    fb = dict(isa=case.isa, isa_for_verify=_named_isa(case), path=case.path, saturate=case.saturates,
              pair_rule="with saturate: consecutive pairs (2i, 2i+1) of k = (kh*KW + kw)*Cg + c are summed and "
                        "clipped to int16 first (an odd last element pairs with 0); padded taps hold "
                        "input_zero_point")
    if case.isa == "auto":
        fb["torch_isa"] = str(torch_isa())
    quant = dict(
        input_scale=_hexfloat(case.input_scale), input_zero_point=case.input_zero_point,
        output_scale=_hexfloat(case.output_scale), output_zero_point=case.output_zero_point,
        weight_scale=[_hexfloat(v) for v in case.weight_scale],
        weight_zero_point=[int(v) for v in case.weight_zero_point],
        bias=None if case.bias is None else [_hexfloat(v) for v in case.bias],
        formula=("S[o] = f32(f32(input_scale) * f32(weight_scale[o])); M[o] = f32(S[o] / f32(output_scale)); "
                 "raw = acc - input_zero_point*col_offset[o] - rowsum*weight_zero_point[o] (int32 wrap), "
                 "col_offset[o] = sum(weight[o]) - weight_zero_point[o]*K; yf = per_channel ? "
                 "f32(float(raw) + bias_term[o]) with bias_term[o] = f32(bias[o] / S[o]) : fma(bias[o], bias_rcp, "
                 "float(raw)) rounded once, bias_rcp = f32(1/(double)S); y = f32(yf * M[o]); output = clamp(rne(y) + output_zero_point, relu ? output_zero_point : 0, 255), "
                 "rne(y) = INT32_MIN if |y| >= 2^31 (qref csrc/qref/fbgemm/requant.h)"),
    )
    meta = dict(format=FORMAT, version=VERSION, name=name or os.path.basename(os.path.normpath(str(path))),
                qref_version=__version__, conv=conv, fbgemm=fb, quantization=quant, arrays=index,
                bin_header=BIN_HEADER)
    with open(os.path.join(path, "case.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    lines = [f"{k} {int(v)}" for k, v in (("N", N), ("C", C), ("H", H), ("W", W), ("O", O), ("KH", KH),
                                          ("KW", KW), ("OH", OH), ("OW", OW))]
    lines += [f"stride_h {case.stride[0]}", f"stride_w {case.stride[1]}", f"pad_h {case.padding[0]}",
              f"pad_w {case.padding[1]}", f"dilation_h {case.dilation[0]}", f"dilation_w {case.dilation[1]}",
              f"groups {case.groups}", f"per_channel {int(case.per_channel)}", f"relu {int(case.relu)}",
              f"has_bias {int(case.bias is not None)}", f"saturate {int(case.saturates)}",
              f"input_scale {f32_hex(case.input_scale)}", f"input_zero_point {case.input_zero_point}",
              f"output_scale {f32_hex(case.output_scale)}", f"output_zero_point {case.output_zero_point}",
              f"weight_scale_count {len(case.weight_scale)}"]
    with open(os.path.join(path, "params.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


@dataclass(frozen=True, eq=False)
class GoldenCase:
    """A golden case read back by ``load_case``: ``meta`` (case.json) and ``arrays`` in torch
    layouts (NCHW input/output/acc/raw/y, OIHW weight), whichever files they came from."""

    meta: dict
    arrays: dict
    source: str

    def conv_kwargs(self, isa: Optional[str] = None) -> dict:
        """Arguments for ``qref.conv2d`` (and ``qref.compare``) that recompute the case; isa
        defaults to a named ISA with the recorded saturation, so it is host-independent."""
        c, q, a = self.meta["conv"], self.meta["quantization"], self.arrays
        pc = c["per_channel"]
        ws = a["weight_scale"].astype(np.float64)
        wz = a["weight_zero_point"].astype(np.int32)
        return dict(input=a["input"], weight=a["weight"], bias=a.get("bias"), stride=tuple(c["stride"]),
                    padding=tuple(c["padding"]), dilation=tuple(c["dilation"]), groups=c["groups"],
                    input_scale=q["input_scale"]["value"], input_zero_point=q["input_zero_point"],
                    weight_scale=ws if pc else float(ws[0]), weight_zero_point=wz if pc else int(wz[0]),
                    output_scale=q["output_scale"]["value"], output_zero_point=q["output_zero_point"],
                    relu=c["relu"], isa=isa or self.meta["fbgemm"]["isa_for_verify"])

    @property
    def output(self) -> np.ndarray:
        return self.arrays["output"]

    def verify(self, isa: Optional[str] = None):
        """Recompute with qref and compare with the stored output (a ``qref.Comparison``)."""
        return compare(self.output, **self.conv_kwargs(isa))


def load_case(path: str, source: str = "npz") -> GoldenCase:
    """Read a case written by ``export`` from its npz (``source="npz"``) or its raw binaries
    (``source="bin"``, SHA-256 checked against case.json)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_case: path has type {type(path).__name__} (must be the folder export wrote, or a file "
                        f"in it)")
    check_choice("load_case", "source", source, ("npz", "bin"))
    path = os.fspath(path)
    if os.path.isfile(path):
        path = os.path.dirname(path)
    if not os.path.isfile(os.path.join(path, "case.json")):
        raise FileNotFoundError(f"load_case: {os.path.join(path, 'case.json')} does not exist (path must be the "
                                f"folder export wrote)")
    with open(os.path.join(path, "case.json")) as f:
        try:
            meta = json.load(f)
        except ValueError as e:
            raise ValueError(f"load_case: {path}/case.json is not valid JSON ({e})") from None
    if not hasattr(meta, "get"):  # a JSON list or scalar
        raise ValueError(f"load_case: {path}/case.json is not a {FORMAT} file (not a JSON object)")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"load_case: {path}/case.json is not a {FORMAT} v{VERSION} file "
                         f"(format={meta.get('format')!r}, version={meta.get('version')!r})")
    arrays = {}
    if source == "npz":
        with np.load(os.path.join(path, "case.npz"), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    elif source == "bin":
        for k, info in meta["arrays"].items():
            a = read_bin(os.path.join(path, info["bin"]))
            digest = hashlib.sha256(a.astype(a.dtype.newbyteorder("<")).tobytes()).hexdigest()
            if digest != info["sha256"]:
                raise ValueError(f"load_case: {info['bin']} does not match the SHA-256 recorded in case.json")
            if info["bin_layout"] == "NHWC":
                a = _nchw(a)
            elif info["bin_layout"] == "OHWI":
                a = np.ascontiguousarray(a.transpose(0, 3, 1, 2))
            arrays[k] = a
        # the float64 scales given to export (the binaries hold their float32 rounding, which is all
        # fbgemm uses) come back from the json
        arrays["weight_scale"] = np.array([d["value"] for d in meta["quantization"]["weight_scale"]], np.float64)
    else:
        raise ValueError(f"load_case: source={source!r} is not valid (valid: 'npz', 'bin')")
    return GoldenCase(meta, arrays, source)


# ----------------------------------------------------------------------------- command line


def _ints(s: str, n: int) -> tuple:
    v = tuple(int(t) for t in s.split(","))
    if len(v) == 1:
        v = v * n
    if len(v) != n:
        raise argparse.ArgumentTypeError(f"expected {n} comma-separated integers, got {s!r}")
    return v


def random_case(seed: int = 0, shape=(1, 16, 8, 8), out_channels: int = 16, kernel=(3, 3), stride=(1, 1),
                padding=(1, 1), dilation=(1, 1), groups: int = 1, per_channel: bool = True,
                input_zero_point: Optional[int] = None, weight_zero_point: int = 0, relu: bool = False,
                bias: bool = True, isa: str = "auto") -> dict:
    """Deterministic random conv arguments (for ``qref export`` and tests); full-range activations
    and weights, so int16 pair saturation and every rounding stage are exercised."""
    rng = np.random.default_rng(seed)
    N, C, H, W = shape
    O = out_channels
    x = rng.integers(0, 256, (N, C, H, W), dtype=np.uint8)
    w = rng.integers(-128, 128, (O, C // groups, kernel[0], kernel[1]), dtype=np.int8)
    a_s = float(np.float32(rng.uniform(0.005, 0.05)))
    if per_channel:
        ws: Any = rng.uniform(0.0005, 0.01, O).astype(np.float32).astype(np.float64)
        wz: Any = np.full(O, weight_zero_point, np.int32)
    else:
        ws, wz = float(np.float32(rng.uniform(0.0005, 0.01))), int(weight_zero_point)
    K = kernel[0] * kernel[1] * (C // groups)
    typical = float(np.sqrt(K) * 128 * 74 * a_s * float(np.median(ws)))
    o_s = float(np.float32(typical / rng.uniform(20, 60)))
    b = (rng.normal(0, 1, O) * typical).astype(np.float32) if bias else None
    a_zp = int(rng.integers(0, 256)) if input_zero_point is None else int(input_zero_point)
    return dict(input=x, weight=w, bias=b, stride=stride, padding=padding, dilation=dilation, groups=groups,
                input_scale=a_s, input_zero_point=a_zp, weight_scale=ws, weight_zero_point=wz, output_scale=o_s,
                output_zero_point=int(rng.integers(0, 256)), relu=relu, isa=isa)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``qref export DIR [options]``: write a random golden case (the CLI calls this)."""
    p = argparse.ArgumentParser(prog="qref export", description="Write a golden conv2d test case (random "
                                "operands, expected output computed by qref) for C / RTL / Python testbenches.")
    p.add_argument("dir", help="output directory (created)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shape", type=lambda s: _ints(s, 4), default=(1, 16, 8, 8), help="input N,C,H,W")
    p.add_argument("--out-channels", type=int, default=16)
    p.add_argument("--kernel", type=lambda s: _ints(s, 2), default=(3, 3), help="KH[,KW]")
    p.add_argument("--stride", type=lambda s: _ints(s, 2), default=(1, 1))
    p.add_argument("--padding", type=lambda s: _ints(s, 2), default=(1, 1))
    p.add_argument("--dilation", type=lambda s: _ints(s, 2), default=(1, 1))
    p.add_argument("--groups", type=int, default=1)
    p.add_argument("--per-tensor", action="store_true", help="per-tensor weight scale (default per-channel)")
    p.add_argument("--input-zero-point", type=int, default=None, help="default: random")
    p.add_argument("--weight-zero-point", type=int, default=0)
    p.add_argument("--relu", action="store_true")
    p.add_argument("--no-bias", action="store_true")
    p.add_argument("--isa", choices=("auto", "avx2", "vnni"), default="auto")
    p.add_argument("--no-intermediates", action="store_true")
    p.add_argument("--no-memh", action="store_true", help="skip the $readmemh files")
    a = p.parse_args(argv)
    kw = random_case(a.seed, a.shape, a.out_channels, a.kernel, a.stride, a.padding, a.dilation, a.groups,
                     not a.per_tensor, a.input_zero_point, a.weight_zero_point, a.relu, not a.no_bias, a.isa)
    try:
        export(a.dir, intermediates=not a.no_intermediates, rtl=not a.no_memh, **kw)
    except (ValueError, TypeError) as e:
        print(f"qref export: {e}", file=sys.stderr)
        return 2
    c = load_case(a.dir)
    fb = c.meta["fbgemm"]
    print(f"wrote {a.dir}: {c.meta['conv']['N']}x{c.meta['conv']['C']}x{c.meta['conv']['H']}x"
          f"{c.meta['conv']['W']} -> {tuple(c.output.shape)}, fbgemm {fb['path']} path, "
          f"{'int16-saturating pairs' if fb['saturate'] else 'exact products'} (isa {fb['isa']})")
    print(f"files: case.json case.npz params.txt bin/*.bin{'' if a.no_memh else ' memh/*.memh'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
