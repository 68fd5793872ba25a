"""Fusion passes: fold BatchNormalization, biases, scales and padding into the layers that can
absorb them, so the saved model is the smallest exact graph."""

from optc.passes.fusion import act, affine, fold_bn  # noqa: F401

#: every fusion, in the order that lets one run reach a fixed point
FUSE = "fold-bn,fuse-scale,fuse-bias,fuse-act"
