"""Cleanup passes: constant folding, dead code, no-op elimination, CSE, and friends."""

from optc.passes.cleanup import (  # noqa: F401
    constants, cse, dce, dedup, fold, freeze, identity, noop, opset)

#: cleanup that exposes fusions (constants folded, no-ops, duplicates and dead readers gone) ...
CLEANUP_BEFORE = ("freeze-initializers,constant-to-initializer,fold-constants,"
                  "eliminate-identity,eliminate-noop,cse,dce")
#: ... and cleanup that must come after them: sharing a weight between two layers (dedup)
#: blocks folding a BatchNormalization into either of them; cse again for nodes that became
#: equal once their constants were shared
CLEANUP_AFTER = "dedup-initializers,cse,dce"
#: the lossless cleanup set
CLEANUP = ("freeze-initializers,constant-to-initializer,fold-constants,eliminate-identity,"
           "eliminate-noop,dedup-initializers,cse,dce")
