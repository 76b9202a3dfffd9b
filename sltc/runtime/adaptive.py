"""The ``csr`` engine, adaptive: sparse products where they are faster, onnxruntime
everywhere else.

Any ``MatMul`` / ``Gemm`` / ``Conv`` whose weight is a constant with at most
``MAX_DENSITY`` non-zeros is a candidate for scipy's sparse kernels (``spmv``). On the
first call with a new batch size the engine *calibrates*: it times each candidate's
sparse kernel against onnxruntime running that node alone, on the node's real input,
and keeps the sparse kernel where it wins. The chosen layers split the graph into
segments; each runs in its own onnxruntime session or in numpy, whichever is faster on
its real inputs (a ReLU between two sparse layers costs less in numpy than a session
call). Finally the whole plan is timed against onnxruntime running the whole graph, and
a plan that does not win by ``PLAN_WIN`` is dropped: the engine is never slower than
dense ORT by more than the noise of that measurement. Plans are cached per batch size;
batches above ``MAX_CALIBRATION_BATCH`` run the plan calibrated at that size.

With ``allow_int8`` (``--allow int8``; never by default, as int8 is not exact) each
onnxruntime segment that holds a product is also raced against itself quantised to int8
(dynamic: weights int8, ternary ones exactly; activations per batch), a third choice per
segment beside sparse and fp32.
"""

from __future__ import annotations

import functools
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from onnx import helper, numpy_helper

from sltc.format.errors import SltcError
from sltc.format.graph import Graph, execute, last_reads, node_runner
from sltc.format.ops import Node, conv_columns, conv_geometry, conv_output, layer_inputs

from .quantize import cpu_int8_kernels, quantize
from .spmv import SparseLinear, SparseRows

MAX_DENSITY = 0.5  # denser weights never run sparse
PRODUCTS = ("MatMul", "Gemm", "Conv")  # what an int8 segment speeds up
WIN = 0.9  # a sparse kernel must take at most this fraction of the dense time
PLAN_WIN = 0.95  # and a mixed plan at most this fraction of onnxruntime's whole-graph time
REPEAT = 5  # timing: the best of at least this many runs, after one warm-up
TIMING_S = 0.02  # ... and of as many as fit in this time (at most 20 x REPEAT)
MAX_CALIBRATION_BATCH = 256  # larger batches run the plan calibrated at this size
PROBE_BYTES = 256 << 20  # recorded layer inputs held at once while calibrating


# --- sparse kernels ---------------------------------------------------------------------------


def _weight_2d(node: Node, constants: dict):
    """(2-D weight as (out, in), bias or None) when ``node`` is a product by a constant."""
    weight, c = layer_inputs(node)
    w = constants.get(weight)
    if w is None:
        return None, None
    if node.op == "MatMul":
        return (None, None) if w.ndim != 2 else (w.T, None)
    if node.op == "Gemm":
        a = node.attrs
        if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0:
            return None, None
        if c is not None and c not in constants:
            return None, None
        bias = None if c is None else constants[c] * np.float32(a.get("beta", 1.0))
        return (w if a.get("transB", 0) else w.T), bias
    if node.attrs.get("group", 1) != 1 or w.ndim != 4:  # Conv
        return None, None
    return w.reshape(len(w), -1), constants.get(c)


def _scipy_product(w2: np.ndarray, mask: np.ndarray, by_rows: bool):
    return SparseRows(w2, mask) if by_rows else SparseLinear(w2, mask)


def sparse_kernel(node: Node, constants: dict, product=_scipy_product,
                  max_density: float = MAX_DENSITY):
    """A function of the node's inputs computing it with a sparse ``a @ W.T`` from
    ``product(w2, mask, by_rows)`` (``by_rows``: im2col input), or None."""
    w2, bias = _weight_2d(node, constants)
    if w2 is None or np.count_nonzero(w2) > max_density * w2.size:
        return None
    mask = w2 != 0
    if node.op == "Conv":
        rows, w_shape = product(w2, mask, True), constants[layer_inputs(node)[0]].shape

        def conv(x, *_):
            g = conv_geometry(node, x.shape, w_shape)
            return conv_output(rows(conv_columns(x, g, 1)), x.shape, g, bias)

        return conv
    layer = product(w2, mask, False)

    def linear(x, *_):
        y = layer(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)
        return y if bias is None else y + bias

    return linear


def fold_normalize(graph: Graph) -> Graph:
    """Fold a leading scalar ``(x - m) / s`` into the first linear layer behind reshapes:
    ``W((x - m) / s) = (W / s) x - (m / s) W 1``. The layer then reads raw pixels, whose
    zeros (black pixels) the sparse kernel skips. Any other graph is returned as it is."""
    nodes, c = graph.nodes, graph.constants
    if len(nodes) < 3 or [n.op for n in nodes[:2]] != ["Sub", "Div"]:
        return graph
    sub, div = nodes[:2]
    scalars = [c.get(sub.inputs[1]), c.get(div.inputs[1])]
    users = graph.consumers()
    if sub.inputs[0] != graph.input_name or div.inputs[0] != sub.outputs[0] or any(
            v is None or v.size != 1 for v in scalars) or len(users.get(div.outputs[0], [])) != 1:
        return graph
    i, current = 2, div.outputs[0]
    while i < len(nodes) and nodes[i].op in ("Flatten", "Reshape") and nodes[i].inputs[0] == current:
        current, i = nodes[i].outputs[0], i + 1
    if i == len(nodes) or nodes[i].inputs[0] != current:
        return graph
    w2, bias = _weight_2d(nodes[i], c)
    if w2 is None or nodes[i].op == "Conv":
        return graph
    mean, std = float(scalars[0].ravel()[0]), float(scalars[1].ravel()[0])
    w = w2.astype(np.float64)
    folded_bias = -mean / std * w.sum(axis=1) + (0 if bias is None else bias)
    names = (f"{nodes[i].name}.folded_weight", f"{nodes[i].name}.folded_bias")
    constants = {**c, names[0]: (w / std).astype(np.float32),
                 names[1]: folded_bias.astype(np.float32)}
    reshapes = [Node.make(n.op, [graph.input_name if k == 0 else n.inputs[0], *n.inputs[1:]],
                          n.outputs, n.name, **n.attrs) for k, n in enumerate(nodes[2:i])]
    source = reshapes[-1].outputs[0] if reshapes else graph.input_name
    layer = Node.make("Gemm", [source, *names], nodes[i].outputs, nodes[i].name, transB=1)
    return replace(graph, nodes=reshapes + [layer] + nodes[i + 1:], constants=constants)


# --- plans ------------------------------------------------------------------------------------


def _seconds(fn) -> float:
    tic = time.perf_counter()
    fn()
    return time.perf_counter() - tic


def race(first, second) -> tuple[float, float]:
    """Best times of two functions timed alternately, so that drift in the machine's speed
    hits both: at least ``REPEAT`` rounds after a warm-up, more while ``TIMING_S`` lasts.
    A warm-up of ``second`` at 3x that of ``first`` ends it at once."""
    warm = _seconds(first), _seconds(second)
    if warm[1] > 3 * warm[0]:
        return warm
    best, start, rounds = [float("inf")] * 2, time.perf_counter(), 0
    while rounds < REPEAT or (time.perf_counter() - start < TIMING_S and rounds < 20 * REPEAT):
        best = [min(best[0], _seconds(first)), min(best[1], _seconds(second))]
        rounds += 1
    return best[0], best[1]


def _ort_segment(nodes: list[Node], graph: Graph, inputs: list[str], outputs: list[str],
                 values: dict, threads: int | None, int8: bool = False):
    """A function running ``nodes`` in their own onnxruntime session; ``values`` maps each
    value name to its (dtype, dims), dims that follow the batch size given by name.
    ``int8``: the segment quantised dynamically (``quantize.quantize``): not exact."""
    from .ort import session

    used = {name for n in nodes for name in n.inputs if name in graph.constants}
    inits = [numpy_helper.from_array(graph.constants[n], n) for n in sorted(used)]

    def info(name):  # onnxruntime's optimiser needs the ranks (NCHWc) and does better with sizes
        dtype, dims = values[name]
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(dtype), dims)

    proto = helper.make_graph([n.proto for n in nodes], "segment", [info(n) for n in inputs],
                              [info(n) for n in outputs], inits)
    model = helper.make_model(proto, opset_imports=[helper.make_opsetid("", graph.opset)])
    model.ir_version = 8
    if int8:
        with tempfile.TemporaryDirectory() as folder:
            model = quantize(model, "dynamic", Path(folder), cpu_int8_kernels()).model
    sess, _ = session(model.SerializeToString(), "cpu", threads)
    return lambda *args: sess.run(outputs, dict(zip(inputs, args, strict=True)))


def _numpy_segment(nodes: list[Node], graph: Graph, inputs: list[str], outputs: list[str]):
    """A function running ``nodes`` with ``OPS``."""
    constants = {n: graph.constants[n] for node in nodes for n in node.inputs if n in graph.constants}
    run_node = node_runner()

    def run(*args):
        env = execute(nodes, {**constants, **dict(zip(inputs, args, strict=True))}, run_node)
        return [env[name] for name in outputs]

    return run


@dataclass
class Step:
    """Nodes computed together: by a sparse kernel, in numpy, or in onnxruntime (fp32, or
    int8 where the engine may)."""

    kind: str  # "sparse", "numpy", "ort" or "int8"
    fn: object  # (*inputs) -> list of outputs
    nodes: list[Node]
    inputs: list[str]
    outputs: list[str]


@dataclass
class Plan:
    """Steps over a dict of named values, each value freed after its last use."""

    graph: Graph
    steps: list[Step]

    def __post_init__(self):
        self.frees = last_reads([s.inputs for s in self.steps], {self.graph.output_name})
        self.single = self.steps[0].fn if len(self.steps) == 1 else None

    @property
    def sparse(self) -> list[str]:
        return [s.nodes[0].name for s in self.steps if s.kind == "sparse"]

    @property
    def int8(self) -> list[str]:
        """The products its int8 segments compute."""
        return [n.name for s in self.steps if s.kind == "int8" for n in s.nodes
                if n.op in PRODUCTS]

    def __call__(self, x: np.ndarray, record: dict | None = None) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if self.single is not None and record is None:
            return self.single(x)[0]

        def call(i, step, args):
            if record is not None:
                record[i] = args
            return step.fn(*args)

        env = execute(self.steps, {self.graph.input_name: x}, call, self.frees)
        return np.asarray(env[self.graph.output_name], dtype=np.float32)


def _runs(graph: Graph, kernels: dict) -> list[list[Node]]:
    """The nodes split into maximal runs around each node that has a sparse kernel."""
    runs: list[list[Node]] = []
    for node in graph.nodes:
        if node.name in kernels or not runs or runs[-1][0].name in kernels:
            runs.append([node])
        else:
            runs[-1].append(node)
    return runs


def build_plan(graph: Graph, kernels: dict, values: dict, threads: int | None,
               use_ort: bool) -> Plan:
    """Sparse ``kernels`` by node name; every run of nodes between them in one onnxruntime
    session (``use_ort``) or in numpy. ``values``: name -> (dtype, dims) of every value."""
    runs = _runs(graph, kernels)
    later = {graph.output_name}
    boundaries = []
    for run in reversed(runs):  # the values each run must hand on
        boundaries.append(set(later))
        later.update(name for n in run for name in n.inputs)
    steps = []
    for run, hand_on in zip(runs, reversed(boundaries), strict=True):
        if run[0].name in kernels:
            kernel = kernels[run[0].name]
            steps.append(Step("sparse", lambda x, *_, k=kernel: [k(x)], run, run[0].inputs[:1],
                              run[0].outputs[:1]))
            continue
        produced = {o for n in run for o in n.outputs}
        inputs = list(dict.fromkeys(name for n in run for name in n.inputs if name and
                                    name not in produced and name not in graph.constants))
        outputs = [o for o in dict.fromkeys(o for n in run for o in n.outputs) if o in hand_on]
        if use_ort:
            steps.append(Step("ort", _ort_segment(run, graph, inputs, outputs, values, threads),
                              run, inputs, outputs))
        else:
            steps.append(Step("numpy", _numpy_segment(run, graph, inputs, outputs), run,
                              inputs, outputs))
    return Plan(graph, steps)


def tune_segments(plan: Plan, x: np.ndarray) -> Plan:
    """Each onnxruntime segment of a mixed plan raced against numpy on its real inputs;
    the faster is kept (a ReLU between two sparse layers costs less than a session call)."""
    record: dict = {}
    plan(x, record)
    steps = list(plan.steps)
    for i, step in enumerate(steps):
        if step.kind != "ort":
            continue
        local = _numpy_segment(step.nodes, plan.graph, step.inputs, step.outputs)
        ort_s, numpy_s = race(lambda s=step, a=record[i]: s.fn(*a),
                              lambda f=local, a=record[i]: f(*a))
        if numpy_s < ort_s:
            steps[i] = Step("numpy", local, step.nodes, step.inputs, step.outputs)
    return Plan(plan.graph, fuse_relu(steps, plan.graph))


def int8_segments(plan: Plan, x: np.ndarray, values: dict, threads: int | None) -> Plan:
    """Each onnxruntime segment holding a product raced against the same segment quantised
    to int8 on its real inputs; the int8 one is kept where it takes at most ``WIN`` of the
    time. A segment the quantiser refuses stays fp32."""
    record: dict = {}
    plan(x, record)
    steps = list(plan.steps)
    for i, step in enumerate(steps):
        if step.kind != "ort" or not any(n.op in PRODUCTS for n in step.nodes):
            continue
        try:
            int8 = _ort_segment(step.nodes, plan.graph, step.inputs, step.outputs, values,
                                threads, int8=True)
        except SltcError:
            continue
        fp32_s, int8_s = race(lambda s=step, a=record[i]: s.fn(*a),
                              lambda f=int8, a=record[i]: f(*a))
        if int8_s < WIN * fp32_s:
            steps[i] = Step("int8", int8, step.nodes, step.inputs, step.outputs)
    return Plan(plan.graph, steps)


def fuse_relu(steps: list[Step], graph: Graph) -> list[Step]:
    """A ReLU alone right after a sparse layer, reading only its output, applied in place to
    the layer's fresh output array: one step fewer per layer at batch 1."""
    readers: dict[str, int] = {}
    for step in steps:
        for name in step.inputs:
            readers[name] = readers.get(name, 0) + 1
    out: list[Step] = []
    for step in steps:
        prev = out[-1] if out else None
        if (prev is not None and prev.kind == "sparse" and len(step.nodes) == 1
                and step.nodes[0].op == "Relu" and step.inputs == prev.outputs
                and readers[prev.outputs[0]] == 1 and prev.outputs[0] != graph.output_name):
            kernel = prev.fn

            def fused(x, k=kernel):
                y = k(x)[0]
                return [np.maximum(y, 0, out=y)]

            out[-1] = Step("sparse", fused, prev.nodes + step.nodes, prev.inputs, step.outputs)
        else:
            out.append(step)
    return out


@dataclass
class SparseEngine:
    """Calibrates a plan per batch size (see the module docstring); call it like a model."""

    graph: Graph
    threads: int | None = None
    use_ort: bool = True
    allow_int8: bool = False  # int8 onnxruntime segments where faster: not exact
    plans: dict = field(default_factory=dict)

    def __post_init__(self):
        self.graph = fold_normalize(self.graph.folded())
        self.kernels = {n.name: k for n in self.graph.nodes
                        if (k := sparse_kernel(n, self.graph.constants)) is not None}
        self.nodes = {n.name: n for n in self.graph.nodes}
        self.values, self.bytes_per_item = self._values()

    def _values(self) -> tuple[dict, dict]:
        """Each value's dtype and dims (a dim that changes with the batch as a name), from
        runs at batch 1 and 2; and its bytes per batch item."""
        dtypes, shapes = {self.graph.input_name: np.dtype(np.float32)}, [{}, {}]
        for batch, seen in zip((1, 2), shapes, strict=True):
            x = np.zeros((batch, *self.graph.input_shape), np.float32)
            self.graph.run(x, shapes=seen, dtypes=dtypes)
            seen[self.graph.input_name] = x.shape
        values = {k: (dtypes[k], [a if a == b else f"{k}:{i}" for i, (a, b) in
                                  enumerate(zip(shapes[0][k], shapes[1][k], strict=True))])
                  for k in dtypes}
        return values, {k: int(np.prod(shapes[0][k])) * dtypes[k].itemsize for k in dtypes}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.plan_for(len(x), x)(x)

    def plan_for(self, batch: int, x: np.ndarray | None = None) -> Plan:
        """The plan for ``batch`` (calibrated on ``x`` the first time; None: already known)."""
        batch = min(batch, MAX_CALIBRATION_BATCH)
        if batch not in self.plans:
            self.plans[batch] = self.calibrate(np.asarray(x[:batch], dtype=np.float32))
        return self.plans[batch]

    @functools.cached_property
    def baseline(self) -> Plan:
        """The whole graph in one onnxruntime session (or numpy): one for every batch size,
        so that its copy of the weights is made once."""
        return build_plan(self.graph, {}, self.values, self.threads, self.use_ort)

    def calibrate(self, x: np.ndarray) -> Plan:
        """The plan for batches of ``len(x)``, measured on ``x``: sparse layers where they
        win; then (``allow_int8``) int8 segments where they win, around those sparse layers
        or in a plan without them, whichever is faster; a plan that does not beat
        onnxruntime's whole fp32 graph by ``PLAN_WIN`` is dropped for it."""
        baseline = self.baseline
        chosen = {}
        for group in self._groups(len(x)):
            for name, arg in zip(group, self._probe(x, group), strict=True):
                if self._sparse_wins(self.nodes[name], arg):
                    chosen[name] = self.kernels[name]
        plan = build_plan(self.graph, chosen, self.values, self.threads, self.use_ort)
        if chosen and self.use_ort:
            plan = tune_segments(plan, x)
        if self.allow_int8 and self.use_ort:  # int8 around the sparse layers, or throughout
            plans = [int8_segments(p, x, self.values, self.threads) for p in (plan, baseline)]
            first, second = race(lambda: plans[0](x), lambda: plans[1](x))
            plan = plans[0] if first <= second else plans[1]
        if not plan.sparse and not plan.int8:
            return baseline
        dense, mixed = race(lambda: baseline(x), lambda: plan(x))
        return plan if mixed < PLAN_WIN * dense else baseline

    def _groups(self, batch: int) -> list[list[str]]:
        """Candidates in groups whose recorded inputs fit ``PROBE_BYTES`` together."""
        groups, size = [[]], 0
        for name in self.kernels:
            need = batch * self.bytes_per_item[self.nodes[name].inputs[0]]
            if groups[-1] and size + need > PROBE_BYTES:
                groups.append([])
                size = 0
            groups[-1].append(name)
            size += need
        return [g for g in groups if g]

    def _probe(self, x: np.ndarray, group: list[str]) -> list[np.ndarray]:
        """The real input of each node in ``group`` for the batch ``x``."""
        names = list(dict.fromkeys(self.nodes[name].inputs[0] for name in group))
        graph = self.graph
        if self.use_ort:
            run = _ort_segment(graph.nodes, graph, [graph.input_name], names, self.values,
                               self.threads)
        else:
            run = _numpy_segment(graph.nodes, graph, [graph.input_name], names)
        got = dict(zip(names, run(x), strict=True))
        return [got[self.nodes[name].inputs[0]] for name in group]

    def _sparse_wins(self, node: Node, arg: np.ndarray) -> bool:
        """Race the node's sparse kernel against its dense product on its real input; an
        eighth of a large batch first, which rules out clear losers cheaply."""
        kernel, dense = self.kernels[node.name], self._dense(node)
        if len(arg) >= 16:
            part = arg[: len(arg) // 8]
            dense_s, sparse_s = race(lambda: dense(part), lambda: kernel(part))
            if sparse_s > 2 * dense_s:
                return False
        dense_s, sparse_s = race(lambda: dense(arg), lambda: kernel(arg))
        return sparse_s < WIN * dense_s

    def _dense(self, node: Node):
        """``node`` computed densely, as a function of its first input: in onnxruntime when
        the plan uses it, else in numpy."""
        if self.use_ort:
            run = _ort_segment([node], self.graph, node.inputs[:1], node.outputs[:1], self.values,
                               self.threads)
        else:
            run = _numpy_segment([node], self.graph, node.inputs[:1], node.outputs[:1])
        return lambda arg: run(arg)[0]

    def choice(self, batch: int) -> dict:
        """The layers the plan for ``batch`` runs sparse, of those that could, and (with
        ``allow_int8``) the products it runs in int8."""
        plan = self.plan_for(batch)
        return {"sparse_layers": plan.sparse, "layers": len(self.kernels),
                **({"int8_layers": plan.int8} if self.allow_int8 else {})}
