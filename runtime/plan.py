"""Plans: runs of a session's steps executed in one C call (_ckernels.run_plan), with no
per-node Python work between them.

After a session's first run, each step whose kernel has a plan hook (registry: ``plan``)
describes the C op it ran as a PlanOp. ``build`` turns every run of two or more such
consecutive steps into a Segment: the ops in one int64 table, the values that stay inside
the run in buffers the segment owns and reuses (a value's buffer serves a later one once its
last reader has run, as onnxruntime's memory planner does), and only the values read after
the run (or returned) allocated on each call. On a mobile net that work between the kernels
cost as much as the small layers: measured on PP-LCNet, 18 % of a run was in the
interpreter, cold in cache after each big layer.

A Segment runs only while its inputs keep the shapes, dtype and layout it was built for; it
says so (``run`` returns False) and the session runs its steps one by one and plans again.
Operand sizes are checked in C against each op's geometry before anything runs.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np


#: the op codes of runtime/csrc/ckernels.c (run_plan), its row width and operand slots
CONV, DEPTHWISE, AFFINE, MEANS, BINARY, POOL, WINOGRAD, CONCAT = 1, 2, 3, 4, 5, 6, 7, 8
COLS, BUFS = 32, 6
#: what Segment.run did
DONE, STALE, BUSY = "done", "stale", "busy"


@dataclass(frozen=True)
class PlanOp:
    """One step as a run_plan op: ``code``; ``operands``, the C op's inputs in its order
    (the output comes last, added by the segment): an int for the step's input at that
    position, an ndarray the op owns (packed filters), None for an absent one; ``ints`` and
    ``floats`` (the activation's two parameters); ``baked``, the step's input positions the
    op has read into arrays of its own (a conv's filters), which must then be constants."""

    code: int
    operands: tuple
    ints: tuple
    floats: tuple = (0.0, 0.0)
    baked: tuple = ()


def binary_op(mul: bool, a_shape: tuple, b_shape: tuple) -> PlanOp | None:
    """a * b (mul) or a + b of a step's inputs 0 and 1 as a plan's op, where one of them has
    the output's shape and the other that shape too, one value per row of its leading dims
    (an SE block's channel scale: (N, C, 1, 1) against (N, C, H, W)), or one value; None for
    other broadcasts. Either operand may be the wide one (the same sums: IEEE + and * are
    commutative)."""
    for x, s, xi, si in ((tuple(a_shape), tuple(b_shape), 0, 1),
                         (tuple(b_shape), tuple(a_shape), 1, 0)):
        try:
            if np.broadcast_shapes(x, s) != x:
                continue
        except ValueError:
            return None
        n = math.prod(x)
        if s == x:
            return PlanOp(BINARY, (xi, si), (int(mul), 0, 1, n))
        if math.prod(s) == 1:
            return PlanOp(BINARY, (xi, si), (int(mul), 2, 1, n))
        t = (1,) * (len(x) - len(s)) + s
        k = max(i + 1 for i, d in enumerate(t) if d != 1)
        if t[:k] == x[:k]:
            return PlanOp(BINARY, (xi, si), (int(mul), 1, math.prod(x[:k]), math.prod(x[k:])))
    return None


@dataclass
class Segment:
    """Steps ``first`` .. ``last`` (indices into the session's steps) as one run_plan call."""

    first: int
    last: int
    ops: np.ndarray = field(repr=False)  # int64 (n, COLS)
    floats: np.ndarray = field(repr=False)  # float32 (n, 2)
    # the call's buffers: the per-run entries None between runs, the rest fixed
    bufs: list = field(repr=False)
    inputs: list  # (buffer index, slot, shape) of each value read from the session's env
    outputs: list  # (buffer index, slot, shape) of each value the segment hands out
    release: list  # slots of values read from env whose last reader is in the segment
    rise: int  # the most bytes alive above the entry's, over the segment's steps
    net: int  # bytes alive after it less those before
    produced: int  # bytes of every value its steps produce
    arena: int = 0  # bytes of the buffers it owns
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def run(self, env: list, run_plan) -> str:
        """Fill env with the segment's outputs by ``run_plan`` (the C extension's, looked up
        by the caller: benchmarks switch builds): DONE; STALE (nothing done) where an input
        is not the float32 C-contiguous array of the shape it was planned for; BUSY where
        another thread is running it (its buffers are one run's)."""
        if not self.lock.acquire(blocking=False):
            return BUSY
        try:
            bufs = self.bufs
            for ix, s, shape in self.inputs:
                a = env[s]
                if a.__class__ is not np.ndarray or a.shape != shape or \
                        a.dtype != np.float32 or not a.flags.c_contiguous:
                    return STALE
                bufs[ix] = a
            for ix, s, shape in self.outputs:
                bufs[ix] = env[s] = np.empty(shape, np.float32)
            run_plan(self.ops, self.floats, bufs)
        finally:
            for ix, _, _ in self.inputs:
                bufs[ix] = None  # the caller's arrays are not the segment's to keep
            for ix, _, _ in self.outputs:
                bufs[ix] = None
            self.lock.release()
        for s in self.release:
            env[s] = None
        return DONE


def build(steps, records: dict, constants: dict, fixed: set, outputs: set,
          min_steps: int = 2) -> list:
    """The session's program: its steps, with each run of at least ``min_steps``
    consecutive planned steps replaced by a Segment. ``records``: step index -> (PlanOp,
    output shape, the shapes of the step's inputs) from a run, for the steps whose kernel
    planned them (one float32 output); ``constants``: slot -> array; ``fixed``: the constant
    slots no feed overrides; ``outputs``: the graph's output slots. A step whose baked inputs
    are not fixed is not planned."""
    planned = [i in records and all(steps[i].inputs[p] in fixed for p in records[i][0].baked)
               for i in range(len(steps))]
    last_read: dict[int, int] = {}
    for i, step in enumerate(steps):
        for s in step.inputs:
            if s >= 0:
                last_read[s] = i
    program: list = []
    i = 0
    while i < len(steps):
        j = i
        while j < len(steps) and planned[j]:
            j += 1
        if j - i >= min_steps:
            program.append(_segment(steps, records, i, j, constants, fixed, outputs, last_read))
        else:
            j = max(j, i + 1)
            program.extend(steps[i:j])
        i = j
    return program


def _segment(steps, records, first, end, constants, fixed, outputs, last_read) -> Segment:
    """Steps first .. end - 1 as a Segment."""
    bufs: list = []
    index: dict = {}  # slot, or id() of an array an op owns -> buffer index

    def buffer(key, array=None) -> int:
        if key not in index:
            index[key] = len(bufs)
            bufs.append(array)
        return index[key]

    made = {steps[i].outputs[0]: records[i][1] for i in range(first, end)}
    escaping = {s for s in made if s in outputs or last_read.get(s, -1) >= end}
    inputs, outs, release = [], [], []
    entry: dict[int, tuple] = {}  # slots read from env -> shape
    lives: dict[int, list] = {}  # an internal value's first and last step
    rows, floats = [], []
    live = rise = produced = 0
    for i in range(first, end):
        step, (op, shape, in_shapes) = steps[i], records[i]
        row = [op.code] + [-1] * BUFS
        for k, operand in enumerate(op.operands):
            if isinstance(operand, np.ndarray):
                row[1 + k] = buffer(id(operand), operand)
            elif operand is not None and operand < len(step.inputs) and \
                    step.inputs[operand] >= 0:
                s = step.inputs[operand]
                row[1 + k] = buffer(s, constants[s] if s in fixed else None)
                if s in lives:
                    lives[s][1] = i
                elif s not in made and s not in fixed and s not in entry:
                    entry[s] = in_shapes[operand]  # read from env on each run
                    inputs.append((index[s], s, in_shapes[operand]))
        y, n = step.outputs[0], math.prod(shape)
        row[1 + len(op.operands)] = buffer(y)
        if y in escaping:
            outs.append((index[y], y, shape))
        else:
            lives[y] = [i, i]
        rows.append(row + list(op.ints) + [0] * (COLS - 1 - BUFS - len(op.ints)))
        floats.append(op.floats)
        live += 4 * n
        produced += 4 * n
        rise = max(rise, live)
        for s in step.release:
            if s in made:
                live -= 4 * math.prod(made[s])
            elif s in entry:
                live -= 4 * math.prod(entry[s])
                release.append(s)
    views, arena = _arena({s: (math.prod(made[s]), *span) for s, span in lives.items()})
    for s, view in views.items():
        bufs[index[s]] = view
    return Segment(first, end - 1, np.array(rows, np.int64), np.array(floats, np.float32),
                   bufs, inputs, outs, release, rise, live, produced, arena)


#: floats an arena places its values at multiples of (a 64-byte cache line)
ALIGN = 16


def _arena(values: dict) -> tuple[dict, int]:
    """Views of one float32 array (and its bytes) for values of (floats, first step, last
    step), no two alive at one step overlapping: greedy by size (largest first, each at the
    lowest offset clear of the placed values alive with it), as TensorFlow Lite's arena
    planner does. DenseNet-121's segment: 7.7 MiB, where a pool of buffers freed and reused
    whole held 16.8 MiB (the session's peak of live activations, its input and outputs
    included: 6.9 MiB)."""
    placed: list[tuple[int, int, int, int]] = []  # offset, floats, first, last
    offsets = {}
    for s, (n, lo, hi) in sorted(values.items(), key=lambda kv: (-kv[1][0], kv[1][1])):
        n = -(-max(n, 1) // ALIGN) * ALIGN
        at = 0
        for off, size, _, _ in sorted(p for p in placed if p[2] <= hi and lo <= p[3]):
            if at + n <= off:
                break
            at = max(at, off + size)
        placed.append((at, n, lo, hi))
        offsets[s] = at
    if not placed:
        return {}, 0
    pool = np.empty(max(off + size for off, size, _, _ in placed) + ALIGN, np.float32)
    skew = (-pool.ctypes.data // 4) % ALIGN  # the first float on a cache line
    return {s: pool[skew + at:skew + at + values[s][0]] for s, at in offsets.items()}, \
        pool.nbytes
