"""Structured channel pruning: coupling analysis, importance, surgery, and the prune pass."""

from optc.passes.prune.prune import Prune  # noqa: F401
