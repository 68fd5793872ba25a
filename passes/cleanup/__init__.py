"""Cleanup passes: constant folding, dead code, no-op elimination, CSE, and friends."""

from optc.passes.cleanup import constants, cse, dce, dedup, fold, freeze, identity, noop  # noqa: F401

#: the lossless cleanup set, in the order that lets one run reach a fixed point
CLEANUP = ("freeze-initializers,constant-to-initializer,fold-constants,eliminate-identity,"
           "eliminate-noop,dedup-initializers,cse,dce")
