"""The engines: one subpackage per runtime whose arithmetic qref reproduces.

Each engine package holds its plans (which kernel family runs a shape, and its arithmetic) and the
calls into the C++ core on operands the public layer functions (qref.layers) have already
validated and routed (qref.routing). Engines import only qref.common, qref.routing and the core,
never each other and never a layer above; the import contract in pyproject.toml checks it.

Adding an engine (aten, mlas, qnnpack, ...): create ``qref/engines/<name>/`` with its plan and run
functions, add it to the engines' independence contract and to the engine layer of
``[tool.importlinter]`` in pyproject.toml, teach qref.routing when torch sends a layer there, and
call it from the layer functions in qref.layers.
"""
