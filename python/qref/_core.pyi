"""Type stubs of qref._core, the compiled core (csrc/bindings/: module.cc registers the common,
fbgemm, oneDNN and ATen bindings). Generated with pybind11-stubgen (PyPI) from the built module:
    pybind11-stubgen qref._core -o <dir>
and checked by tests/test_stubs.py (every _core name is here, with its parameter names).
"""
from __future__ import annotations

import collections.abc
import typing

import numpy
import numpy.typing

__all__: list[str] = ['OnednnConv2d', 'PreparedConv2d', 'aten_adaptive_avg_pool_nchw', 'aten_adaptive_avg_pool_nhwc', 'aten_add_scalar', 'aten_avg_pool2d_nchw', 'aten_avg_pool_nhwc', 'aten_batch_norm_nhwc', 'aten_binary', 'aten_cat_nhwc', 'aten_clamp', 'aten_dequantize_per_channel', 'aten_dequantize_per_tensor', 'aten_linear_dynamic', 'aten_max_pool2d', 'aten_mean_inner', 'aten_mul_scalar', 'aten_normalize', 'aten_prelu', 'aten_quantize_per_channel', 'aten_quantize_per_tensor', 'aten_sleef_expf', 'aten_softmax_lastdim', 'aten_unary', 'aten_vec_math', 'aten_upsample_bilinear2d', 'aten_upsample_nearest2d', 'channels_transpose', 'compiled_kernels', 'conv2d_nhwc', 'conv2d_prepare', 'conv2d_run', 'conv2d_run_into', 'conv_nd_ndhwc', 'conv_nd_path', 'conv_path', 'cpu_features', 'default_threads', 'kernels', 'onednn_conv2d_nhwc', 'onednn_conv2d_prepare', 'onednn_conv_nd_ndhwc', 'onednn_conv_transpose2d_nhwc', 'onednn_requant_steps', 'onednn_scales', 'onednn_set_dw_vnni', 'onednn_set_simd', 'prepared_output_shape', 'quantize', 'requant_params']
class PreparedConv:
    """
    A conv2d with its weights packed once (conv2d_prepare, onednn_conv2d_prepare); run it with conv2d_run.
    """
    @property
    def input_shape_nhwc(self) -> tuple[int, int, int, int]:
        ...
    @property
    def packed_bytes(self) -> int:
        ...
class PreparedConv2d(PreparedConv):
    @property
    def kernel(self) -> str:
        ...
    @property
    def scratch_bytes_per_thread(self) -> int:
        ...
class OnednnConv2d(PreparedConv):
    @property
    def route(self) -> str:
        ...
def aten_adaptive_avg_pool_nchw(x: numpy.ndarray, od: typing.SupportsInt | typing.SupportsIndex, oh: typing.SupportsInt | typing.SupportsIndex, ow: typing.SupportsInt | typing.SupportsIndex) -> numpy.ndarray:
    ...
def aten_adaptive_avg_pool_nhwc(x: numpy.ndarray, od: typing.SupportsInt | typing.SupportsIndex, oh: typing.SupportsInt | typing.SupportsIndex, ow: typing.SupportsInt | typing.SupportsIndex, si: typing.SupportsFloat | typing.SupportsIndex, zi: typing.SupportsInt | typing.SupportsIndex, so: typing.SupportsFloat | typing.SupportsIndex, zo: typing.SupportsInt | typing.SupportsIndex, cap: typing.SupportsInt | typing.SupportsIndex) -> numpy.ndarray:
    ...
def aten_add_scalar(x: numpy.ndarray, scale: typing.SupportsFloat | typing.SupportsIndex, zp: typing.SupportsInt | typing.SupportsIndex, c: typing.SupportsFloat | typing.SupportsIndex, relu: bool, cap: typing.SupportsInt | typing.SupportsIndex, threads: typing.SupportsInt | typing.SupportsIndex) -> tuple[numpy.ndarray, float, int]:
    ...
def aten_avg_pool2d_nchw(x: numpy.ndarray, oh: typing.SupportsInt | typing.SupportsIndex, ow: typing.SupportsInt | typing.SupportsIndex, kh: typing.SupportsInt | typing.SupportsIndex, kw: typing.SupportsInt | typing.SupportsIndex, sh: typing.SupportsInt | typing.SupportsIndex, sw: typing.SupportsInt | typing.SupportsIndex, ph: typing.SupportsInt | typing.SupportsIndex, pw: typing.SupportsInt | typing.SupportsIndex, cip: bool, divisor: typing.SupportsInt | typing.SupportsIndex, si: typing.SupportsFloat | typing.SupportsIndex, zi: typing.SupportsInt | typing.SupportsIndex, so: typing.SupportsFloat | typing.SupportsIndex, zo: typing.SupportsInt | typing.SupportsIndex) -> numpy.ndarray:
    ...
def aten_avg_pool_nhwc(x: numpy.ndarray, osz: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], k: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], s: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], p: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], cip: bool, divisor: typing.SupportsInt | typing.SupportsIndex, si: typing.SupportsFloat | typing.SupportsIndex, zi: typing.SupportsInt | typing.SupportsIndex, so: typing.SupportsFloat | typing.SupportsIndex, zo: typing.SupportsInt | typing.SupportsIndex, cap: typing.SupportsInt | typing.SupportsIndex) -> numpy.ndarray:
    ...
def aten_batch_norm_nhwc(x: numpy.ndarray, weight: typing.Any, bias: typing.Any, mean: numpy.ndarray, var: numpy.ndarray, eps: typing.SupportsFloat | typing.SupportsIndex, si: typing.SupportsFloat | typing.SupportsIndex, zi: typing.SupportsInt | typing.SupportsIndex, so: typing.SupportsFloat | typing.SupportsIndex, zo: typing.SupportsInt | typing.SupportsIndex, relu: bool, cap: typing.SupportsInt | typing.SupportsIndex) -> numpy.ndarray:
    ...
def aten_binary(op: typing.SupportsInt | typing.SupportsIndex, a: numpy.ndarray, b: numpy.ndarray, sa: typing.SupportsFloat | typing.SupportsIndex, za: typing.SupportsInt | typing.SupportsIndex, sb: typing.SupportsFloat | typing.SupportsIndex, zb: typing.SupportsInt | typing.SupportsIndex, so: typing.SupportsFloat | typing.SupportsIndex, zo: typing.SupportsInt | typing.SupportsIndex, cap: typing.SupportsInt | typing.SupportsIndex, threads: typing.SupportsInt | typing.SupportsIndex, simd: bool = True) -> numpy.ndarray:
    ...
def aten_cat_nhwc(xs: collections.abc.Sequence[numpy.ndarray], scale: typing.SupportsFloat | typing.SupportsIndex, zp: typing.SupportsInt | typing.SupportsIndex, scales: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], zps: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], relu: bool, cap: typing.SupportsInt | typing.SupportsIndex) -> numpy.ndarray:
    ...
def aten_clamp(x: numpy.ndarray, scale: typing.SupportsFloat | typing.SupportsIndex, zp: typing.SupportsInt | typing.SupportsIndex, lo: typing.Any, hi: typing.Any) -> numpy.ndarray:
    ...
def aten_dequantize_per_channel(q: numpy.ndarray, outer: typing.SupportsInt | typing.SupportsIndex, channels: typing.SupportsInt | typing.SupportsIndex, inner: typing.SupportsInt | typing.SupportsIndex, scales: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], zps: typing.Annotated[numpy.typing.ArrayLike, numpy.int64]) -> numpy.typing.NDArray[numpy.float32]:
    ...
def aten_dequantize_per_tensor(q: numpy.ndarray, scale: typing.SupportsFloat | typing.SupportsIndex, zp: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float32]:
    ...
def aten_linear_dynamic(x: numpy.ndarray, w: numpy.ndarray, w_scales: numpy.ndarray, w_zps: numpy.ndarray, bias: typing.Any, reduce_range: bool, relu: bool) -> tuple:
    ...
def aten_max_pool2d(x: numpy.ndarray, oh: typing.SupportsInt | typing.SupportsIndex, ow: typing.SupportsInt | typing.SupportsIndex, kh: typing.SupportsInt | typing.SupportsIndex, kw: typing.SupportsInt | typing.SupportsIndex, sh: typing.SupportsInt | typing.SupportsIndex, sw: typing.SupportsInt | typing.SupportsIndex, ph: typing.SupportsInt | typing.SupportsIndex, pw: typing.SupportsInt | typing.SupportsIndex, dh: typing.SupportsInt | typing.SupportsIndex, dw: typing.SupportsInt | typing.SupportsIndex) -> numpy.ndarray:
    ...
def aten_mean_inner(x: numpy.ndarray, outer: typing.SupportsInt | typing.SupportsIndex, inner: typing.SupportsInt | typing.SupportsIndex) -> numpy.ndarray:
    ...
def aten_mul_scalar(x: numpy.ndarray, scale: typing.SupportsFloat | typing.SupportsIndex, zp: typing.SupportsInt | typing.SupportsIndex, c: typing.SupportsFloat | typing.SupportsIndex, relu: bool) -> tuple[numpy.ndarray, float, int]:
    ...
def aten_normalize(x: numpy.ndarray, M: typing.SupportsInt | typing.SupportsIndex, N: typing.SupportsInt | typing.SupportsIndex, gamma: typing.Any, beta: typing.Any, per_channel: bool, num_channels: typing.SupportsInt | typing.SupportsIndex, num_groups: typing.SupportsInt | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, xs: typing.SupportsFloat | typing.SupportsIndex, xz: typing.SupportsInt | typing.SupportsIndex, ys: typing.SupportsFloat | typing.SupportsIndex, yz: typing.SupportsInt | typing.SupportsIndex, cap: typing.SupportsInt | typing.SupportsIndex) -> numpy.ndarray:
    ...
def aten_prelu(x: numpy.ndarray, outer: typing.SupportsInt | typing.SupportsIndex, channels: typing.SupportsInt | typing.SupportsIndex, inner: typing.SupportsInt | typing.SupportsIndex, w: numpy.ndarray, si: typing.SupportsFloat | typing.SupportsIndex, zi: typing.SupportsInt | typing.SupportsIndex, sw: typing.SupportsFloat | typing.SupportsIndex, zw: typing.SupportsInt | typing.SupportsIndex, so: typing.SupportsFloat | typing.SupportsIndex, zo: typing.SupportsInt | typing.SupportsIndex) -> numpy.ndarray:
    ...
def aten_quantize_per_channel(x: numpy.ndarray, outer: typing.SupportsInt | typing.SupportsIndex, channels: typing.SupportsInt | typing.SupportsIndex, inner: typing.SupportsInt | typing.SupportsIndex, scales: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], zps: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], s8: bool) -> numpy.ndarray:
    ...
def aten_quantize_per_tensor(x: numpy.ndarray, scale: typing.SupportsFloat | typing.SupportsIndex, zp: typing.SupportsInt | typing.SupportsIndex, s8: bool, threads: typing.SupportsInt | typing.SupportsIndex) -> numpy.ndarray:
    ...
def aten_sleef_expf(x: numpy.ndarray) -> numpy.typing.NDArray[numpy.float32]:
    ...
def aten_softmax_lastdim(x: numpy.ndarray, si: typing.SupportsFloat | typing.SupportsIndex, zi: typing.SupportsInt | typing.SupportsIndex, so: typing.SupportsFloat | typing.SupportsIndex, zo: typing.SupportsInt | typing.SupportsIndex, cap: typing.SupportsInt | typing.SupportsIndex) -> numpy.ndarray:
    ...
def aten_unary(op: typing.SupportsInt | typing.SupportsIndex, x: numpy.ndarray, si: typing.SupportsFloat | typing.SupportsIndex, zi: typing.SupportsInt | typing.SupportsIndex, so: typing.SupportsFloat | typing.SupportsIndex, zo: typing.SupportsInt | typing.SupportsIndex, param0: typing.SupportsFloat | typing.SupportsIndex, param1: typing.SupportsFloat | typing.SupportsIndex, cap: typing.SupportsInt | typing.SupportsIndex, threads: typing.SupportsInt | typing.SupportsIndex, param2: typing.SupportsFloat | typing.SupportsIndex = 0.0, scalar_only: bool = False) -> numpy.ndarray:
    ...
def aten_vec_math(x: numpy.ndarray, fn: str) -> numpy.typing.NDArray[numpy.float32]:
    ...
def aten_upsample_bilinear2d(x: numpy.ndarray, oh: typing.SupportsInt | typing.SupportsIndex, ow: typing.SupportsInt | typing.SupportsIndex, align_corners: bool, sh: typing.SupportsFloat | typing.SupportsIndex, sw: typing.SupportsFloat | typing.SupportsIndex, si: typing.SupportsFloat | typing.SupportsIndex, zi: typing.SupportsInt | typing.SupportsIndex, so: typing.SupportsFloat | typing.SupportsIndex, zo: typing.SupportsInt | typing.SupportsIndex, contracted: bool) -> numpy.ndarray:
    ...
def aten_upsample_nearest2d(x: numpy.ndarray, oh: typing.SupportsInt | typing.SupportsIndex, ow: typing.SupportsInt | typing.SupportsIndex, sh: typing.SupportsFloat | typing.SupportsIndex, sw: typing.SupportsFloat | typing.SupportsIndex) -> numpy.ndarray:
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
# --- the layer functions' prepared-weight cache (csrc/bindings/layout.cc)
def bytes_equal(a: numpy.ndarray, b: numpy.ndarray) -> bool:
    """
    Whether two C-contiguous arrays hold the same bytes (memcmp).
    """
def bytes_equal_at(address: typing.SupportsInt | typing.SupportsIndex, nbytes: typing.SupportsInt | typing.SupportsIndex, b: numpy.ndarray) -> bool:
    """
    Whether nbytes of live memory at address equal a C-contiguous array's bytes (memcmp).
    """
# --- mlas: ONNX Runtime's MLAS int8 arithmetic (csrc/bindings/mlas.cc, docs/onnxruntime.md)
def mlas_requantize_output(acc: numpy.ndarray, bias: typing.Any, scale: numpy.ndarray, zero_point: typing.SupportsInt, out_s8: bool) -> numpy.ndarray:
    ...
def mlas_qgemm(a: numpy.ndarray, a_zero_point: typing.SupportsInt, bt: numpy.ndarray, b_zero_point: numpy.ndarray, host: typing.SupportsInt) -> numpy.typing.NDArray[numpy.int32]:
    ...
def mlas_conv2d_int32(x_nhwc: numpy.ndarray, x_zero_point: typing.SupportsInt, w: numpy.ndarray, w_zero_point: typing.SupportsInt, groups: typing.SupportsInt, stride_h: typing.SupportsInt, stride_w: typing.SupportsInt, pad_top: typing.SupportsInt, pad_left: typing.SupportsInt, pad_bottom: typing.SupportsInt, pad_right: typing.SupportsInt, dil_h: typing.SupportsInt, dil_w: typing.SupportsInt, host: typing.SupportsInt) -> numpy.typing.NDArray[numpy.int32]:
    ...
def mlas_quantize_linear(x: numpy.ndarray, scale: typing.SupportsFloat, zero_point: typing.SupportsInt, out_s8: bool) -> numpy.ndarray:
    ...
def mlas_dequantize_linear(x: numpy.ndarray, scale: numpy.ndarray, zero_point: numpy.ndarray, inner: typing.SupportsInt) -> numpy.typing.NDArray[numpy.float32]:
    ...
def mlas_qlinear_binary(op: typing.SupportsInt, a: numpy.ndarray, sa: typing.SupportsFloat, za: typing.SupportsInt, b: numpy.ndarray, sb: typing.SupportsFloat, zb: typing.SupportsInt, sc: typing.SupportsFloat, zc: typing.SupportsInt) -> numpy.ndarray:
    ...
def mlas_lookup_table(kind: typing.SupportsInt, alpha: typing.SupportsFloat, sx: typing.SupportsFloat, zx: typing.SupportsInt, sy: typing.SupportsFloat, zy: typing.SupportsInt, s8: bool) -> numpy.typing.NDArray[numpy.uint8]:
    ...
def mlas_logistic(x: numpy.ndarray) -> numpy.typing.NDArray[numpy.float32]:
    ...
def mlas_global_average_pool(x: numpy.ndarray, batch: typing.SupportsInt, channels: typing.SupportsInt, image: typing.SupportsInt, channels_last: bool, sx: typing.SupportsFloat, zx: typing.SupportsInt, sy: typing.SupportsFloat, zy: typing.SupportsInt) -> numpy.ndarray:
    ...
def mlas_average_pool2d(x: numpy.ndarray, channels_last: bool, KH: typing.SupportsInt, KW: typing.SupportsInt, stride_h: typing.SupportsInt, stride_w: typing.SupportsInt, pad_top: typing.SupportsInt, pad_left: typing.SupportsInt, OH: typing.SupportsInt, OW: typing.SupportsInt, count_include_pad: bool, sx: typing.SupportsFloat, zx: typing.SupportsInt, sy: typing.SupportsFloat, zy: typing.SupportsInt) -> numpy.ndarray:
    ...
def mlas_dynamic_qparams(x: numpy.ndarray) -> tuple:
    ...
def mlas_scale_bias_output(acc: numpy.ndarray, scale: numpy.ndarray, bias: typing.Any) -> numpy.typing.NDArray[numpy.float32]:
    ...
# ---- torch.compile's PT2E int8 program (csrc/bindings/pt2e.cc)
def pt2e_postops(A: numpy.ndarray, wscale: numpy.ndarray, bias: numpy.ndarray | None, other: numpy.ndarray | None, src_scale: typing.SupportsFloat, combined: bool, sum_scale: typing.SupportsFloat, sum_zp: typing.SupportsInt, eltwise: str, alpha: typing.SupportsFloat, beta: typing.SupportsFloat, out_dtype: str, out_scale: typing.SupportsFloat, out_zp: typing.SupportsInt, impl: str = 'avx512', sum_fma: bool = False) -> numpy.ndarray:
    """
    oneDNN's post-op chain (PT2E int8 ops) over the compensated sums A[M][O]; impl: the oneDNN kernel's eltwise ('avx512' or 'avx2' JIT injector; 'ref_matmul' or 'ref_conv' reference primitive), sum_fma fuses a sum scale other than 1 into the add (AVX2 gemm)
    """
def inductor_quantize(x: numpy.ndarray, scale: typing.SupportsFloat, zero_point: typing.SupportsInt, quant_min: typing.SupportsInt, quant_max: typing.SupportsInt) -> numpy.typing.NDArray[numpy.uint8]:
    """
    inductor's generated quantize_per_tensor (float32 -> uint8)
    """
def inductor_dequantize(q: numpy.ndarray, scale: typing.SupportsFloat, zero_point: typing.SupportsInt) -> numpy.typing.NDArray[numpy.float32]:
    """
    inductor's generated dequantize_per_tensor (uint8 -> float32)
    """
def inductor_sum_rows(x: numpy.ndarray, lanes: typing.SupportsInt) -> numpy.typing.NDArray[numpy.float32]:
    """
    inductor's vectorized horizontal sum of each row of x[rows][n] (float32) with `lanes` lanes
    """
def inductor_sum_strided(x: numpy.ndarray) -> numpy.typing.NDArray[numpy.float32]:
    """
    inductor's vertical sum over axis 1 of x[outer][n][inner] (float32): sequential per output
    """
def inductor_welford_rows(x: numpy.ndarray, lanes: typing.SupportsInt) -> tuple:
    """
    inductor's vectorized Welford of each row of x[rows][n] (float32): (mean, m2)
    """
# --- torch's QNNPACK engine (csrc/bindings/qnnpack.cc)
def qnnpack_add(a: numpy.ndarray, b: numpy.ndarray, a_scale: typing.SupportsFloat | typing.SupportsIndex, a_zero_point: typing.SupportsInt | typing.SupportsIndex, b_scale: typing.SupportsFloat | typing.SupportsIndex, b_zero_point: typing.SupportsInt | typing.SupportsIndex, output_scale: typing.SupportsFloat | typing.SupportsIndex, output_zero_point: typing.SupportsInt | typing.SupportsIndex, relu: bool) -> numpy.typing.NDArray[numpy.uint8]:
    """
    QNNPACK's fixed-point quantized add of two uint8 arrays (flat result).
    """
def qnnpack_add_params(a_scale: typing.SupportsFloat | typing.SupportsIndex, a_zero_point: typing.SupportsInt | typing.SupportsIndex, b_scale: typing.SupportsFloat | typing.SupportsIndex, b_zero_point: typing.SupportsInt | typing.SupportsIndex, output_scale: typing.SupportsFloat | typing.SupportsIndex, output_zero_point: typing.SupportsInt | typing.SupportsIndex, relu: bool) -> dict:
    """
    QNNPACK's add constants: ratios, multipliers, shift, zero-point product.
    """
def qnnpack_conv2d(input: numpy.ndarray, weight: numpy.ndarray, weight_scale: numpy.ndarray, weight_zero_point: numpy.ndarray, bias: typing.Any, input_scale: typing.SupportsFloat | typing.SupportsIndex, input_zero_point: typing.SupportsInt | typing.SupportsIndex, output_scale: typing.SupportsFloat | typing.SupportsIndex, output_zero_point: typing.SupportsInt | typing.SupportsIndex, relu: bool, stride: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], padding: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], dilation: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], groups: typing.SupportsInt | typing.SupportsIndex, return_intermediates: bool) -> typing.Any:
    """
    QNNPACK's quantized conv2d on NCHW uint8 / OIHW int8 arrays: uint8 (N, O, OH, OW), or with return_intermediates (out, acc, y, bias_q, scales).
    """
def qnnpack_linear(input: numpy.ndarray, weight: numpy.ndarray, weight_scale: numpy.ndarray, weight_zero_point: numpy.ndarray, bias: typing.Any, input_scale: typing.SupportsFloat | typing.SupportsIndex, input_zero_point: typing.SupportsInt | typing.SupportsIndex, output_scale: typing.SupportsFloat | typing.SupportsIndex, output_zero_point: typing.SupportsInt | typing.SupportsIndex, relu: bool, return_intermediates: bool) -> typing.Any:
    """
    QNNPACK's quantized linear on (M, K) uint8 / (N, K) int8 arrays.
    """
def qnnpack_lut(kind: typing.SupportsInt | typing.SupportsIndex, input_scale: typing.SupportsFloat | typing.SupportsIndex, input_zero_point: typing.SupportsInt | typing.SupportsIndex, output_scale: typing.SupportsFloat | typing.SupportsIndex, output_zero_point: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.uint8]:
    """
    QNNPACK's 256-entry table for sigmoid (0), tanh (1), hardsigmoid (2), hardswish (3).
    """
def qnnpack_lut_apply(input: numpy.ndarray, table: numpy.ndarray) -> numpy.typing.NDArray[numpy.uint8]:
    """
    table[input] for a uint8 array (flat result).
    """
