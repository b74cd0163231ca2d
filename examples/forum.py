"""The PyTorch-forum question "the result of quantized conv2d is different from the result I
calculate", answered with qref.

The model as posted: QuantStub -> Conv2d(1, 1, 1) -> DeQuantStub, HistogramObserver
(reduce_range=True) activations, PerChannelMinMaxObserver symmetric qint8 weights, engine
"fbgemm", input arange(64)/255 as (1, 1, 4, 16) (here also the calibration data). The seed fixes
torch's random initial weight and bias.

Run: python examples/forum.py        (needs torch; `qref demo` prints the same and more)
"""

import warnings

import numpy as np
import torch
import torch.ao.quantization as tq
import torch.nn as nn

import qref

warnings.filterwarnings("ignore", message=r".*(deprecated|quantized tensor creation).*")


class CustomModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv1 = nn.Conv2d(in_channels=1, out_channels=1, kernel_size=1, stride=1)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.conv1(self.quant(x)))


torch.manual_seed(128)
torch.backends.quantized.engine = "fbgemm"
net = CustomModel().eval()
net.qconfig = tq.QConfig(
    activation=tq.HistogramObserver.with_args(dtype=torch.quint8, qscheme=torch.per_tensor_affine,
                                              reduce_range=True),
    weight=tq.PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                                 reduce_range=False),
)
tq.prepare(net, inplace=True)
x = torch.arange(0, 64).view(4, 16).to(torch.uint8).unsqueeze(0).unsqueeze(0) / 255
net(x)  # calibrate
tq.convert(net, inplace=True)
print(net)

# 1. qref reproduces torch's output, every element
qx = net.quant(x)
torch_out = net.conv1(qx).int_repr().numpy()
qref_out = qref.from_torch(net.conv1)(qx).int_repr().numpy()
print(f"\nqref == torch on {int((qref_out == torch_out).sum())}/{torch_out.size} elements")


# 2. the hand formula of the post, with the scales as print(net) shows them (4 digits) ...
def printed(v):
    s = str(torch.tensor([float(v)]))
    return float(s[s.index("[") + 1:s.index("]")])


def hand(s_in, s_w, s_out):
    q_in = qx.int_repr().numpy().astype(np.float64) - qx.q_zero_point()
    q_w = float(net.conv1.weight().int_repr().flatten()[0])
    bias = float(net.conv1.bias().detach()[0])
    y = (s_in * q_in * s_w * q_w + bias) / s_out
    return np.clip(np.rint(y) + net.conv1.zero_point, 0, 255).astype(np.int64)


scales = (qx.q_scale(), float(net.conv1.weight().q_per_channel_scales()[0]), net.conv1.scale)
by_hand = hand(*(printed(s) for s in scales))
by_hand_exact = hand(*scales)
print(f"scales as printed: {[printed(s) for s in scales]}; as torch holds them: {list(scales)}")
print(f"hand formula, printed scales: {int((by_hand != torch_out).sum())} of 64 elements differ from torch")
print(f"hand formula, exact scales:   {int((by_hand_exact != torch_out).sum())} of 64 elements differ from torch")
print("\n  index          torch  hand(printed)")
for idx in (tuple(int(v) for v in i) for i in np.argwhere(by_hand != torch_out)[:8]):
    print(f"  {str(idx):<14s} {int(torch_out[idx]):5d}  {int(by_hand[idx]):5d}")

# 3. ... and why, for the element where torch says 30 and the hand formula 31 (found, not assumed)
bad = [tuple(int(v) for v in i) for i in np.argwhere((torch_out == 30) & (by_hand == 31))]
idx = bad[0] if bad else tuple(int(v) for v in np.argwhere(by_hand != torch_out)[0])
print(f"\nqref.explain(net.conv1, qx, {idx}):\n")
print(qref.explain(net.conv1, qx, idx, layer="conv1"))
