"""optc's passes (installed as ``optc.passes``). Importing this package registers them all.

One module (or small package) per pass family; each pass module's docstring says when the pass
fires, the math, and what it does not handle.
"""

from optc.pass_base import PRESETS
from optc.passes.cleanup import CLEANUP
from optc.passes.cleanup.constants import ConstantToInitializer
from optc.passes.cleanup.cse import CSE
from optc.passes.cleanup.dce import DCE
from optc.passes.cleanup.dedup import DedupInitializers
from optc.passes.cleanup.fold import FoldConstants
from optc.passes.cleanup.freeze import FreezeInitializers
from optc.passes.cleanup.identity import EliminateIdentity
from optc.passes.cleanup.noop import EliminateNoop

PRESETS["cleanup"] = CLEANUP
#: the lossless default: cleanup plus every fusion. When the fusion passes arrive, run them
#: before dedup-initializers/cse: sharing a weight between two convs (dedup) blocks folding a
#: BatchNormalization into either of them.
PRESETS["default"] = "cleanup"

__all__ = ["CSE", "DCE", "ConstantToInitializer", "DedupInitializers", "EliminateIdentity",
           "EliminateNoop", "FoldConstants", "FreezeInitializers"]
