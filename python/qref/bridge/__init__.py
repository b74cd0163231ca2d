"""The torch readers: integer parameters out of torch's quantized modules (qref.from_torch) and
which oneDNN kernel torch runs for a module (oneDNN's verbose log).

- ``modules``: Conv2dParams and what every module reader shares (weight quantization, whose engine
  packed the weights, UnsupportedModuleError);
- ``layers``: the params of Linear, Conv1d, Conv3d and the transposed convs;
- ``from_torch``: qref.from_torch, dispatching to the two;
- ``onednn_verbose``: oneDNN's verbose log, read through torch.
"""
