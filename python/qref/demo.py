"""The models behind ``qref demo``, ``examples/forum.py`` and the tests.

- ``forum_model()``: the PyTorch-forum scenario ("the result of quantized conv2d is different
  from the result I calculate"): QuantStub -> Conv2d(1, 1, 1) -> DeQuantStub, HistogramObserver
  (reduce_range=True) activations, PerChannelMinMaxObserver symmetric qint8 weights, engine
  "fbgemm", calibrated on and fed ``arange(64)/255`` as (1, 1, 4, 16). The conv's initial weight
  and bias are torch's random init under a fixed seed.
- ``demo_model()``: a small multi-layer model that touches every fbgemm conv path (im2col,
  depthwise, pointwise, groupwise) with fused ReLUs, quantized with full-range activations (the
  x86 default qconfig's ``reduce_range=False``) so that AVX2 hosts saturate int16 pairs.
- ``resnet(stages, ...)``: a float ResNet-style network (basic or bottleneck blocks) in torchvision's
  layout; ``residual_model()`` is a small one, quantized (demo section 4).
- ``runtimes_model()``: a small conv / depthwise / pointwise / Linear network for the cross-runtime
  report (``qref.runtimes``, demo section 5), where torch fbgemm, qnnpack and ONNX Runtime give
  different bytes for the same integer parameters.

torch is imported inside the functions: ``import qref`` needs numpy only.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from typing import Any

import numpy as np

FORUM_SEED = 128
DEMO_SEED = 0


@contextlib.contextmanager
def quantized_engine(name: str):
    """Run a block under ``torch.backends.quantized.engine = name`` and restore it after."""
    import torch

    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = prev


@contextlib.contextmanager
def quiet_torch_quantization():
    """Silence torch's deprecation notices about eager-mode quantization (by message), so the
    demo's output is the answer, not the warnings."""
    with warnings.catch_warnings():
        for msg in (r".*torch\.ao\.quantization is deprecated.*", r".*reduce_range will be deprecated.*",
                    r".*quantized tensor creation functions.*", r".*are deprecated and will be removed.*"):
            warnings.filterwarnings("ignore", message=msg)
        yield


def forum_input() -> Any:
    """``arange(64)/255`` as (1, 1, 4, 16), built as the post does."""
    import torch

    return torch.arange(0, 64).view(4, 16).to(torch.uint8).unsqueeze(0).unsqueeze(0) / 255


def forum_model(seed: int = FORUM_SEED) -> tuple:
    """(converted model, float input): the forum model built as posted, under engine "fbgemm"."""
    import torch
    import torch.ao.quantization as tq
    import torch.nn as nn

    class CustomModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.quant = tq.QuantStub()
            self.conv1 = nn.Conv2d(in_channels=1, out_channels=1, kernel_size=1, stride=1)
            self.dequant = tq.DeQuantStub()

        def forward(self, x):
            return self.dequant(self.conv1(self.quant(x)))

    with quantized_engine("fbgemm"), quiet_torch_quantization():
        torch.manual_seed(seed)
        net = CustomModel().eval()
        net.qconfig = tq.QConfig(  # type: ignore[assignment]
            activation=tq.HistogramObserver.with_args(dtype=torch.quint8, qscheme=torch.per_tensor_affine,
                                                      reduce_range=True),
            weight=tq.PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                                         reduce_range=False),
        )
        tq.prepare(net, inplace=True)
        x = forum_input()
        with torch.no_grad():
            net(x)  # calibrate on the input itself
        tq.convert(net, inplace=True)
    return net, x


def printed_scale(v: float) -> float:
    """A scale as torch prints it (``print(model)`` shows ``scale=tensor([0.0019])``; a
    4-decimal reading of the conv's scale): torch's own tensor formatting, parsed back."""
    import torch

    s = str(torch.tensor([float(v)]))
    m = re.search(r"\[(.*?)\]", s)
    if m is None:
        raise ValueError(f"printed_scale: unexpected tensor formatting {s!r}")
    return float(m.group(1))


def forum_hand_formula(net: Any, x: Any, printed: bool = True) -> np.ndarray:
    """The post's hand computation for every element: real-number formula
    ``round((s_in*q_in * s_w*q_w + bias) / s_out) + zp_out`` with the printed scales
    (or the exact ones with ``printed=False``), in float64."""
    qx = net.quant(x)
    w = net.conv1.weight()
    f = printed_scale if printed else (lambda v: float(v))
    s_in = f(qx.q_scale())
    s_w = f(float(w.q_per_channel_scales()[0]))
    s_out = f(net.conv1.scale)
    q_in = qx.int_repr().numpy().astype(np.float64) - qx.q_zero_point()
    q_w = float(w.int_repr().flatten()[0])
    b = float(net.conv1.bias().detach()[0])
    y = (s_in * q_in * s_w * q_w + b) / s_out
    return np.clip(np.rint(y) + net.conv1.zero_point, 0, 255).astype(np.uint8)


def forum_element(net: Any, x: Any) -> tuple:
    """The output index (n, c, h, w) where the post's hand formula (printed scales) disagrees with
    torch: the first where torch says 30 and the hand formula 31 if there is one (the post's
    numbers), else the first disagreement. Found by computing both, never hard-coded."""
    with quiet_torch_quantization():
        torch_out = net.conv1(net.quant(x)).int_repr().numpy()
    hand = forum_hand_formula(net, x)
    bad = np.argwhere(hand != torch_out)
    if len(bad) == 0:
        raise RuntimeError("the printed-scale hand formula agrees with torch on every element")
    for idx in bad:
        if torch_out[tuple(idx)] == 30 and hand[tuple(idx)] == 31:
            return tuple(int(v) for v in idx)
    return tuple(int(v) for v in bad[0])


def _convert_eager(cls: Any, fuse: list, *, engine: str, seed: int, size: int, reduce_range: bool) -> tuple:
    """Build ``cls()``, fuse ``fuse``, calibrate on one seeded (1, 3, size, size) input with per-tensor
    activations and per-channel weights, convert under ``engine``; (converted model, that input)."""
    import torch
    import torch.ao.quantization as tq

    with quantized_engine(engine), quiet_torch_quantization():
        torch.manual_seed(seed)
        net = cls().eval()
        tq.fuse_modules(net, fuse, inplace=True)
        net.qconfig = tq.QConfig(  # type: ignore[assignment]
            activation=tq.MinMaxObserver.with_args(dtype=torch.quint8, qscheme=torch.per_tensor_affine,
                                                   reduce_range=reduce_range),
            weight=tq.default_per_channel_weight_observer,
        )
        tq.prepare(net, inplace=True)
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(1, 3, size, size, generator=g)
        with torch.no_grad():
            net(x)
        tq.convert(net, inplace=True)
    return net, x


def demo_model(seed: int = DEMO_SEED, size: int = 224, reduce_range: bool = False, engine: str = "fbgemm") -> tuple:
    """(converted model, float input (1, 3, size, size)): a MobileNet-like stem with every
    fbgemm conv path, converted under ``engine`` ("fbgemm"; "x86", torch's default, packs it for
    oneDNN on an AVX512-VNNI host), with full-range activations (or 7-bit ones with
    ``reduce_range=True``, as fbgemm's default qconfig does)."""
    import torch.ao.quantization as tq
    import torch.nn as nn

    class Stem(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.quant = tq.QuantStub()
            self.conv1 = nn.Conv2d(3, 16, 3, stride=2, padding=1)  # im2col (C = 3)
            self.relu1 = nn.ReLU()
            self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)  # depthwise 3x3
            self.relu2 = nn.ReLU()
            self.pw = nn.Conv2d(16, 32, 1)  # pointwise 1x1
            self.relu3 = nn.ReLU()
            self.gconv = nn.Conv2d(32, 32, 3, padding=1, groups=8)  # groupwise, 4 channels per group
            self.relu4 = nn.ReLU()
            self.conv5 = nn.Conv2d(32, 64, 3, stride=2, padding=1)  # im2col, K = 288
            self.dequant = tq.DeQuantStub()

        def forward(self, x):
            x = self.quant(x)
            x = self.relu1(self.conv1(x))
            x = self.relu2(self.dw(x))
            x = self.relu3(self.pw(x))
            x = self.relu4(self.gconv(x))
            return self.dequant(self.conv5(x))

    return _convert_eager(Stem, [["conv1", "relu1"], ["dw", "relu2"], ["pw", "relu3"], ["gconv", "relu4"]],
                          engine=engine, seed=seed, size=size, reduce_range=reduce_range)


def resnet(stages: Any, *, stem: int = 16, stem_kernel: int = 3, stem_stride: int = 1, bottleneck: bool = False,
           classes: int = 10) -> Any:
    """A float ResNet-style network (torch.nn, torchvision's layout and module names, written here):
    conv-BN-ReLU stem (``stem`` channels, ``stem_kernel`` square, ``stem_stride``, "same" padding), max
    pool 3x3 s2, then per ``(width, blocks, stride)`` of ``stages`` a ``layerN`` Sequential of blocks,
    average pool, Linear to ``classes``. A block is basic (two 3x3 convs) or, with ``bottleneck=True``,
    1x1 -> 3x3 -> 1x1 with 4x expansion; every conv has a BN and no bias; a strided 1x1 conv + BN
    downsample where the shape changes; the residual add and ReLU go through a FloatFunctional
    ``skip.add_relu`` and QuantStub/DeQuantStub wrap the net (eager quantization). ``net.fuse()`` fuses every
    conv-BN(-ReLU) in place. ResNet-50 is ``resnet([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)],
    stem=64, stem_kernel=7, stem_stride=2, bottleneck=True, classes=1000)``."""
    import torch
    import torch.ao.quantization as tq
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self, cin: int, width: int, stride: int) -> None:
            super().__init__()
            convs = ([(cin, width, 1, 1), (width, width, 3, stride), (width, 4 * width, 1, 1)] if bottleneck
                     else [(cin, width, 3, stride), (width, width, 3, 1)])
            self.n = len(convs)
            self.cout = convs[-1][1]
            for i, (ci, co, k, st) in enumerate(convs, 1):
                setattr(self, f"conv{i}", nn.Conv2d(ci, co, k, st, k // 2, bias=False))
                setattr(self, f"bn{i}", nn.BatchNorm2d(co))
                if i < self.n:
                    setattr(self, f"relu{i}", nn.ReLU())
            self.down = (nn.Sequential(nn.Conv2d(cin, self.cout, 1, stride, bias=False), nn.BatchNorm2d(self.cout))
                         if stride != 1 or cin != self.cout else None)
            self.skip = nn.quantized.FloatFunctional()

        def forward(self, x):
            idn = x if self.down is None else self.down(x)
            y = x
            for i in range(1, self.n + 1):
                y = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(y))
                if i < self.n:
                    y = getattr(self, f"relu{i}")(y)
            return self.skip.add_relu(y, idn)

        def fuse(self) -> None:
            tq.fuse_modules(self, [[f"conv{i}", f"bn{i}", f"relu{i}"] for i in range(1, self.n)]
                            + [[f"conv{self.n}", f"bn{self.n}"]], inplace=True)
            if self.down is not None:
                tq.fuse_modules(self.down, [["0", "1"]], inplace=True)

    class ResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.quant = tq.QuantStub()
            self.conv1 = nn.Conv2d(3, stem, stem_kernel, stem_stride, stem_kernel // 2, bias=False)
            self.bn1 = nn.BatchNorm2d(stem)
            self.relu = nn.ReLU()
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            cin = stem
            for i, (width, n, stride) in enumerate(stages, 1):
                blocks = []
                for j in range(n):
                    blocks.append(Block(cin, width, stride if j == 0 else 1))
                    cin = blocks[-1].cout
                setattr(self, f"layer{i}", nn.Sequential(*blocks))
            self.stages = len(stages)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(cin, classes)
            self.dequant = tq.DeQuantStub()

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(self.quant(x)))))
            for i in range(1, self.stages + 1):
                x = getattr(self, f"layer{i}")(x)
            return self.dequant(self.fc(torch.flatten(self.avgpool(x), 1)))

        def fuse(self) -> None:
            tq.fuse_modules(self, [["conv1", "bn1", "relu"]], inplace=True)
            for m in self.modules():
                if isinstance(m, Block):
                    m.fuse()

    return ResNet()


def residual_model(seed: int = DEMO_SEED, size: int = 32, engine: str = "fbgemm") -> tuple:
    """(converted model, float input (1, 3, size, size)): a small ResNet-style network (``resnet``:
    conv-BN-ReLU stem, max pool, two basic blocks with a residual ``add_relu`` through FloatFunctional,
    the second with a strided 1x1 downsample, adaptive average pool, Linear), eager quantization under
    ``engine`` with torch's default qconfig. Its ops: quantize, conv (+ReLU), max_pool2d, add_relu,
    adaptive_avg_pool2d, linear, dequantize — every one verified by ``qref.check``."""
    import torch
    import torch.ao.quantization as tq

    with quantized_engine(engine), quiet_torch_quantization():
        torch.manual_seed(seed)
        net = resnet([(16, 1, 1), (32, 1, 2)]).eval()
        net.fuse()
        net.qconfig = tq.get_default_qconfig(engine)
        tq.prepare(net, inplace=True)
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(1, 3, size, size, generator=g)
        with torch.no_grad():
            net(torch.rand(1, 3, size, size, generator=g))
        tq.convert(net, inplace=True)
    return net, x


def runtimes_model(seed: int = DEMO_SEED, size: int = 32) -> tuple:
    """(converted model, float input (1, 3, size, size)) for ``qref.runtimes``: conv 3x3 (+ReLU),
    depthwise 3x3 (+ReLU), pointwise 1x1, conv 3x3, global average pool, Linear; per-channel weights
    and full-range activations, converted under "fbgemm". Its layers show every cause the report
    names: int16 pair saturation on AVX2 hosts (fbgemm and ONNX Runtime), the int32 bias of qnnpack
    and ONNX Runtime, oneDNN's requantization (the x86 column's depthwise conv)."""
    import torch
    import torch.ao.quantization as tq
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.quant = tq.QuantStub()
            self.conv1 = nn.Conv2d(3, 16, 3, stride=2, padding=1)
            self.relu1 = nn.ReLU()
            self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
            self.relu2 = nn.ReLU()
            self.pw = nn.Conv2d(16, 32, 1)
            self.conv4 = nn.Conv2d(32, 32, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(32, 10)
            self.dequant = tq.DeQuantStub()

        def forward(self, x):
            x = self.relu1(self.conv1(self.quant(x)))
            x = self.conv4(self.pw(self.relu2(self.dw(x))))
            return self.dequant(self.fc(torch.flatten(self.pool(x), 1)))

    return _convert_eager(Net, [["conv1", "relu1"], ["dw", "relu2"]], engine="fbgemm", seed=seed, size=size,
                          reduce_range=False)
