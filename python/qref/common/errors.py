"""Exceptions shared by the layers."""


class OneDNNNotSupportedError(NotImplementedError):
    """The conv runs oneDNN's arithmetic in torch, which qref does not reproduce yet."""
