"""Type stubs of qref._core, the compiled core (csrc/bindings/: module.cc registers the common,
fbgemm and oneDNN bindings). Generated with pybind11-stubgen (PyPI) from the built module:
    pybind11-stubgen qref._core -o <dir>
and checked by tests/test_stubs.py (every _core name is here, with its parameter names).
"""
from __future__ import annotations

import collections.abc
import typing

import numpy
import numpy.typing

__all__: list[str] = ['OnednnConv2d', 'PreparedConv2d', 'channels_transpose', 'compiled_kernels', 'conv2d_nhwc', 'conv2d_prepare', 'conv2d_run', 'conv2d_run_into', 'conv_nd_ndhwc', 'conv_nd_path', 'conv_path', 'cpu_features', 'default_threads', 'kernels', 'onednn_conv2d_nhwc', 'onednn_conv2d_prepare', 'onednn_conv_nd_ndhwc', 'onednn_conv_transpose2d_nhwc', 'onednn_requant_steps', 'onednn_scales', 'onednn_set_dw_vnni', 'onednn_set_simd', 'prepared_output_shape', 'quantize', 'requant_params']
class PreparedConv2d:
    @property
    def input_shape_nhwc(self) -> tuple[int, int, int, int]:
        ...
    @property
    def kernel(self) -> str:
        ...
    @property
    def packed_bytes(self) -> int:
        ...
    @property
    def scratch_bytes_per_thread(self) -> int:
        ...
class OnednnConv2d:
    @property
    def input_shape_nhwc(self) -> tuple[int, int, int, int]:
        ...
    @property
    def packed_bytes(self) -> int:
        ...
    @property
    def route(self) -> str:
        ...
def channels_transpose(a: numpy.ndarray, to_last: bool) -> numpy.ndarray:
    ...
def compiled_kernels() -> list:
    """
    Kernels compiled in.
    """
def conv2d_nhwc(input: numpy.ndarray, weight: numpy.ndarray, bias: typing.Any, stride: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], padding: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], dilation: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], groups: typing.SupportsInt | typing.SupportsIndex, input_scale: typing.SupportsFloat | typing.SupportsIndex, input_zero_point: typing.SupportsInt | typing.SupportsIndex, weight_scale: numpy.ndarray, weight_zero_point: numpy.ndarray, per_channel: bool, output_scale: typing.SupportsFloat | typing.SupportsIndex, output_zero_point: typing.SupportsInt | typing.SupportsIndex, relu: bool, saturate: bool, kernel: str, threads: typing.SupportsInt | typing.SupportsIndex, intermediates: bool = False) -> typing.Any:
    """
    Low-level conv2d on NHWC uint8 input and OHWI int8 weight; see qref.conv2d.
    """
def conv2d_prepare(input: numpy.ndarray, weight: numpy.ndarray, bias: typing.Any, stride: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], padding: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], dilation: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], groups: typing.SupportsInt | typing.SupportsIndex, input_scale: typing.SupportsFloat | typing.SupportsIndex, input_zero_point: typing.SupportsInt | typing.SupportsIndex, weight_scale: numpy.ndarray, weight_zero_point: numpy.ndarray, per_channel: bool, output_scale: typing.SupportsFloat | typing.SupportsIndex, output_zero_point: typing.SupportsInt | typing.SupportsIndex, relu: bool, saturate: bool, kernel: str) -> PreparedConv2d:
    """
    Pack a conv2d's weights once for `kernel`; run with conv2d_run on inputs of input's shape.
    """
@typing.overload
def conv2d_run(prepared: PreparedConv2d, input: numpy.ndarray, threads: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.uint8]:
    """
    Run a prepared conv2d (conv2d_prepare or onednn_conv2d_prepare) on an NHWC uint8 input; returns the NHWC output.
    """
@typing.overload
def conv2d_run(prepared: OnednnConv2d, input: numpy.ndarray, threads: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.uint8]:
    """
    Run a prepared conv2d (conv2d_prepare or onednn_conv2d_prepare) on an NHWC uint8 input; returns the NHWC output.
    """
@typing.overload
def conv2d_run_into(prepared: PreparedConv2d, input: numpy.ndarray, out_address: typing.SupportsInt | typing.SupportsIndex, out_bytes: typing.SupportsInt | typing.SupportsIndex, threads: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Run a prepared conv2d (conv2d_prepare or onednn_conv2d_prepare) into NHWC memory at out_address (N*OH*OW*O bytes, kept alive by the caller).
    """
@typing.overload
def conv2d_run_into(prepared: OnednnConv2d, input: numpy.ndarray, out_address: typing.SupportsInt | typing.SupportsIndex, out_bytes: typing.SupportsInt | typing.SupportsIndex, threads: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Run a prepared conv2d (conv2d_prepare or onednn_conv2d_prepare) into NHWC memory at out_address (N*OH*OW*O bytes, kept alive by the caller).
    """
def conv_nd_ndhwc(input: numpy.ndarray, weight: numpy.ndarray, bias: typing.Any, stride: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], padding: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], dilation: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], output_padding: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], groups: typing.SupportsInt | typing.SupportsIndex, transposed: bool, spatial_dims: typing.SupportsInt | typing.SupportsIndex, input_scale: typing.SupportsFloat | typing.SupportsIndex, input_zero_point: typing.SupportsInt | typing.SupportsIndex, weight_scale: numpy.ndarray, weight_zero_point: numpy.ndarray, per_channel: bool, output_scale: typing.SupportsFloat | typing.SupportsIndex, output_zero_point: typing.SupportsInt | typing.SupportsIndex, relu: bool, path: str, saturate: bool, reproduce_defects: bool, threads: typing.SupportsInt | typing.SupportsIndex, intermediates: bool = False, kernel: str = 'scalar') -> typing.Any:
    """
    Low-level conv3d / transposed conv on NDHWC uint8 input and [O][kD][kH][kW][C/groups] int8 weight.
    """
def conv_nd_path(input_ndhwc_shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], weight_odhwi_shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], stride: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], padding: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], dilation: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], groups: typing.SupportsInt | typing.SupportsIndex, transposed: bool, spatial_dims: typing.SupportsInt | typing.SupportsIndex, avx512_host: bool) -> str:
    """
    Which fbgemm path (depthwise, groupwise, pointwise, direct, im2col) a 3D or transposed conv takes.
    """
def conv_path(input_nhwc_shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], weight_ohwi_shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], stride: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], padding: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], dilation: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], groups: typing.SupportsInt | typing.SupportsIndex, avx512_host: bool) -> str:
    """
    Which fbgemm conv path (depthwise, groupwise, pointwise, im2col) the shape takes.
    """
def cpu_features() -> dict:
    """
    CPU features qref and fbgemm look at.
    """
def default_threads() -> int:
    ...
def kernels() -> list:
    """
    Usable kernels, best first.
    """
def onednn_conv2d_nhwc(input: numpy.ndarray, weight: numpy.ndarray, bias: typing.Any, stride: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], padding: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], dilation: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], groups: typing.SupportsInt | typing.SupportsIndex, input_scale: typing.SupportsFloat | typing.SupportsIndex, input_zero_point: typing.SupportsInt | typing.SupportsIndex, weight_scale: numpy.ndarray, per_channel: bool, output_scale: typing.SupportsFloat | typing.SupportsIndex, output_zero_point: typing.SupportsInt | typing.SupportsIndex, relu: bool, saturate: bool, combined: bool, float_comp: bool, threads: typing.SupportsInt | typing.SupportsIndex, intermediates: bool = False, kw_major_pairs: bool = False, divide_dst: bool = False) -> typing.Any:
    """
    oneDNN int8 conv2d arithmetic on NHWC uint8 input and OHWI int8 weight; see qref.conv2d(engine=...).
    """
def onednn_conv2d_prepare(input: numpy.ndarray, weight: numpy.ndarray, bias: typing.Any, stride: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], padding: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], dilation: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], groups: typing.SupportsInt | typing.SupportsIndex, input_scale: typing.SupportsFloat | typing.SupportsIndex, input_zero_point: typing.SupportsInt | typing.SupportsIndex, weight_scale: numpy.ndarray, per_channel: bool, output_scale: typing.SupportsFloat | typing.SupportsIndex, output_zero_point: typing.SupportsInt | typing.SupportsIndex, relu: bool, saturate: bool, combined: bool, float_comp: bool, kw_major_pairs: bool = False, divide_dst: bool = False, weight_scale_reciprocal: bool = False) -> OnednnConv2d:
    """
    Pack a oneDNN-arithmetic conv2d's weights once for input's NHWC shape (the values of `input` are not read); run with conv2d_run. Same bytes as onednn_conv2d_nhwc.
    """
def onednn_conv_nd_ndhwc(input: numpy.ndarray, weight: numpy.ndarray, bias: typing.Any, stride: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], padding: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], dilation: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], output_shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], groups: typing.SupportsInt | typing.SupportsIndex, transposed: bool, input_scale: typing.SupportsFloat | typing.SupportsIndex, input_zero_point: typing.SupportsInt | typing.SupportsIndex, weight_scale: numpy.ndarray, per_channel: bool, output_scale: typing.SupportsFloat | typing.SupportsIndex, output_zero_point: typing.SupportsInt | typing.SupportsIndex, relu: bool, combined: bool, divide_dst: bool, compensation: str, threads: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.uint8]:
    """
    oneDNN's N-d reference loop (Conv3d, deconvolution; 2D as D = 1) on NDHWC uint8 input and [O][kD][kH][kW][C/groups] int8 weight in conv form, with the compensation chain 'int', 'float' (AMX) or 'ref_deconv' (ref_deconvolution's float round trip).
    """
def onednn_conv_transpose2d_nhwc(input: numpy.ndarray, weight: numpy.ndarray, bias: typing.Any, stride: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], padding: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], output_padding: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], dilation: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], groups: typing.SupportsInt | typing.SupportsIndex, input_scale: typing.SupportsFloat | typing.SupportsIndex, input_zero_point: typing.SupportsInt | typing.SupportsIndex, weight_scale: numpy.ndarray, per_channel: bool, output_scale: typing.SupportsFloat | typing.SupportsIndex, output_zero_point: typing.SupportsInt | typing.SupportsIndex, relu: bool, saturate: bool, combined: bool, float_comp: bool, threads: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    oneDNN int8 deconvolution arithmetic (transposed conv2d) on NHWC input; see qref.onednn.conv_transpose2d.
    """
def onednn_requant_steps(acc: typing.SupportsInt | typing.SupportsIndex, colsum: typing.SupportsInt | typing.SupportsIndex, input_zero_point: typing.SupportsInt | typing.SupportsIndex, float_compensation: bool, weight_scale: typing.SupportsFloat | typing.SupportsIndex, bias: typing.Any, input_scale: typing.SupportsFloat | typing.SupportsIndex, output_scale: typing.SupportsFloat | typing.SupportsIndex, output_zero_point: typing.SupportsInt | typing.SupportsIndex, relu: bool, combined: bool, divide_dst: bool) -> dict:
    """
    One output element through oneDNN's requantization from its int32 sums (acc, colsum over the real taps, wrapped to int32): every float32 step, as qref.explain shows them.
    """
def onednn_scales(input_scale: typing.SupportsFloat | typing.SupportsIndex, output_scale: typing.SupportsFloat | typing.SupportsIndex) -> tuple[float, float]:
    """
    (ss, inv): oneDNN's effective src scale and 1/dst scale as PyTorch and ideep build them.
    """
def onednn_set_dw_vnni(enabled: bool) -> None:
    """
    Tests only: False makes depthwise convs take the AVX512 tap-pair kernel on VNNI CPUs too.
    """
def onednn_set_simd(enabled: bool) -> None:
    """
    Tests only: False forces the portable oneDNN loops (the AVX512-VNNI core must give the same bytes).
    """
@typing.overload
def prepared_output_shape(prepared: PreparedConv2d) -> tuple[int, int, int, int]:
    """
    (N, OH, OW, O) of a prepared conv2d's NHWC output.
    """
@typing.overload
def prepared_output_shape(prepared: OnednnConv2d) -> tuple[int, int, int, int]:
    """
    (N, OH, OW, O) of a prepared conv2d's NHWC output.
    """
def quantize(x: numpy.ndarray, scale: typing.SupportsFloat | typing.SupportsIndex, zero_point: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.uint8]:
    ...
def requant_params(weight: numpy.ndarray, input_scale: typing.SupportsFloat | typing.SupportsIndex, input_zero_point: typing.SupportsInt | typing.SupportsIndex, weight_scale: numpy.ndarray, weight_zero_point: numpy.ndarray, per_channel: bool, output_scale: typing.SupportsFloat | typing.SupportsIndex, bias: typing.Any, groups: typing.SupportsInt | typing.SupportsIndex) -> dict:
    ...
