"""Campaigns that outgrow one machine: fuzzing a custom kernel (``qref.fuzz``) and checking a
model over a dataset (``qref.check_dataset``), in this process, in worker processes or on Ray.

Built on qref's public API only (``qref.conv2d``, ``qref.compare``, ``qref.check``); Ray is
imported only when a campaign runs with ``cluster="ray"`` or ``"ray://..."``.
"""

from .dataset import DatasetLayer, DatasetReport, check_dataset
from .fuzzer import FuzzFailure, FuzzReport, fuzz

__all__ = ["DatasetLayer", "DatasetReport", "FuzzFailure", "FuzzReport", "check_dataset", "fuzz"]
