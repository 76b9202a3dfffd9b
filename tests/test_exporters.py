"""Exports against independent references: onnxruntime, onnx's ReferenceEvaluator, scipy."""

import json

import numpy as np
import onnx
import pytest
import scipy.sparse as sp
import torch
from onnx.reference import ReferenceEvaluator
from safetensors import safe_open
from safetensors.numpy import load_file

from sltc.data import load_split, recorded_test_set
from sltc.exporters import EXPORTERS, export
from sltc.format.errors import SltcError
from sltc.format.seeding import generate_weight
from sltc.format.ticket import Ticket
from sltc.rebuild import model_from_ticket
from tests.helpers import FASHION, discover_here, last_json, requires_fashion, sltc, sltc_here

ort = pytest.importorskip("onnxruntime")


def _images(ticket, n=64):
    data = ticket.meta["config"]["data"]
    test = recorded_test_set(data, ticket.meta["config"]["seed"])
    return test.images[:n].astype(np.float32) / np.float32(255), test


def _torch_logits(ticket, x):
    with torch.no_grad():
        return model_from_ticket(ticket)(torch.from_numpy(x)).numpy()


def _ort(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"input": x})[0]


@pytest.fixture(scope="module")
def conv_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("conv") / "run"
    discover_here("examples/synthetic.yaml", "--out", out, "--set", "model.arch=conv2",
                  "--set", "model.widths=null", "--set", "model.batchnorm=true", "--set",
                  "train.epochs=1", "--set", "train.max_steps=8", "--set", "data.synthetic_size=512",
                  "--set", "data.val_size=64")
    return out


@pytest.fixture(scope="module")
def neuron_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("neuron") / "run"
    discover_here("examples/synthetic.yaml", "--out", out,
                  "--set", "gates.granularity=neuron", "--set", "gates.target_sparsity=0.5")
    return out


@pytest.mark.parametrize("run_name", ["synthetic_run", "conv_run"])
def test_onnx_dense_and_sparse_match_torch(request, tmp_path, run_name):
    run = request.getfixturevalue(run_name)
    ticket = Ticket.load(run / "ticket.slt")
    x, _ = _images(ticket)
    expected = _torch_logits(ticket, x)
    sizes = {}
    for weights in ("dense", "sparse"):
        path = tmp_path / f"{weights}.onnx"
        report = export(run / "ticket.slt", "onnx", path, weights=weights)
        assert report["top1_agreement"] == 1.0 and report["max_abs_diff"] < 1e-4
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        assert [i.name for i in model.graph.input] == ["input"]
        assert [o.name for o in model.graph.output] == ["logits"]
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
        props = {p.key: p.value for p in model.metadata_props}
        assert int(props["sltc.seed"]) == ticket.seed and "sltc.ticket_sha256" in props
        got = _ort(path, x)
        assert np.abs(got - expected).max() < 1e-4
        assert (got.argmax(1) == expected.argmax(1)).all()
        sizes[weights] = path.stat().st_size
        if weights == "dense":
            ref = ReferenceEvaluator(model).run(None, {"input": x[:8]})[0]
            assert np.abs(ref - got[:8]).max() < 1e-4
    # int64 index + float32 value per kept weight, against 4 bytes per weight dense
    density = 1 - ticket.meta["sparsity"]
    assert sizes["sparse"] < sizes["dense"] * (3 * density + 0.05)


def test_csr_rebuilt_with_scipy_alone(synthetic_run, tmp_path):
    ticket = Ticket.load(synthetic_run / "ticket.slt")
    x, _ = _images(ticket)
    expected = _torch_logits(ticket, x)
    for values in ("implied", "stored"):
        path = tmp_path / f"{values}.csr.safetensors"
        export(synthetic_run / "ticket.slt", "csr", path, values=values)
        tensors = load_file(str(path))
        with safe_open(str(path), "np") as f:
            manifest = json.loads(f.metadata()["sltc"])
        assert all(t.dtype == np.int32 for k, t in tensors.items() if k.endswith(("ptr", "ices")))
        h = x.reshape(len(x), -1)
        pre = manifest["preprocessing"]
        h = (h - np.float32(pre["mean"])) / np.float32(pre["std"])
        layers = manifest["layers"]
        for i, layer in enumerate(layers):
            name, shape = layer["name"], layer["shape"]
            if values == "stored":
                data = tensors[f"{name}.values"]
            else:  # the seed implies the values: regenerate, then pick the kept entries
                dense = generate_weight(manifest["seed"], name, tuple(shape), layer["init"],
                                        layer["fan_in"], layer["gain"])
                cols = tensors[f"{name}.indices"]
                rows = np.repeat(np.arange(shape[0]), np.diff(tensors[f"{name}.indptr"]))
                data = dense[rows, cols]
            w = sp.csr_matrix((data, tensors[f"{name}.indices"], tensors[f"{name}.indptr"]),
                              shape=shape)
            h = np.asarray((w @ h.T).T)
            if i < len(layers) - 1:
                h = np.maximum(h, 0)
        assert np.abs(h - expected).max() < 1e-4


def test_compact_keeps_exactly_the_surviving_units(neuron_run, tmp_path):
    ticket = Ticket.load(neuron_run / "ticket.slt")
    x, _ = _images(ticket)
    full, small = tmp_path / "full.onnx", tmp_path / "compact.onnx"
    export(neuron_run / "ticket.slt", "onnx", full)
    export(neuron_run / "ticket.slt", "onnx", small, compact_units=True)
    model = onnx.load(str(small))
    onnx.checker.check_model(model, full_check=True)
    dims = {i.name: list(i.dims) for i in model.graph.initializer}
    shapes = [dims[n.input[1]] for n in model.graph.node if n.op_type == "MatMul"]
    names = list(ticket.layers)
    kept = [int(ticket.masks[n].sum()) for n in names]
    assert shapes == [[784, kept[0]], [kept[0], kept[1]], [kept[1], 10]]
    assert kept[0] < 64 and kept[1] < 32
    assert np.abs(_ort(small, x) - _ort(full, x)).max() < 1e-5


def test_failed_parity_leaves_no_file(synthetic_run, tmp_path):
    out = tmp_path / "bad.onnx"
    with pytest.raises(SltcError, match="parity check failed"):
        export(synthetic_run / "ticket.slt", "onnx", out, tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_auto_writes_the_smaller_onnx_and_a_larger_sparse_one_is_flagged(tmp_path):
    run = tmp_path / "dense_run"  # at 20% sparsity, 8-byte indices make sparse the larger
    discover_here("examples/synthetic.yaml", "--out", run, "--set", "gates.target_sparsity=0.2",
                  "--set", "train.epochs=1")
    for target, path in (("sparse", "s.onnx"), ("dense", "d.onnx"), ("auto", "a.onnx")):
        proc = sltc("export", run / "ticket.slt", "-f", "onnx", "--weights", target, "-o",
                    tmp_path / path, "--json", check=True)
        report = last_json(proc)
        if target == "sparse":
            assert "larger than the dense one" in proc.stderr and "--weights dense" in proc.stderr
    sizes = {p: (tmp_path / p).stat().st_size for p in ("s.onnx", "d.onnx", "a.onnx")}
    assert sizes["s.onnx"] > sizes["d.onnx"] == sizes["a.onnx"] and report["weights"] == "dense"
    props = {p.key: p.value for p in onnx.load(tmp_path / "a.onnx").metadata_props}
    assert props["sltc.weights"] == "dense"


def test_registry_and_cli_errors(synthetic_run, tmp_path):
    assert set(EXPORTERS.names()) >= {"onnx", "csr", "ticket"}
    proc = sltc("export", synthetic_run / "ticket.slt", "--format", "tflite", "-o", tmp_path / "x")
    assert proc.returncode == 2
    line, = proc.stderr.strip().splitlines()
    assert "csr, onnx, ticket" in line
    export(synthetic_run / "ticket.slt", "ticket", tmp_path / "t.slt")
    assert (tmp_path / "t.slt").read_bytes() == (synthetic_run / "ticket.slt").read_bytes()


@pytest.mark.parametrize("fmt, options, named", [
    ("csr", ["--weights", "sparse"], "--weights"),
    ("csr", ["--compact"], "--compact"),
    ("csr", ["--no-check"], "--no-check"),
    ("ticket", ["--values", "stored"], "--values"),
    ("onnx", ["--values", "stored"], "--values"),
    ("onnx", ["--no-check", "--data", "."], "--data"),
])
def test_options_a_format_ignores_are_refused(synthetic_run, tmp_path, fmt, options, named):
    """An option the format would not read is one line naming it and the fix; nothing is
    written."""
    out = tmp_path / "out"
    proc = sltc_here("export", synthetic_run / "ticket.slt", "--format", fmt, "-o", out, *options)
    assert proc.returncode == 2, proc.stderr
    line, = proc.stderr.strip().splitlines()
    assert line.startswith(f"sltc: error: {named} ") and "drop" in line, line
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_other_options_that_would_do_nothing_are_refused(synthetic_run, tmp_path):
    freeze = sltc("freeze", synthetic_run, "-o", tmp_path / "t.slt", "--scope", "layer")
    bench = sltc("bench", synthetic_run / "ticket.slt", "--data", tmp_path)
    for proc, named, fix in ((freeze, "--scope", "--target-sparsity"),
                             (bench, "--data", "--inputs test")):
        assert proc.returncode == 2, proc.stderr
        line, = proc.stderr.strip().splitlines()
        assert line.startswith(f"sltc: error: {named} ") and fix in line, line
    assert list(tmp_path.iterdir()) == []


def test_sparse_onnx_weights_are_constants_as_the_spec_says(synthetic_run, tmp_path):
    """format.md section 4: each gated weight a leading Constant ``<tensor>.const`` whose
    sparse_value holds its nonzeros at increasing int64 linear positions."""
    ticket = Ticket.load(synthetic_run / "ticket.slt")
    export(synthetic_run / "ticket.slt", "onnx", tmp_path / "s.onnx", weights="sparse")
    model = onnx.load(tmp_path / "s.onnx")
    gated = [s for s in ticket.layers.values() if s.gated]
    assert not model.graph.sparse_initializer and gated
    leading = model.graph.node[:len(gated)]
    assert [n.op_type for n in leading] == ["Constant"] * len(gated)
    assert [n.name for n in leading] == [f"{s.tensor}.const" for s in gated]
    for node, spec in zip(leading, gated, strict=True):
        sparse = node.attribute[0].sparse_tensor
        assert node.output == [spec.tensor] and tuple(sparse.dims) == spec.shape
        assert (sparse.values.name, sparse.indices.name) == (f"{spec.tensor}.values",
                                                             f"{spec.tensor}.indices")
        idx = onnx.numpy_helper.to_array(sparse.indices)
        assert idx.dtype == np.int64 and idx.ndim == 1 and np.all(np.diff(idx) > 0)
        w = ticket.weight(spec.name).ravel()
        assert np.array_equal(idx, np.flatnonzero(w))
        assert np.array_equal(onnx.numpy_helper.to_array(sparse.values), w[idx])
    dense = {i.name for i in model.graph.initializer}
    assert all(s.tensor in dense for s in ticket.layers.values() if not s.gated)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["sltc.weights"] == "sparse" and props["sltc.compact"] == "False"


def test_each_format_takes_what_it_reads(synthetic_run, tmp_path):
    """The options left to each format still change what it writes."""
    ticket = synthetic_run / "ticket.slt"
    for fmt, options in (("csr", ["--values", "stored"]), ("onnx", ["--weights", "sparse"])):
        plain, chosen = tmp_path / f"plain.{fmt}", tmp_path / f"chosen.{fmt}"
        sltc("export", ticket, "--format", fmt, "-o", plain, check=True)
        sltc("export", ticket, "--format", fmt, "-o", chosen, *options, check=True)
        assert plain.read_bytes() != chosen.read_bytes()


@requires_fashion
@pytest.mark.parametrize("arch,sets", [
    ("lenet300", ["--set", "train.epochs=1"]),
    pytest.param("conv4", ["--set", "train.epochs=1", "--set", "train.max_steps=10",
                           "--set", "data.val_size=1000", "--set", "gates.recalibrate=1024"],
                 marks=pytest.mark.slow),  # 10,000 images through Conv-4 four times
])
def test_onnx_accuracy_on_the_whole_fashion_test_set(tmp_path, arch, sets):
    """The exported file scores the recorded accuracy on all 10,000 test images (a stronger
    check than export's own parity check on 512, which is skipped here)."""
    example = {"lenet300": "examples/lenet300-fashion.yaml",
               "conv4": "examples/conv4-fashion.yaml"}[arch]
    sltc("discover", example, "--out", tmp_path / "run", "--json", *sets, check=True)
    ticket = Ticket.load(tmp_path / "run/ticket.slt")
    test = load_split("fashion_mnist", "test", str(FASHION))
    for weights in ("dense", "sparse"):
        path = tmp_path / f"{weights}.onnx"
        export(tmp_path / "run/ticket.slt", "onnx", path, weights=weights, check=False)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        logits = np.concatenate([
            sess.run(["logits"], {"input": test.images[i:i + 500].astype(np.float32) / 255})[0]
            for i in range(0, len(test), 500)])
        acc = float((logits.argmax(1) == test.labels).mean())
        assert abs(acc - ticket.meta["test_accuracy"]) <= 0.0005


def test_compact_refuses_graphs_it_cannot_shrink_in_one_line(mixed_run, conv_ticket, tmp_path):
    for path, why in ((conv_ticket, "BatchNormalization"), (mixed_run / "ticket.slt", "--compact")):
        proc = sltc("export", path, "--format", "onnx", "--compact", "-o", tmp_path / "c.onnx")
        assert proc.returncode == 2
        line, = proc.stderr.strip().splitlines()
        assert why in line and "export without --compact" in line
    assert not (tmp_path / "c.onnx").exists()


def test_external_data_lands_whole_or_not_at_all(synthetic_run, tmp_path, monkeypatch):
    """Weights in a side file (protobuf's 2 GB cap; forced here for a small model): a failed
    parity check leaves neither file, a passing one both, and onnxruntime runs them."""
    import sltc.exporters.onnx as onnx_exporter

    monkeypatch.setattr(onnx_exporter, "EXTERNAL_DATA_BYTES", 0)
    out = tmp_path / "m.onnx"
    with pytest.raises(SltcError, match="parity check failed"):
        export(synthetic_run / "ticket.slt", "onnx", out, tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []
    report = export(synthetic_run / "ticket.slt", "onnx", out)
    assert report["external_data"] and sorted(p.name for p in tmp_path.iterdir()) == \
        ["m.onnx", "m.onnx.data"]
    x = np.zeros((2, 1, 28, 28), np.float32)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.run(["logits"], {"input": x})[0].shape == (2, 10)


def test_stored_values_of_an_ungated_layer_read_back(tmp_path):
    """--values stored writes an ungated layer's whole weight flat, as format.md section 3
    says and every reader checks: the file loads, with the ticket's weights."""
    from sltc.runtime.loader import load
    from tests.test_ticket import make_ticket

    ticket = make_ticket()  # fc2 is ungated
    ticket.save(tmp_path / "t.slt")
    export(tmp_path / "t.slt", "csr", tmp_path / "t.csr.safetensors", values="stored")
    assert load_file(str(tmp_path / "t.csr.safetensors"))["fc2.values"].shape == (500,)
    graph = load(tmp_path / "t.csr.safetensors").graph
    for name in ("fc1", "fc2"):
        assert np.array_equal(graph.constants[f"{name}.weight"], ticket.weight(name))
