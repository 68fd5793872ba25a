"""Channel coupling analysis: which channels of which layers must be pruned together.

Kept apart from the surgery (surgery.py), as Torch-Pruning keeps its dependency graph apart
from its pruning functions. The analysis walks the graph once, in order, and gives every
tensor that carries channels (axis 1 of an NCHW tensor, the features of a 2-D one) a *layout*:
the list of segments its channel axis is made of, each a range of one *source*'s channels (a
source is a layer that creates channels: Conv, ConvTranspose, Gemm, MatMul with a constant
weight). A Concat's output layout is its inputs' layouts end to end; Flatten/GlobalAveragePool
-> Flatten into a Gemm maps each channel to a block of H*W features.

Sources whose channels meet index for index -- the operands of a residual Add/Sub/Mul/Div/Max/
Min, an SE block's Mul back onto the channels -- are merged (union-find) into one *group*:
a group is pruned with one set of kept indices. What reads a layout is recorded for the
surgery: *consumers* (the next layers: their input channels are sliced; a grouped conv's in
equal numbers per group, so a group feeding or made by one is pruned in ``chunks`` equal
parts, the same count from each), *per-channel
parameters* (BatchNormalization's four vectors, PRelu slopes, per-channel constants of
element-wise ops), and *depthwise* convs (group == channels, one filter per channel: channels
go straight through them; their weights are sliced and their group count follows).

Split and Slice on the channel axis give each output a range of the input's layout (their
sizes and bounds are rewritten by the surgery; a part never loses all its channels).
A group is *blocked*, with the reason kept for the report, when pruning it could change what
the model computes or cannot be expressed: its channels reach a graph output, meet a graph
input or another unanalysed tensor in an element-wise op, meet part of another layer's
channels, reach a grouped conv that reads several layers' channels, a Reshape/Transpose
that mixes the channel axis, a strided Slice or a Pad of the channel axis, or any op the
analysis does not know. A MatMul whose output is not 2-D (a transformer's (batch, tokens,
features) projections: channels on the last axis) is blocked: channel axes other than 1 are
not followed.

A channel shuffle (Reshape to (N, t, C/t, H, W), Transpose (0, 2, 1, 3, 4), Reshape back:
ShuffleNet) of one layer's channels permutes its layout: position k * t + i holds channel
i * (C/t) + k. It stays a shuffle after pruning only if the layer keeps the same offsets k in
each of its t chunks (the group is *tied*: whole columns of the t x C/t matrix go), and its
reshape targets are rewritten. A grouped conv reading the shuffled channels gets whole
columns per group when C/t splits evenly among its groups; the group is then pruned in
t * groups equal chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from optc.ir import Graph, Node, Value
from optc.passes._common import is_standard
from optc.passes.channels import layer_weight, out_axis

#: ops whose output has the channels of their first input, index for index
PASS_THROUGH = ("Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
                "Elu", "Selu", "Softplus", "Softsign", "Identity", "Dropout", "MaxPool",
                "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "Resize",
                "Upsample", "Cast", "Neg", "Abs", "Exp", "Log", "Sqrt", "Reciprocal", "Erf",
                "Gelu", "Mish", "Floor", "Ceil", "Round", "Sign", "Not")
ELEMENTWISE = ("Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Pow", "PRelu")
LAYERS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass
class Segment:
    source: int | None  # index into Coupling.sources; None: channels no group owns (kept)
    start: int
    length: int


@dataclass
class Layout:
    segments: list[Segment]
    inner: int = 1  # features per channel after a Flatten (H * W)

    @property
    def channels(self) -> int:
        return sum(s.length for s in self.segments)

    def sub(self, a: int, b: int) -> Layout:
        """The layout of channels [a, b) of this one."""
        out, offset = [], 0
        for s in self.segments:
            lo, hi = max(a, offset), min(b, offset + s.length)
            if lo < hi:
                out.append(Segment(s.source, s.start + lo - offset, hi - lo))
            offset += s.length
        return Layout(out, self.inner)


@dataclass
class Source:
    node: Node
    size: int


@dataclass
class Coupling:
    sources: list[Source] = field(default_factory=list)
    parent: list[int] = field(default_factory=list)
    blocked: dict[int, list[str]] = field(default_factory=dict)  # root -> reasons
    #: (layer, its input's layout) for each layer whose input channels follow some group
    consumers: list[tuple[Node, Layout]] = field(default_factory=list)
    #: (node, input index, layout, channel axis of the constant)
    params: list[tuple[Node, int, Layout, int]] = field(default_factory=list)
    depthwise: list[tuple[Node, Layout]] = field(default_factory=list)
    #: Split nodes on the channel axis, with each output's layout
    splits: list[tuple[Node, list[Layout]]] = field(default_factory=list)
    #: Slice nodes on the channel axis: (node, input layout, start, end) in input positions
    slices: list[tuple[Node, Layout, int, int]] = field(default_factory=list)
    #: Reshape-to-(N, features) nodes whose target spells the feature count out
    reshapes: list[tuple[Node, Layout]] = field(default_factory=list)
    layouts: dict[int, Layout] = field(default_factory=dict)  # id(value) -> layout
    #: root -> group counts of the grouped convs its channels feed or come from
    groups_of: dict[int, set[int]] = field(default_factory=dict)
    #: root -> t: its channels, cut in t equal chunks, must keep the same offsets in every
    #: chunk (a channel shuffle reads them as t rows of a matrix it transposes)
    tied_of: dict[int, int] = field(default_factory=dict)
    #: channel shuffles: (first Reshape, last Reshape, groups, input layout)
    shuffles: list[tuple[Node, Node, int, Layout]] = field(default_factory=list)
    #: id(shuffled layout) -> (the source it permutes, the shuffle's groups)
    shuffled: dict[int, tuple[int, int]] = field(default_factory=dict)

    # --- union-find over sources ------------------------------------------------------------
    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            self.blocked.setdefault(ra, []).extend(self.blocked.pop(rb, []))
            self.groups_of.setdefault(ra, set()).update(self.groups_of.pop(rb, set()))
            ties = {self.tied_of.pop(r) for r in (ra, rb) if r in self.tied_of}
            if len(ties) > 1:
                self.blocked.setdefault(ra, []).append("two channel shuffles of different "
                                                       "group counts")
            elif ties:
                self.tied_of[ra] = ties.pop()

    def require_multiple(self, source: int, group: int) -> None:
        """The group of ``source`` feeds (or is) a conv with ``group`` groups: its channels
        must be removed in equal numbers from each of ``group`` equal chunks."""
        self.groups_of.setdefault(self.find(source), set()).add(group)

    def chunks(self, root: int) -> int:
        """How many equal chunks the group's channels are pruned in (1: no constraint)."""
        import math

        gs = self.groups_of.get(self.find(root), set())
        return math.lcm(*gs) if gs else 1

    def tied(self, root: int) -> int:
        """In how many equal chunks the group must keep the same offsets (1: no constraint)."""
        return self.tied_of.get(self.find(root), 1)

    def block(self, layout: Layout | None, reason: str) -> None:
        if layout is None:
            return
        for s in layout.segments:
            if s.source is not None:
                reasons = self.blocked.setdefault(self.find(s.source), [])
                if reason not in reasons:
                    reasons.append(reason)

    def groups(self) -> dict[int, list[int]]:
        """root -> the sources pruned together."""
        out: dict[int, list[int]] = {}
        for i in range(len(self.sources)):
            out.setdefault(self.find(i), []).append(i)
        return out

    def is_blocked(self, root: int) -> bool:
        return bool(self.blocked.get(self.find(root)))


def _name(n: Node) -> str:
    return f"{n.op_type} '{n.name}'" if n.name else n.op_type


def _rank(v: Value) -> int | None:
    s = v.shape
    return len(s) if s is not None else None


def _layer_kind(g: Graph, n: Node) -> str | None:
    """'layer' (creates channels), 'depthwise', 'grouped', or None (not a prunable layer)."""
    arr = layer_weight(g, n, LAYERS)
    if arr is None:
        return None
    group = n.attr("group", 1) if n.op_type in ("Conv", "ConvTranspose") else 1
    if group == 1:
        return "layer"
    if n.op_type == "Conv" and arr.shape[1] == 1 and arr.shape[0] == group:
        return "depthwise"
    return "grouped"


def analyse(g: Graph) -> Coupling:
    """The channel groups of ``g`` (its nodes must be in topological order)."""
    c = Coupling()
    outputs = {id(v) for v in g.outputs}

    def layout_of(v: Value | None) -> Layout | None:
        return c.layouts.get(id(v)) if v is not None else None

    def new_source(n: Node, size: int) -> Layout:
        c.sources.append(Source(n, size))
        c.parent.append(len(c.sources) - 1)
        return Layout([Segment(len(c.sources) - 1, 0, size)])

    for n in g.nodes:
        ins = [layout_of(v) for v in n.inputs]
        laid = [x for x in ins if x is not None]
        out: Layout | None = None
        kind = _layer_kind(g, n)
        op = n.op_type if is_standard(n) else None
        if kind in ("layer", "grouped"):
            grouped = kind == "grouped" and n.op_type == "Conv"
            group = n.attr("group", 1) if grouped else 1
            x = ins[0]
            if x is not None:
                if x.inner != 1 and n.op_type not in ("Gemm", "MatMul"):
                    c.block(x, f"flattened channels read by {_name(n)}")
                elif n.op_type == "MatMul" and _rank(n.inputs[0]) != 2:
                    c.block(x, f"{_name(n)} contracts the last axis of a rank-"
                               f"{_rank(n.inputs[0]) or '?'} tensor, not its channels")
                elif grouped and id(x) in c.shuffled:
                    # a shuffled layer's channels: column k of the shuffle (the same offset
                    # k in each of its t chunks) lands in this conv's group k // (C/t/group)
                    # when those split evenly, so equal numbers per group follow from equal
                    # numbers of columns in each of `group` runs of columns
                    source, t = c.shuffled[id(x)]
                    if (c.sources[source].size // t) % group:
                        c.block(x, f"grouped {_name(n)} (group={group}) splits the columns "
                                   f"of a channel shuffle")
                    else:
                        c.require_multiple(source, t * group)
                        c.consumers.append((n, x))
                elif kind == "grouped" and not (grouped and _whole_source(c, x)):
                    c.block(x, f"grouped {_name(n)} (group={n.attr('group')}) reading "
                               f"channels of several layers")
                else:
                    if grouped:  # its input channels go in equal numbers per group
                        c.require_multiple(x.segments[0].source, group)
                    c.consumers.append((n, x))
            for v in ins[2:]:
                c.block(v, f"channels used as a bias of {_name(n)}")
            w = n.inputs[1].const_value
            out = new_source(n, w.shape[out_axis(n)] * (n.attr("group", 1)
                                                          if n.op_type == "ConvTranspose" else 1))
            if grouped:
                c.require_multiple(out.segments[0].source, group)
            elif n.op_type == "MatMul" and _rank(n.outputs[0]) != 2:
                # (batch, tokens, features): the channels are the last axis, which this
                # analysis (channels on axis 1) does not follow through the graph
                c.block(out, f"{_name(n)} makes features on the last axis of a rank-"
                             f"{_rank(n.outputs[0]) or '?'} tensor (not analysed)")
            elif kind == "grouped":
                c.block(out, f"grouped {_name(n)} (group={n.attr('group')})")
            if len(n.inputs) > 2 and n.inputs[2] is not None and \
                    not g.is_constant(n.inputs[2]):
                c.block(out, f"{_name(n)} has a computed bias")
        elif kind == "depthwise":
            x = ins[0]
            if x is None:  # its input's channels belong to no group: a source of its own
                out = new_source(n, n.inputs[1].const_value.shape[0])
                c.block(out, f"depthwise {_name(n)} reads channels no layer makes "
                             f"(a graph input)")
            elif x.inner != 1:
                c.block(x, f"flattened channels read by {_name(n)}")
            else:
                c.depthwise.append((n, x))
                out = x
        elif op == "BatchNormalization" and ins[0] is not None:
            x = ins[0]
            for i in range(1, 5):
                if i < len(n.inputs) and n.inputs[i] is not None:
                    if g.is_constant(n.inputs[i]):
                        c.params.append((n, i, x, 0))
                    else:
                        c.block(x, f"{_name(n)} has computed parameters")
            out = x
            if len(n.outputs) > 1 and any(o is not None and o.uses() for o in n.outputs[1:]):
                c.block(x, f"{_name(n)} in training mode")
        elif op in PASS_THROUGH and ins and ins[0] is not None:
            x = ins[0]
            if x.inner != 1 and op not in ("Relu", "Identity", "Dropout", "Cast", "Clip"):
                c.block(x, f"flattened channels read by {_name(n)}")
            for v in ins[1:]:
                c.block(v, f"channels used as a parameter of {_name(n)}")
            out = x
        elif op == "Pad" and ins[0] is not None:
            x = ins[0]
            pads = n.inputs[1] if len(n.inputs) > 1 else None
            rank = _rank(n.inputs[0])
            if pads is None or not g.is_constant(pads) or rank is None or \
                    len(n.inputs) > 3 and n.inputs[3] is not None:
                c.block(x, f"{_name(n)} with unknown pads")
            else:
                p = pads.const_value.reshape(-1)
                if len(p) != 2 * rank or p[1] != 0 or p[1 + rank] != 0:
                    c.block(x, f"{_name(n)} pads the channel axis")
            out = x
        elif op in ELEMENTWISE and laid:
            out = _elementwise(g, c, n, ins)
        elif op == "Concat" and laid:
            rank = _rank(n.outputs[0]) or next((_rank(v) for v in n.inputs if _rank(v)), None)
            axis = n.attr("axis", 0)
            if rank is not None and axis < 0:
                axis += rank
            if axis != 1 or any(x is not None and x.inner != 1 for x in ins):
                for x in laid:
                    c.block(x, f"{_name(n)} on axis {n.attr('axis', 0)}")
            else:
                segments = []
                for v, x in zip(n.inputs, ins):
                    if x is not None:
                        segments += x.segments
                    else:
                        size = v.shape[1] if v.shape is not None and len(v.shape) > 1 else None
                        if not isinstance(size, int):
                            for y in laid:
                                c.block(y, f"{_name(n)} with an input of unknown channels")
                            segments = None
                            break
                        segments.append(Segment(None, 0, size))
                out = Layout(segments) if segments is not None else None
        elif op == "Reshape" and ins[0] is not None and _shuffle(g, n) is not None:
            last, t = _shuffle(g, n)
            x = ins[0]
            if not _whole_source(c, x):
                c.block(x, f"channel shuffle at {_name(n)} of several layers' channels")
            else:
                shuffled = _shuffled(x, t)
                root = c.find(x.segments[0].source)
                if c.tied(root) not in (1, t):
                    c.block(x, "two channel shuffles of different group counts")
                c.tied_of[root] = t
                c.require_multiple(root, t)
                c.shuffles.append((n, last, t, x))
                c.shuffled[id(shuffled)] = (root, t)
                c.layouts[id(last.outputs[0])] = shuffled
                if last.outputs[0] in g.outputs:
                    c.block(x, f"reaches the graph output '{last.outputs[0].name}'")
        elif op in ("Flatten", "Reshape") and ins[0] is not None:
            out = _flatten(g, c, n, ins[0])
        elif op == "Split" and ins[0] is not None and len(laid) == 1:
            parts = _split(g, c, n, ins[0])
            for o, part in zip(n.outputs, parts or []):
                if o is not None:
                    c.layouts[id(o)] = part
                    if id(o) in outputs:
                        c.block(part, f"reaches the graph output '{o.name}'")
        elif op == "Slice" and ins[0] is not None and len(laid) == 1:
            out = _slice(g, c, n, ins[0])
        else:
            for x in laid:
                c.block(x, f"read by {_name(n)}, which the analysis cannot map")
        if out is not None:
            for o in n.outputs[:1]:
                if o is not None:
                    c.layouts[id(o)] = out
                    if id(o) in outputs:
                        c.block(out, f"reaches the graph output '{o.name}'")
    return c


def _shuffle(g: Graph, n: Node) -> tuple[Node, int] | None:
    """(the last Reshape, the groups t) when ``n`` starts a channel shuffle: Reshape (N, C, H,
    W) -> (N, t, C/t, H, W), Transpose perm (0, 2, 1, 3, 4), Reshape back to (N, C, H, W),
    each read only by the next, with constant targets (ShuffleNet's pattern)."""
    x, y = n.inputs[0], n.outputs[0]
    shape, mid = x.shape, y.shape
    if shape is None or mid is None or len(shape) != 4 or len(mid) != 5 or \
            not all(isinstance(d, int) for d in (*shape[1:], *mid[1:])):
        return None
    t = mid[1]
    if t < 2 or mid[1] * mid[2] != shape[1] or tuple(mid[3:]) != tuple(shape[2:]) or \
            not g.is_constant(n.inputs[1]) or g.is_output(y) or len(y.uses()) != 1:
        return None
    tr = y.uses()[0][0]
    if tr.op_type != "Transpose" or not is_standard(tr) or \
            list(tr.attr("perm", [])) != [0, 2, 1, 3, 4]:
        return None
    z = tr.outputs[0]
    if g.is_output(z) or len(z.uses()) != 1:
        return None
    last = z.uses()[0][0]
    out = last.outputs[0].shape
    if last.op_type != "Reshape" or not is_standard(last) or last.inputs[0] is not z or \
            not g.is_constant(last.inputs[1]) or out is None or \
            tuple(out[1:]) != tuple(shape[1:]):
        return None
    return last, t


def _shuffled(x: Layout, t: int) -> Layout:
    """The layout after a channel shuffle of t groups: position k * t + i holds what position
    i * (C / t) + k held (adjacent runs merged)."""
    per = x.channels // t
    segments: list[Segment] = []
    for j in range(x.channels):
        seg = x.sub((j % t) * per + j // t, (j % t) * per + j // t + 1).segments[0]
        last = segments[-1] if segments else None
        if last is not None and last.source == seg.source and \
                last.start + last.length == seg.start:
            last.length += 1
        else:
            segments.append(Segment(seg.source, seg.start, 1))
    return Layout(segments)


def _whole_source(c: Coupling, x: Layout) -> bool:
    """Is ``x`` exactly one layer's channels, in order?"""
    return len(x.segments) == 1 and x.segments[0].source is not None and \
        x.segments[0].start == 0 and x.segments[0].length == c.sources[x.segments[0].source].size


def _elementwise(g: Graph, c: Coupling, n: Node, ins: list[Layout | None]) -> Layout | None:
    laid = [(i, x) for i, x in enumerate(ins) if x is not None]
    first = laid[0][1]
    out_rank = _rank(n.outputs[0]) or _rank(n.inputs[laid[0][0]])
    for i, x in laid[1:]:
        if x.channels != first.channels or x.inner != first.inner or \
                len(x.segments) != len(first.segments) or \
                any(a.length != b.length for a, b in zip(x.segments, first.segments)):
            for _, y in laid:
                c.block(y, f"{_name(n)} adds channels laid out differently")
            return first
        for a, b in zip(first.segments, x.segments):
            if (a.source is None) != (b.source is None):
                c.block(x, f"{_name(n)} meets channels no layer makes")
                c.block(first, f"{_name(n)} meets channels no layer makes")
            elif a.source is not None and a.source != b.source:
                # two sources pruned as one: index i of one meets index i of the other, so
                # both segments must be the whole of their (equal-sized) sources
                whole = a.start == b.start == 0 and \
                    a.length == c.sources[a.source].size == c.sources[b.source].size
                if whole:
                    c.union(a.source, b.source)
                else:
                    c.block(x, f"{_name(n)} aligns parts of different layers' channels")
                    c.block(first, f"{_name(n)} aligns parts of different layers' channels")
            elif a.source is not None and a.start != b.start:
                c.block(x, f"{_name(n)} aligns different channel ranges of one layer")
    for i, v in enumerate(n.inputs):
        if ins[i] is not None or v is None:
            continue
        if not g.is_constant(v):
            # a computed tensor without channels of its own must broadcast over the channels
            shape = v.shape
            full = None if shape is None or out_rank is None or len(shape) > out_rank else \
                (1,) * (out_rank - len(shape)) + tuple(shape)
            if full is None or len(full) < 2 or full[1] != 1:
                c.block(first, f"{_name(n)} meets a tensor no layer makes ('{v.name}')")
            continue
        arr = v.const_value
        axis = _channel_axis(arr.shape, out_rank, first.channels * first.inner)
        if axis is None:
            c.block(first, f"{_name(n)} has a constant '{v.name}' that is not per channel")
        elif axis >= 0:
            c.params.append((n, i, first, axis))
    return first


def _channel_axis(shape: tuple[int, ...], rank: int | None, channels: int) -> int | None:
    """The axis of a constant operand along which it varies per channel; -1 when it does not
    vary along the channel axis at all (a scalar); None when it cannot be sliced per channel."""
    if len(shape) == 0 or int(np.prod(shape)) == 1:
        return -1
    if rank is None or len(shape) > rank:
        return None
    full = (1,) * (rank - len(shape)) + tuple(shape)
    lead = rank - len(shape)
    if full[1] == channels and all(d == 1 for i, d in enumerate(full) if i != 1):
        return 1 - lead if 1 - lead >= 0 else None
    if full[1] == 1 and rank >= 2 and channels != 1:
        return -1 if all(d == 1 for d in full[:2]) else None
    return None


def _flatten(g: Graph, c: Coupling, n: Node, x: Layout) -> Layout | None:
    """Flatten (axis 1) or Reshape to (N, -1) of an (N, C, H, W) tensor: each channel becomes
    H * W consecutive features."""
    v = n.inputs[0]
    shape = v.shape
    ok = shape is not None and len(shape) >= 2 and all(isinstance(d, int) for d in shape[1:])
    if n.op_type == "Flatten":
        ok = ok and n.attr("axis", 1) == 1
    else:
        target = n.inputs[1] if len(n.inputs) > 1 else None
        t = target.const_value.reshape(-1).tolist() if target is not None and \
            g.is_constant(target) else None
        ok = ok and t is not None and len(t) == 2 and t[1] in (-1, int(np.prod(shape[1:])))
    if not ok or x.inner != 1:
        c.block(x, f"{_name(n)} mixes the channel axis")
        return None
    out = Layout(x.segments, inner=int(np.prod(shape[2:])) if len(shape) > 2 else 1)
    if n.op_type == "Reshape" and t[1] != -1:
        c.reshapes.append((n, out))
    return out


def _axis(n: Node, rank: int | None, default: int) -> int | None:
    axis = n.attr("axis", default)
    if axis < 0:
        if rank is None:
            return None
        axis += rank
    return axis


def _split(g: Graph, c: Coupling, n: Node, x: Layout) -> list[Layout] | None:
    """Split on the channel axis: each output takes a range of the input's channels."""
    axis = _axis(n, _rank(n.inputs[0]), 0)
    if axis != 1 or x.inner != 1:
        c.block(x, f"{_name(n)} on axis {n.attr('axis', 0)}")
        return None
    outs = [o for o in n.outputs if o is not None]
    split = n.inputs[1] if len(n.inputs) > 1 and n.inputs[1] is not None else None
    if split is not None:
        if not g.is_constant(split):
            c.block(x, f"{_name(n)} with computed sizes")
            return None
        sizes = [int(v) for v in split.const_value.reshape(-1)]
    elif n.attr("split") is not None:
        sizes = [int(v) for v in n.attr("split")]
    elif x.channels % len(n.outputs) == 0:
        sizes = [x.channels // len(n.outputs)] * len(n.outputs)
    else:
        c.block(x, f"{_name(n)} into unequal parts of unstated size")
        return None
    if sum(sizes) != x.channels or len(outs) != len(n.outputs):
        c.block(x, f"{_name(n)} with sizes that do not add up")
        return None
    parts, offset = [], 0
    for size in sizes:
        parts.append(x.sub(offset, offset + size))
        offset += size
    c.splits.append((n, parts))
    return parts


def _slice(g: Graph, c: Coupling, n: Node, x: Layout) -> Layout | None:
    """Slice with step 1 whose axes include the channel axis: a range of the channels."""
    rank = _rank(n.inputs[0])
    consts = [n.inputs[i] if i < len(n.inputs) else None for i in range(1, 5)]
    if any(v is not None and not g.is_constant(v) for v in consts) or consts[0] is None or \
            consts[1] is None or rank is None or x.inner != 1:
        c.block(x, f"{_name(n)} with computed or unknown bounds")
        return None
    starts, ends = (v.const_value.reshape(-1).tolist() for v in consts[:2])
    axes = consts[2].const_value.reshape(-1).tolist() if consts[2] is not None else \
        list(range(len(starts)))
    steps = consts[3].const_value.reshape(-1).tolist() if consts[3] is not None else \
        [1] * len(starts)
    axes = [a + rank if a < 0 else a for a in axes]
    if 1 not in axes:
        return x  # slices space (or batch) only: the channels go through
    i = axes.index(1)
    if steps[i] != 1:
        c.block(x, f"{_name(n)} strides the channel axis")
        return None
    size = x.channels
    a = max(0, min(size, starts[i] + size if starts[i] < 0 else starts[i]))
    b = max(0, min(size, ends[i] + size if ends[i] < 0 else ends[i]))
    if b <= a:
        c.block(x, f"{_name(n)} selects no channel")
        return None
    c.slices.append((n, x, a, b))
    return x.sub(a, b)
