"""The skeleton inside a ticket: what it holds, what it leaves out, and damaged ones."""

import numpy as np
import onnx
import pytest

from sltc.format import skeleton
from sltc.format.ticket import Ticket
from tests.helpers import sltc
from tests.models import mixed


def test_skeleton_holds_the_graph_and_placeholders_only(mixed_run):
    ticket = Ticket.load(mixed_run / "ticket.slt")
    holes = skeleton.placeholders(ticket.skeleton)
    # every gated weight, every tensor drawn by name and every statistic is a placeholder ...
    assert {s.tensor for s in ticket.layers.values()} <= set(holes)
    assert {"bn.running_mean", "bn.running_var"} == set(ticket.extras) <= set(holes)
    # ... with the shapes the tables give; the rest of the initializers are constants
    for s in ticket.layers.values():
        assert holes[s.tensor] == s.shape
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in ticket.skeleton.graph.initializer
              if t.name not in holes}
    assert np.all(stored["stem.bias"] == 0) and np.all(stored["norm1.weight"] == 1)
    # the network's own parameters are stored as it built them, never redrawn
    assert ticket.tensors == []
    built = dict(mixed((1, 28, 28), 10).named_parameters())
    for name in ("gamma", "pos_embed", "cls_token"):
        assert np.array_equal(stored[name], built[name].detach().numpy()), name
    assert np.all(stored["gamma"] == 0.5) and np.any(stored["pos_embed"] != 0)
    assert {n.op_type for n in ticket.skeleton.graph.node} >= {
        "Conv", "Add", "LayerNormalization", "Softmax", "MatMul", "Erf", "Concat"}


def test_writer_order_and_zlib_level_are_the_specs(mixed_run):
    """format.md 2.1 and 2.4: layers in named_modules order, extras sorted, the skeleton
    deflated at level 9, so another writer can match the bytes."""
    import zlib

    from sltc.layers import gated_layers
    from tests.helpers import ticket_header

    data = (mixed_run / "ticket.slt").read_bytes()
    header, ticket = ticket_header(data), Ticket.from_bytes(data)
    assert [s["name"] for s in header["layers"]] == [
        m.name for m in gated_layers(_gated_mixed(ticket))]
    assert [e["name"] for e in header["extras"]] == sorted(e["name"] for e in header["extras"])
    entry = header["skeleton"]
    body = 16 + int.from_bytes(data[12:16], "little")  # after the preamble and the header
    payload = data[body + entry["offset"]:body + entry["offset"] + entry["length"]]
    assert payload == zlib.compress(skeleton.serialize(ticket.skeleton), 9)
    assert zlib.compress(skeleton.serialize(ticket.skeleton), 1) != payload  # the level shows


def _gated_mixed(ticket):
    from sltc.config import from_dict
    from sltc.layers import gate

    return gate(mixed((1, 28, 28), 10), from_dict(ticket.meta["config"], names=False))


def test_own_parameters_survive_export_to_onnxruntime(mixed_run, tmp_path):
    """discover -> freeze -> export -> onnxruntime: the exported model holds the network's
    layer scale and position embeddings as built, and computes what the torch network
    computes with the ticket's masks."""
    import onnxruntime as ort
    import torch

    from sltc.exporters import export
    from sltc.rebuild import model_from_ticket

    ticket = Ticket.load(mixed_run / "ticket.slt")
    export(mixed_run / "ticket.slt", "onnx", tmp_path / "m.onnx")
    exported = onnx.load(tmp_path / "m.onnx")
    values = {t.name: onnx.numpy_helper.to_array(t) for t in exported.graph.initializer}
    own = mixed((1, 28, 28), 10)
    for name, param in own.named_parameters():
        if name in ("gamma", "pos_embed", "cls_token"):
            assert np.array_equal(values[name], param.detach().numpy()), name
    x = np.random.default_rng(1).random((8, 1, 28, 28), dtype=np.float32)
    got, = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"input": x})
    with torch.no_grad():
        want = model_from_ticket(ticket, own)(torch.from_numpy(x)).numpy()
    assert np.allclose(got, want, atol=1e-4 * np.abs(want).max()), np.abs(got - want).max()


def _rewrite(src, dst, edit):
    ticket = Ticket.load(src)
    edit(ticket.skeleton)
    ticket.save(dst)
    return dst


def _one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    line, = proc.stderr.strip().splitlines()
    assert line.startswith("sltc: error:") and all(n in line for n in needles), line


def test_damaged_skeletons_are_one_line_errors(synthetic_run, tmp_path, monkeypatch):
    src = synthetic_run / "ticket.slt"
    garbage = tmp_path / "garbage.slt"
    with monkeypatch.context() as m:
        m.setattr(skeleton, "serialize", lambda model: b"\x08\x01\xff\xff")
        Ticket.load(src).save(garbage)
    for cmd in (("inspect", garbage), ("validate", garbage), ("eval", garbage),
                ("export", garbage, "--format", "onnx", "-o", tmp_path / "x.onnx")):
        _one_line_error(sltc(*cmd), "not a valid ONNX model")
    assert not (tmp_path / "x.onnx").exists()

    def unknown_op(model):
        model.graph.node[-1].op_type = "NoSuchOp"

    strange = _rewrite(src, tmp_path / "strange.slt", unknown_op)
    for engine in ("dense", "ort"):  # the op table is every engine's allowlist
        _one_line_error(sltc("validate", strange, "--engine", engine),
                        "op NoSuchOp is not one sltc runs")

    def wrong_shape(model):
        hole = next(t for t in model.graph.initializer if skeleton.is_placeholder(t))
        hole.dims[0] += 1

    _one_line_error(sltc("validate", _rewrite(src, tmp_path / "shape.slt", wrong_shape)),
                    "placeholder", "has shape")

    def wrong_axis(model):  # every shape matches, but the graph no longer computes
        flatten = next(n for n in model.graph.node if n.op_type == "Flatten")
        flatten.attribute[0].i = 3

    broken = _rewrite(src, tmp_path / "axis.slt", wrong_axis)
    for engine in ("dense", "csr", "ort"):
        proc = sltc("validate", broken, "--engine", engine)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("name", ["lenet300", "conv2bn"])
def test_format_1_0_tickets_read_as_before(name, tmp_path):
    """Tickets written by sltc 0.1.0: same accuracy, same exported ONNX outputs."""
    from tests.helpers import FASHION, ROOT

    if name == "lenet300" and not FASHION.is_dir():
        pytest.skip("needs apt-get install dataset-fashion-mnist")
    import json

    import onnxruntime as ort

    from sltc.data import recorded_test_set

    path = ROOT / f"tests/data/{name}-v1.0.slt"
    expected = np.load(ROOT / "tests/data/v1.0-expected.npz", allow_pickle=False)
    ticket = Ticket.load(path)
    assert ticket.version == (1, 0)
    test = recorded_test_set(ticket.meta["config"]["data"], ticket.seed)
    x = test.images[:64].astype(np.float32) / np.float32(255)
    for weights in ("dense", "sparse"):
        out = tmp_path / f"{weights}.onnx"
        sltc("export", path, "--format", "onnx", "--weights", weights, "-o", out, check=True)
        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = sess.run(["logits"], {"input": x})[0]
        assert np.allclose(got, expected[f"{name}_onnx_{weights}"], rtol=1e-5, atol=1e-5)
    evaluated = json.loads(sltc("eval", path, "--json", check=True).stdout.splitlines()[-1])
    assert evaluated["test_accuracy"] == float(expected[f"{name}_eval_accuracy"])
    assert json.loads(sltc("inspect", path, "--json", check=True).stdout.splitlines()[-1])[
        "total"]["sparsity"] == pytest.approx(ticket.meta["sparsity"])
