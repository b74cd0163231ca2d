"""The bottom layer: what every other layer shares and nothing in it depends on a layer above.

- ``validate``: argument checks at the API boundary, one message template;
- ``operands``: the activation / weight / bias / output-quantization operands of every layer;
- ``layout``: integer views of quantized tensors, channels-last conversions, output wrapping;
- ``isa``: fbgemm's ISA semantics (``isa="auto"``, "avx2", "vnni"); ``onednn_isa``: oneDNN's CPU
  class; ``kernels``: which qref kernel runs;
- ``fp``: exact float32 helpers; ``errors``: exceptions shared by the layers.
"""
