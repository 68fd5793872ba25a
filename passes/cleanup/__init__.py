"""Cleanup passes: constant folding, dead code, no-op elimination, CSE, and friends."""

from optc.passes.cleanup import constants, cse, dce, dedup, fold, freeze, identity, noop  # noqa: F401

#: cleanup that exposes fusions (constants folded, no-ops and dead readers gone) ...
CLEANUP_BEFORE = ("freeze-initializers,constant-to-initializer,fold-constants,"
                  "eliminate-identity,eliminate-noop,dce")
#: ... and cleanup that must come after them: sharing a weight between two layers (dedup)
#: blocks folding a BatchNormalization into either of them
CLEANUP_AFTER = "dedup-initializers,cse,dce"
#: the lossless cleanup set, in the order that lets one run reach a fixed point
CLEANUP = f"{CLEANUP_BEFORE},{CLEANUP_AFTER}"
