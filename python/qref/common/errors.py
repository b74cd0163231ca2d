"""Exceptions shared by the layers."""


class OneDNNNotSupportedError(NotImplementedError):
    """The conv runs oneDNN's arithmetic in torch, which qref does not reproduce yet."""


class UnsupportedOpError(NotImplementedError):
    """An op on quantized tensors that qref does not reproduce (qref.run, qref.mode)."""
