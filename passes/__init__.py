"""optc's passes (installed as ``optc.passes``). Importing this package registers them all.

One module (or small package) per pass family; each pass module's docstring says when the pass
fires, the math, and what it does not handle.
"""

from optc.pass_base import PRESETS
from optc.passes.cleanup import CLEANUP, CLEANUP_AFTER, CLEANUP_BEFORE
from optc.passes.cleanup.constants import ConstantToInitializer
from optc.passes.cleanup.cse import CSE
from optc.passes.cleanup.dce import DCE
from optc.passes.cleanup.dedup import DedupInitializers
from optc.passes.cleanup.fold import FoldConstants
from optc.passes.cleanup.freeze import FreezeInitializers
from optc.passes.cleanup.identity import EliminateIdentity
from optc.passes.cleanup.noop import EliminateNoop
from optc.passes.cleanup.opset import ConvertOpset
from optc.passes.fusion import FUSE
from optc.passes.fusion.act import FuseActivation
from optc.passes.fusion.affine import FuseBias, FuseScale
from optc.passes.fusion.fold_bn import FoldBatchNorm
from optc.passes.fusion.pad import FusePad
from optc.passes.fusion.preprocess import FoldPreprocess
from optc.passes.lower import FFTLower, QLinear, Winograd
from optc.passes.prune import Prune, Sparsify
from optc.passes.quant import Equalize, Quantize
from optc.passes.fusion.layout import FuseLayout

PRESETS["cleanup"] = CLEANUP
PRESETS["fuse"] = FUSE
#: the lossless default: cleanup with every fusion in the middle of it
PRESETS["default"] = f"{CLEANUP_BEFORE},fuse,{CLEANUP_AFTER}"

__all__ = ["CSE", "ConstantToInitializer", "ConvertOpset", "DCE", "DedupInitializers", "EliminateIdentity",
           "EliminateNoop", "FoldBatchNorm", "FoldConstants",
           "FoldPreprocess", "FreezeInitializers",
           "FuseActivation", "FuseBias", "FusePad", "FuseScale", "FuseLayout", "Equalize",
           "FFTLower", "Prune", "QLinear", "Quantize", "Sparsify", "Winograd"]
