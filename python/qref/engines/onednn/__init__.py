"""torch's "x86"/"onednn" engines where they run oneDNN: conv2d (``conv2d``: kernel classes, plans,
prepared convs), Conv3d and transposed convs (``nd``), linear (``linear``: the matmul), and the
oneDNN implementation names qref follows (``kernel_names``)."""
