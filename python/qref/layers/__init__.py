"""The public layer functions: validate (qref.common), route (qref.routing), run (qref.engines).

``conv2d``: qref.conv2d, qref.quantize; ``conv_nd``: qref.conv1d, qref.conv3d,
qref.conv_transpose1d/2d/3d; ``linear``: qref.linear; ``defects``: qref.known_torch_defect.
"""
