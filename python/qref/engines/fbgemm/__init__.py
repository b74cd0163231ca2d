"""torch's fbgemm engine: conv2d (``conv2d``), Conv3d and transposed convs (``conv_nd``) and linear
(``linear``): paths, int16 pair saturation and the calls into the C++ core."""
