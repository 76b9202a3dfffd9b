"""The csr engine: input folding, sparse kernels per op, plans of mixed steps, calibration."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from sltc.format.graph import Graph
from sltc.format.ops import OPS
from sltc.runtime import adaptive as csr
from sltc.runtime.loader import load

RNG = np.random.default_rng(0)


def _mlp(sparse: float = 0.9) -> Graph:
    """(x - m) / s -> flatten -> fc1 -> relu -> fc2, as torch's exporter writes it."""
    w1 = RNG.standard_normal((30, 64)).astype(np.float32) * (RNG.random((30, 64)) > sparse)
    w2 = RNG.standard_normal((5, 30)).astype(np.float32)
    nodes = [helper.make_node("Sub", ["input", "m"], ["a"], name="sub"),
             helper.make_node("Div", ["a", "s"], ["b"], name="div"),
             helper.make_node("Flatten", ["b"], ["c"], name="flatten"),
             helper.make_node("Transpose", ["w1"], ["w1t"], name="t1", perm=[1, 0]),
             helper.make_node("MatMul", ["c", "w1t"], ["d"], name="fc1"),
             helper.make_node("Relu", ["d"], ["e"], name="relu"),
             helper.make_node("Gemm", ["e", "w2", "b2"], ["logits"], name="fc2", transB=1)]
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
             (("m", 0.286), ("s", 0.353), ("w1", w1), ("w2", w2), ("b2", np.ones(5)))]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])], inits)
    return Graph.from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def _images(n, shape=(1, 8, 8)):
    x = RNG.random((n, *shape), dtype=np.float32)
    x[x < 0.5] = 0  # black pixels: exact zeros a folded first layer skips
    return x


def test_folding_normalize_into_the_first_layer_keeps_outputs():
    graph = _mlp().folded()
    folded = csr.fold_normalize(graph)
    assert [n.op for n in folded.nodes] == ["Flatten", "Gemm", "Relu", "Gemm"]
    assert folded.nodes[0].inputs[0] == "input"
    x = _images(9)
    assert np.allclose(folded.run(x), graph.run(x), atol=1e-4)
    assert [n.op for n in graph.nodes][:2] == ["Sub", "Div"]  # the input graph is unchanged


def test_folding_leaves_other_graphs_alone(conv_ticket):
    graph = load(conv_ticket).graph.folded()
    assert csr.fold_normalize(graph) is graph  # the first layer is a convolution
    unfolded = _mlp().folded()
    unfolded.constants["m"] = np.zeros(3, np.float32)  # not a scalar
    assert csr.fold_normalize(unfolded) is unfolded


@pytest.mark.parametrize("attrs", [{}, {"strides": [2, 2], "pads": [1, 1, 1, 1]},
                                   {"dilations": [2, 1], "pads": [2, 0, 1, 1]}])
def test_sparse_conv_kernel_matches_dense(attrs):
    w = RNG.standard_normal((6, 3, 3, 3)).astype(np.float32) * (RNG.random((6, 3, 3, 3)) > 0.7)
    node = csr.Node.make("Conv", ["x", "w", "b"], ["y"], "conv", **attrs)
    constants = {"w": w, "b": RNG.standard_normal(6).astype(np.float32)}
    x = RNG.standard_normal((2, 3, 9, 8)).astype(np.float32)
    kernel = csr.sparse_kernel(node, constants)
    assert np.allclose(kernel(x), OPS["Conv"](node, x, w, constants["b"]), atol=1e-5)
    grouped = csr.Node.make("Conv", ["x", "w"], ["y"], "g", group=3)
    assert csr.sparse_kernel(grouped, {"w": w[:, :1]}) is None  # grouped: dense only
    dense = csr.Node.make("Conv", ["x", "w"], ["y"], "d")
    assert csr.sparse_kernel(dense, {"w": np.ones_like(w)}) is None  # too dense to try


def test_sparse_products_on_batched_tokens():
    w = RNG.standard_normal((8, 5)).astype(np.float32) * (RNG.random((8, 5)) > 0.6)
    node = csr.Node.make("MatMul", ["x", "w"], ["y"], "mm")
    x = RNG.standard_normal((2, 7, 8)).astype(np.float32)
    assert np.allclose(csr.sparse_kernel(node, {"w": w})(x), x @ w, atol=1e-5)


@pytest.mark.parametrize("use_ort", [True, False])
@pytest.mark.parametrize("run_name", ["mixed_run", "conv_ticket", "synthetic_run"])
def test_any_plan_matches_the_dense_graph(request, run_name, use_ort):
    """Every product by a constant run sparse, the rest in onnxruntime segments or numpy."""
    run = request.getfixturevalue(run_name)
    path = run if str(run).endswith(".slt") else run / "ticket.slt"
    engine = csr.SparseEngine(load(path).graph, threads=1, use_ort=use_ort)
    kernels = {n.name: k for n in engine.graph.nodes
               if (k := csr.sparse_kernel(n, engine.graph.constants, max_density=1.0))}
    assert kernels
    x = RNG.random((3, *engine.graph.input_shape), dtype=np.float32)
    want = engine.graph.run(x)
    plan = csr.build_plan(engine.graph, kernels, engine.values, 1, use_ort)
    assert np.allclose(plan(x), want, rtol=1e-4, atol=1e-5)
    assert sorted(plan.sparse) == sorted(kernels)
    if use_ort:
        tuned = csr.tune_segments(plan, x)
        assert {s.kind for s in tuned.steps} <= {"sparse", "numpy", "ort"}
        assert np.allclose(tuned(x), want, rtol=1e-4, atol=1e-5)


def test_plans_are_cached_per_batch_and_capped(synthetic_run, monkeypatch):
    engine = csr.SparseEngine(load(synthetic_run / "ticket.slt").graph, threads=1)
    monkeypatch.setattr(csr, "MAX_CALIBRATION_BATCH", 4)
    x = RNG.random((6, *engine.graph.input_shape), dtype=np.float32)
    want = engine.graph.run(x)
    for batch in (1, 3, 6, 5):
        assert np.allclose(engine(x[:batch]), want[:batch], rtol=1e-4, atol=1e-5)
    assert sorted(engine.plans) == [1, 3, 4]  # 5 and 6 reuse the plan calibrated at 4
    assert engine.choice(6) == {"sparse_layers": engine.plans[4].sparse,
                                "layers": len(engine.kernels)}


def test_race_alternates_and_stops_hopeless_candidates():
    calls = []
    fast, slow = (lambda: calls.append("f")), (lambda: (calls.append("s"), sum(range(200000))))
    best_fast, best_slow = csr.race(fast, slow)
    assert calls[:2] == ["f", "s"] and best_slow > best_fast
    assert len(calls) == 2  # the slow warm-up was over 3x the fast one: no more rounds
