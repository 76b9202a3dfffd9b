"""int8 ONNX exports (onnxruntime.quantization): their weights against the ticket's (through
onnx's ReferenceEvaluator), their accuracy, and every engine and command running them.
The quantisation ops themselves are tested against onnxruntime in test_ops.py."""

import json

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from sltc.data import read_idx
from sltc.exporters import export
from sltc.format.graph import Graph
from sltc.format.ticket import Ticket
from sltc.runtime.adaptive import _ort_segment
from sltc.runtime.engines import prepare
from sltc.runtime.loader import load
from sltc.runtime.quantize import KERNELS_ENV, NARROW, cpu_int8_kernels, saturates
from tests.helpers import (
    FASHION,
    ROOT,
    discover_here,
    last_json,
    requires_fashion,
    sltc,
    write_idx,
)

pytest.importorskip("onnxruntime")
LENET = ROOT / "tests/data/lenet300-v1.0.slt"
# the int8 paths an export can be made for on any CPU (SLTC_INT8_KERNELS): 32-bit sums, and
# the 16-bit saturating pairs of x86 without VNNI (7-bit weights where a weight is inexact)
PATHS = ["vnni", "avx2"]


@pytest.fixture(scope="module")
def normal_run(tmp_path_factory):
    """A synthetic MLP whose weights are kaiming_normal: not ternary."""
    out = tmp_path_factory.mktemp("normal") / "run"
    discover_here("examples/synthetic.yaml", "--out", out,
                  "--set", "model.init=kaiming_normal", "--set", "train.max_steps=20")
    return out


def _props(path) -> dict:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def _dequantised(path) -> dict:
    """Weight name -> each DequantizeLinear of an initializer, run by onnx's reference."""
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits \
                and inits[node.input[0]].ndim >= 2:
            graph = helper.make_graph([node], "dq", [], [helper.make_tensor_value_info(
                node.output[0], onnx.TensorProto.FLOAT, None)],
                [model.graph.initializer[[t.name for t in model.graph.initializer].index(n)]
                 for n in node.input if n])
            single = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
            out[node.input[0].removesuffix("_quantized")] = (
                ReferenceEvaluator(single).run(None, {})[0], inits[node.input[0]])
    return out


@pytest.mark.parametrize("kernels", PATHS)
@pytest.mark.parametrize("quantize", ["int8", "int8-dynamic"])
def test_ternary_weights_survive_quantisation_bit_for_bit(synthetic_run, tmp_path, monkeypatch,
                                                          quantize, kernels):
    """A signed-constant ticket's weights {-c, 0, +c} come out of the int8 file, dequantised
    by onnx's reference, equal to the ticket's in every bit, for every CPU's int8 path;
    their int8 values are -1, 0, 1 (no product can saturate, so 8 bits are kept)."""
    monkeypatch.setenv(KERNELS_ENV, kernels)
    ticket = Ticket.load(synthetic_run / "ticket.slt")
    assert {s.init for s in ticket.layers.values()} == {"signed_constant"}
    path = tmp_path / "t.onnx"
    report = export(synthetic_run / "ticket.slt", "onnx", path, quantize=quantize, check=False)
    assert report["exact_weights"] == report["quantized_weights"] == len(ticket.layers)
    assert report["weight_error"] == 0.0
    assert report["int8_kernels"] == kernels and not report["reduce_range"]
    folded = Graph.from_ticket(ticket).folded()  # each weight as the file holds it
    assert len(folded.masked) == len(ticket.layers)
    if quantize == "int8":  # QDQ: each weight behind its own DequantizeLinear
        got = _dequantised(path)
        assert got.keys() == folded.masked
        for name in folded.masked:
            values, q = got[name]
            want = folded.constants[name]
            assert np.array_equal(values.view(np.int32), want.view(np.int32)), name
            assert set(np.unique(q)) <= {-1, 0, 1}
            assert np.array_equal(q != 0, want != 0)
    props = _props(path)
    assert props["sltc.quantize"] == quantize
    assert json.loads(props["sltc.exact_weights"]) == sorted(folded.masked)
    assert props["sltc.seed"] == str(ticket.seed)


@pytest.mark.parametrize("kernels", PATHS)
def test_other_inits_are_quantised_per_channel_and_their_error_reported(normal_run, tmp_path,
                                                                        monkeypatch, kernels):
    """Weights that are not ternary: per channel, within half a step of the widest row's
    scale: 127 levels a side, or 64 (``reduce_range``) for a CPU whose int8 products
    saturate, where every int8 value then lies within [-64, 64]."""
    monkeypatch.setenv(KERNELS_ENV, kernels)
    path = tmp_path / "n.onnx"
    report = export(normal_run / "ticket.slt", "onnx", path, quantize="int8", check=False)
    assert report["exact_weights"] == 0 and report["quantized_weights"] == 3
    assert report["reduce_range"] == saturates(kernels) == (kernels == "avx2")
    levels = NARROW if report["reduce_range"] else 127
    assert 0 < report["weight_error"] <= 0.5 / levels * 1.001  # half a step of the widest row
    assert _props(path)["sltc.int8_kernels"] == kernels
    widest = 0
    for name, (values, q) in _dequantised(path).items():
        scale = numpy_helper.to_array(next(t for t in onnx.load(str(path)).graph.initializer
                                           if t.name == f"{name}_scale"))
        assert scale.ndim == 1 and len(scale) == values.shape[-1]  # one per unit (in x out)
        widest = max(widest, int(np.abs(q.astype(np.int16)).max()))
    assert widest == levels


@pytest.mark.parametrize("quantize", ["int8", "int8-dynamic"])
def test_full_range_files_warn_where_the_cpu_saturates(normal_run, tmp_path, monkeypatch, caplog,
                                                       quantize):
    """A file made for a VNNI CPU (8-bit weights) runs exactly in onnxruntime where this CPU
    does not saturate, and warns where it does (then the engines may differ); a file made
    for this CPU's path agrees with the exact dense engine to the last bit on every CPU."""
    for kernels in ("vnni", cpu_int8_kernels()):
        monkeypatch.setenv(KERNELS_ENV, kernels)
        path = tmp_path / f"{kernels}.onnx"
        export(normal_run / "ticket.slt", "onnx", path, quantize=quantize, check=False)
        monkeypatch.delenv(KERNELS_ENV)
        model = load(path)
        x = np.random.default_rng(0).random((64, *model.graph.input_shape), dtype=np.float32)
        caplog.clear()
        ort, dense = (prepare(model, engine)(x) for engine in ("ort", "dense"))
        warned = [r.getMessage() for r in caplog.records if "saturation" in r.getMessage()]
        if kernels == "vnni" and saturates(cpu_int8_kernels()):
            assert len(warned) == 1 and f"{KERNELS_ENV}={cpu_int8_kernels()}" in warned[0]
        else:
            assert not warned
            assert np.array_equal(ort, dense), float(np.abs(ort - dense).max())


def test_the_same_ticket_gives_the_same_file(synthetic_run, tmp_path):
    for name in ("a", "b"):
        export(synthetic_run / "ticket.slt", "onnx", tmp_path / f"{name}.onnx", quantize="int8",
               check=False)
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert _props(tmp_path / "a.onnx")["sltc.calibration_images"] == "512"


@requires_fashion
def test_export_reports_int8_accuracy_and_validate_exits_3_below_tolerance(tmp_path):
    """``export`` measures the int8 file next to the fp32 ticket; ``validate`` measures the
    same, and exits 3 when it falls more than --tolerance below the recorded accuracy (a
    LeNet-300-100 ticket on Fashion-MNIST: below 100%, so that it can fall)."""
    path = tmp_path / "q.onnx"
    proc = sltc("export", LENET, "-f", "onnx", "-o", path, "--quantize",
                "int8", "--json", check=True)
    report = last_json(proc)
    assert report["fp32_test_accuracy"] - report["test_accuracy"] <= report["accuracy_bound"]
    shown = json.loads(sltc("validate", path, "--json", check=True).stdout.splitlines()[-1])
    assert shown["test_accuracy"] == report["test_accuracy"] and shown["precision"] == "int8"
    assert shown["int8_kernels"] == cpu_int8_kernels()
    fp32 = json.loads(sltc("validate", LENET, "--json",
                           check=True).stdout.splitlines()[-1])
    assert fp32["test_accuracy"] == report["fp32_test_accuracy"]
    assert report["test_accuracy"] < 1.0
    recorded = min(1.0, report["test_accuracy"] + 0.05)  # the same file, recording more
    gap = recorded - report["test_accuracy"]
    model = onnx.load(str(path))
    for p in model.metadata_props:
        if p.key == "sltc.test_accuracy":
            p.value = str(recorded)
    onnx.save(model, str(path))
    assert sltc("validate", path, "--tolerance", str(gap + 0.01)).returncode == 0
    failed = sltc("validate", path, "--tolerance", str(gap / 2))
    assert failed.returncode == 3, failed.stderr
    assert "below the recorded" in failed.stderr.strip().splitlines()[-1]


@requires_fashion
def test_the_accuracy_warning_reaches_the_user(tmp_path):
    """Calibrated on images 16 times darker than the test set's, the int8 file loses far
    more than the bound: the warning says so on stderr, through the CLI, after onnxruntime's
    quantiser ran (whose own hint stays silent)."""
    data = tmp_path / "data"
    data.mkdir()
    for split, count, dim in (("train", 2000, 16), ("t10k", 1000, 1)):
        images, labels = (read_idx(FASHION / f"{split}-{kind}-idx{rank}-ubyte.gz")[:count]
                          for kind, rank in (("images", 3), ("labels", 1)))
        write_idx(data / f"{split}-images-idx3-ubyte", images // dim)
        write_idx(data / f"{split}-labels-idx1-ubyte", labels)
    proc = sltc("export", LENET, "-f", "onnx", "-o", tmp_path / "q.onnx", "--quantize", "int8",
                "--data", data, "--json", check=True)
    report = last_json(proc)
    assert report["accuracy_drop"] > report["accuracy_bound"]
    warned = [line for line in proc.stderr.splitlines() if "the int8 model scores" in line]
    assert len(warned) == 1 and f"{report['test_accuracy']:.4f}" in warned[0]
    assert "pre-process" not in proc.stderr


def test_int8_files_run_in_every_engine_and_bench_names_their_precision(synthetic_run,
                                                                        tmp_path):
    path = tmp_path / "q.onnx"
    export(synthetic_run / "ticket.slt", "onnx", path, quantize="int8", check=False)
    model = load(path)
    assert model.precision == "int8"
    assert "DequantizeLinear" in model.graph.folded().op_types()  # int8 weights stay int8
    x = np.random.default_rng(0).random((32, *model.graph.input_shape), dtype=np.float32)
    logits = {engine: prepare(model, engine)(x) for engine in ("dense", "ort", "csr", "openvino")}
    for engine in ("dense", "csr", "openvino"):  # numpy and OpenVINO against onnxruntime
        assert (logits[engine].argmax(1) == logits["ort"].argmax(1)).mean() >= 0.9
    records = json.loads(sltc("bench", synthetic_run / "ticket.slt", path, "--engine", "ort",
                              "--batch", "1,8", "--repeat", "3", "--warmup", "1", "--json",
                              check=True).stdout)
    assert {r["int8_kernels"] for r in records if r["precision"] == "int8"} == {cpu_int8_kernels()}
    assert {(r["precision"], r["batch"]) for r in records} == {
        (p, b) for p in ("fp32", "int8") for b in (1, 8)}
    assert all(r["speedup"] > 0 for r in records)


@pytest.mark.parametrize("args, says", [
    (["--quantize", "int4"], "--quantize 'int4': choose int8 or int8-dynamic"),
    (["--quantize", "int8", "--weights", "sparse"], "drop --weights sparse"),
])
def test_bad_quantize_options_are_one_line(synthetic_run, tmp_path, args, says):
    out = tmp_path / "q.onnx"
    proc = sltc("export", synthetic_run / "ticket.slt", "-f", "onnx", "-o", out, *args)
    assert proc.returncode == 2
    line, = proc.stderr.strip().splitlines()
    assert says in line and not out.exists()
    csr = sltc("export", synthetic_run / "ticket.slt", "-f", "csr", "-o", out, "--quantize",
               "int8")
    assert csr.returncode == 2 and "--quantize does not apply to --format csr" in csr.stderr


@pytest.mark.parametrize("flags, kernels", [
    ("fpu avx2 avx512f avx512_vnni", "vnni"), ("fpu avx2 avx_vnni", "vnni"),
    ("avx512_vnni amx_int8 amx_tile", "amx"), ("fp asimd asimddp", "dotprod"),
    ("fp asimd evtstrm", "neon"), ("fpu sse4_2 avx2", "avx2"), ("fpu ssse3 sse4_1", "sse"),
    ("fpu", "unknown")])
def test_int8_kernels_are_read_from_the_cpu_flags(tmp_path, monkeypatch, flags, kernels):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert cpu_int8_kernels(str(cpuinfo)) == kernels
    assert cpu_int8_kernels(str(tmp_path / "missing")) == "unknown"


def test_an_export_made_for_another_cpu_is_named_in_the_environment(synthetic_run, tmp_path):
    env = {KERNELS_ENV: "avx512"}
    out = tmp_path / "q.onnx"
    proc = sltc("export", synthetic_run / "ticket.slt", "-f", "onnx", "-o", out, "--quantize",
                "int8-dynamic", "--no-check", env=env)
    assert proc.returncode == 2 and not out.exists()
    line, = proc.stderr.strip().splitlines()
    assert f"{KERNELS_ENV}='avx512'" in line and "avx2" in line and "unset it" in line


def test_csr_runs_int8_segments_only_when_allowed(synthetic_run):
    """The default csr engine stays exact (no int8 step in any plan); allowed, its plans may
    hold int8 onnxruntime segments, and their logits still pick the same classes."""
    model = load(synthetic_run / "ticket.slt")
    x = np.random.default_rng(1).random((64, *model.graph.input_shape), dtype=np.float32)
    exact = prepare(model, "ort")(x)
    default = prepare(model, "csr")
    assert np.allclose(default(x), exact, rtol=1e-4, atol=1e-4)
    assert "int8_layers" not in default.choice(64)
    assert all(s.kind != "int8" for plan in default.predict.plans.values() for s in plan.steps)
    allowed = prepare(model, "csr", allow_int8=True)
    assert allowed.provider == "scipy+mkl+int8"  # the dev install carries MKL
    assert (allowed(x).argmax(1) == exact.argmax(1)).mean() >= 0.9
    choice = allowed.choice(64)
    products = {n.name for n in model.graph.nodes if n.op in ("MatMul", "Gemm", "Conv")}
    assert set(choice["int8_layers"]) <= products
    engine = allowed.predict  # the whole graph as one int8 segment, as the planner builds it
    g = engine.graph
    whole = _ort_segment(g.nodes, g, [g.input_name], [g.output_name], engine.values, None,
                         int8=True)
    assert (whole(x)[0].argmax(1) == exact.argmax(1)).mean() >= 0.9


def test_allow_takes_int8_only(synthetic_run):
    for command in ("bench", "validate"):
        proc = sltc(command, synthetic_run / "ticket.slt", "--allow", "fp16")
        assert proc.returncode == 2
        line, = proc.stderr.strip().splitlines()
        assert "--allow 'fp16'" in line and "int8" in line
    shown = json.loads(sltc("validate", synthetic_run / "ticket.slt", "--engine", "csr",
                            "--allow", "int8", "--json", check=True).stdout.splitlines()[-1])
    assert shown["provider"] == "scipy+mkl+int8"
    assert shown["test_accuracy"] >= shown["recorded_accuracy"] - 0.02


def test_batchnorm_folds_into_ternary_weights_with_a_scale_per_channel(conv_ticket, tmp_path):
    """onnxruntime's pre-processing folds a BatchNorm into the Conv before it: the
    weight is then +-c_k per output channel, and quantises to -1, 0, 1 with scale c_k, every
    weight exactly; the int8 file's test accuracy stays within a point of the fp32 ticket's
    (5 of these 512 synthetic test images)."""
    path = tmp_path / "c.onnx"
    report = export(conv_ticket, "onnx", path, quantize="int8")
    assert report["exact_weights"] == report["quantized_weights"] == 5
    assert report["fp32_test_accuracy"] - report["test_accuracy"] <= 0.01
    model = onnx.load(str(path))
    folded = Graph.from_ticket(Ticket.load(conv_ticket))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("BatchNormalization") < [n.op for n in folded.nodes].count(
        "BatchNormalization")
    per_channel = 0
    for name, (_, q) in _dequantised(path).items():
        assert set(np.unique(q)) <= {-1, 0, 1}, name
        scale = numpy_helper.to_array(next(t for t in model.graph.initializer
                                           if t.name == f"{name}_scale"))
        per_channel += scale.ndim == 1
    assert per_channel >= 2  # the BatchNorm-folded convolutions
