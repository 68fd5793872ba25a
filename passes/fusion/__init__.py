"""Fusion passes: fold BatchNormalization, biases, scales and padding into the layers that can
absorb them, so the saved model is the smallest exact graph."""

from optc.passes.fusion import (  # noqa: F401
    act, affine, fold_bn, layout, pad, preprocess)

#: every fusion, in the order that lets one run reach a fixed point
FUSE = "fuse-pad,fuse-layout,fold-bn,fuse-scale,fuse-bias,fuse-layout,fold-preprocess,fuse-act"
