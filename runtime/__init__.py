"""optc.runtime: optc's own executor (NumPy + C kernels).

Not built yet: the executor, its kernels and ``InferenceSession`` are the subject of the
runtime issue. Until then optc validates everything in onnxruntime, and this package exists so
that ``optc.runtime`` is reserved in the installed layout.
"""
