"""The PyTorch-forum question "the result of quantized conv2d is different from the result I
calculate", answered with qref.

The model as posted: QuantStub -> Conv2d(1, 1, 1) -> DeQuantStub, HistogramObserver
(reduce_range=True) activations, PerChannelMinMaxObserver symmetric qint8 weights, engine
"fbgemm", input arange(64)/255 as (1, 1, 4, 16) (here also the calibration data). The seed fixes
torch's random initial weight and bias. The model is built by ``qref.demo.forum_model`` (read it
there: the post's code, line for line), which ``qref demo`` and tests/test_forum.py use too.

Run: python examples/forum.py        (needs torch; `qref demo` prints the same and more)
"""

import warnings

import numpy as np
import torch

import qref
from qref.demo import forum_element, forum_hand_formula, forum_model, printed_scale

warnings.filterwarnings("ignore", message=r".*(deprecated|quantized tensor creation).*")

torch.backends.quantized.engine = "fbgemm"
net, x = forum_model()
print(net)

# 1. qref reproduces torch's output, every element
qx = net.quant(x)
torch_out = net.conv1(qx).int_repr().numpy()
qref_out = qref.from_torch(net.conv1)(qx).int_repr().numpy()
print(f"\nqref == torch on {int((qref_out == torch_out).sum())}/{torch_out.size} elements")

# 2. the hand formula of the post, with the scales as print(net) shows them (4 digits) ...
scales = (qx.q_scale(), float(net.conv1.weight().q_per_channel_scales()[0]), net.conv1.scale)
by_hand = forum_hand_formula(net, x, printed=True)
by_hand_exact = forum_hand_formula(net, x, printed=False)
print(f"scales as printed: {[printed_scale(s) for s in scales]}; as torch holds them: {list(scales)}")
print(f"hand formula, printed scales: {int((by_hand != torch_out).sum())} of 64 elements differ from torch")
print(f"hand formula, exact scales:   {int((by_hand_exact != torch_out).sum())} of 64 elements differ from torch")
print("\n  index          torch  hand(printed)")
for idx in (tuple(int(v) for v in i) for i in np.argwhere(by_hand != torch_out)[:8]):
    print(f"  {str(idx):<14s} {int(torch_out[idx]):5d}  {int(by_hand[idx]):5d}")

# 3. ... and why, for the element where torch says 30 and the hand formula 31 (found, not assumed)
idx = forum_element(net, x)
print(f"\nqref.explain(net.conv1, qx, {idx}):\n")
print(qref.explain(net.conv1, qx, idx, layer="conv1"))
