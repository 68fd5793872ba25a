"""Structured channel pruning: coupling analysis, importance, surgery, and the prune pass."""

from optc.passes.prune.prune import Prune  # noqa: F401
from optc.passes.prune.sparsify import Sparsify  # noqa: F401
