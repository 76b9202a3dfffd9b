"""The .slt format: byte-exact round trips, and every corruption ends in TicketError."""

import json
import struct
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from sltc.config import from_dict
from sltc.format import skeleton
from sltc.format.errors import ConfigError, TicketError
from sltc.format.maskcode import entropy_bits
from sltc.format.records import DrawnTensor, LayerSpec, ModelMeta
from sltc.format.seeding import generate_normal
from sltc.format.ticket import Ticket
from tests.helpers import reseal_ticket, ticket_header


def make_skeleton(fc1_shape=(50, 64)):
    """input (1x8x8) -> flatten -> fc1 -> + bn.running_mean -> + pos -> relu -> fc2."""
    nodes = [helper.make_node("Flatten", ["input"], ["h0"]),
             helper.make_node("Gemm", ["h0", "fc1.weight"], ["h1"], transB=1),
             helper.make_node("Add", ["h1", "bn.running_mean"], ["h2"]),
             helper.make_node("Add", ["h2", "pos"], ["h3"]),
             helper.make_node("Relu", ["h3"], ["h4"]),
             helper.make_node("Gemm", ["h4", "fc2.weight"], ["logits"], transB=1)]
    inits = [skeleton.placeholder("fc1.weight", fc1_shape), skeleton.placeholder("fc2.weight", (10, 50)),
             skeleton.placeholder("bn.running_mean", (50,)), skeleton.placeholder("pos", (50,))]
    graph = helper.make_graph(
        nodes, "test", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def make_ticket(seed=3, density=0.1, granularity="weight"):
    rng = np.random.default_rng(seed)
    layers = {"fc1": LayerSpec("fc1", (50, 64), 64, "signed_constant", 2**0.5, granularity,
                               "fc1.weight"),
              "fc2": LayerSpec("fc2", (10, 50), 50, "uniform", 1.0, None, "fc2.weight")}
    shape = (50, 64) if granularity == "weight" else (50,)
    masks = {"fc1": rng.random(shape) < density, "fc2": np.ones((10, 50), dtype=bool)}
    extras = {"bn.running_mean": rng.standard_normal(50).astype(np.float32)}
    tensors = [DrawnTensor("pos", (50,), 0.02)]
    meta = {"input_shape": [1, 8, 8], "classes": 10, "method": "crbg",
            "config": from_dict({"seed": seed}).to_dict(), "test_accuracy": None,
            "preprocessing": {"mean": 0.5, "std": 0.25}}
    ticket = Ticket(seed, layers, masks, extras, meta, tensors, make_skeleton())
    meta["sparsity"] = ticket.sparsity()
    return ticket


@pytest.fixture(scope="module")
def ticket_bytes():
    return make_ticket().to_bytes()


@pytest.mark.parametrize("granularity", ["weight", "neuron"])
def test_round_trip_is_exact(granularity):
    t = make_ticket(granularity=granularity)
    data = t.to_bytes()
    back = Ticket.from_bytes(data)
    assert back.to_bytes() == data
    assert back.layers == t.layers and list(back.layers) == ["fc1", "fc2"]
    for name in t.layers:
        assert np.array_equal(back.masks[name], t.masks[name])
        assert np.array_equal(back.weight(name), t.weight(name))
    assert np.array_equal(back.extras["bn.running_mean"], t.extras["bn.running_mean"])
    assert back.meta == t.meta and back.seed == t.seed and back.tensors == t.tensors
    assert skeleton.serialize(back.skeleton) == skeleton.serialize(t.skeleton)
    filled = back.graph_tensors()
    assert set(filled) == {"fc1.weight", "fc2.weight", "bn.running_mean", "pos"}
    assert np.array_equal(filled["pos"], generate_normal(t.seed, "pos", (50,), 0.02))


def test_neuron_masks_zero_whole_rows():
    t = make_ticket(granularity="neuron")
    w = t.weight("fc1")
    assert np.array_equal((np.abs(w).sum(1) > 0), t.masks["fc1"])


def test_size_near_entropy_floor():
    t = make_ticket(density=0.1)
    rng = np.random.default_rng(0)
    t.layers["fc1"] = replace(t.layers["fc1"], shape=(300, 784), fan_in=784)
    t.masks["fc1"] = rng.random((300, 784)) < 0.1
    floor = entropy_bits(300 * 784, int(t.masks["fc1"].sum())) / 8
    meta = len(json.dumps(t.meta, sort_keys=True, separators=(",", ":")))  # the run's config
    assert len(t.to_bytes()) <= 1.02 * floor + 2048 + meta


@pytest.mark.parametrize("edit,message", [
    (lambda h: (h.update(seed=h["seed"] + 1), h["meta"]["config"].update(seed=h["seed"])),
     "SHA-256"),
    (lambda h: h.update(seed=h["seed"] + 1), "not the ticket's seed"),
    (lambda h: h["layers"][0].update(shape=[2**15, 2**15], fan_in=2**15,
                                     mask_shape=[2**15, 2**15]), "more than"),
    (lambda h: h.update(meta=[]), "meta must be an object"),
    (lambda h: h["meta"].update(input_shape="1x8x8"), "input_shape"),
    (lambda h: h["meta"].update(input_shape=[1, 0, 8]), "input_shape"),
    (lambda h: h["meta"].update(classes=0), "classes"),
    (lambda h: h["meta"]["preprocessing"].update(std=0), "positive std"),
    (lambda h: h["meta"].update(sparsity="high"), "sparsity"),
    (lambda h: h["meta"].update(sparsity=0.1), "meta.sparsity 0.1 disagrees with the masks"),
    (lambda h: h["meta"].update(sparsity=h["meta"]["sparsity"] + 1e-8), "disagrees"),
    (lambda h: h.pop("skeleton"), "broken header: missing key 'skeleton'"),
    (lambda h: h["meta"].pop("classes"), "classes"),
    (lambda h: h["meta"].update(test_accuracy=[1]), "test_accuracy"),
    (lambda h: h["meta"].update(config=5), "meta.config"),
    (lambda h: h["meta"]["config"].update(seed=h["seed"] + 1), "is not the ticket's seed"),
    (lambda h: h["meta"]["config"]["data"].update(name="imagenet"), "data.name"),
    (lambda h: h["meta"]["config"]["data"].update(synthetic_size=10**12), "synthetic_size"),
    (lambda h: h["generator"].update(name="mt19937"), "generator"),
    (lambda h: h["layers"][0].update(shape=[51, 64]), "mask shape"),
    (lambda h: h["layers"][0].update(shape=[2**20, 2**12], fan_in=2**12, mask_shape=[2**20, 2**12]),
     "more than"),
    (lambda h: h["layers"][0].update(offset=1), "tile"),
    (lambda h: h["layers"][0].update(ones=h["layers"][0]["ones"] + 1), "ones|rans"),
    (lambda h: h["layers"][0].update(encoding="zip"), "encoding"),
    (lambda h: h["layers"][0].pop("crc32"), "broken header"),
    (lambda h: h["extras"][0].update(shape=[51]), "extra"),
    (lambda h: h.update(layers="nope"), "broken header"),
    (lambda h: h["layers"][0].update(tensor=7), "tensor must be a string"),
    (lambda h: h["layers"][0].update(tensor="other"), "placeholder 'fc1.weight' has no tensor"),
    (lambda h: h["tensors"][0].update(std=-1.0), r"std must be a number in \[1e-12, 1e\+06\]"),
    (lambda h: h["tensors"][0].update(std=1e7), "std must be a number in"),
    (lambda h: h["tensors"][0].update(std=1e-13), "std must be a number in"),
    (lambda h: h["meta"].pop("test_accuracy"), "missing key 'meta.test_accuracy'"),
    (lambda h: h["tensors"][0].update(shape=[49]), "placeholder 'pos' has shape"),
    (lambda h: h["skeleton"].update(size=h["skeleton"]["size"] + 1), "inflates"),
    (lambda h: h["skeleton"].update(size=2**40), "outside"),
    (lambda h: h["skeleton"].update(encoding="lzma"), "unknown encoding"),
])
def test_tampered_headers_are_named(ticket_bytes, edit, message):
    header = ticket_header(ticket_bytes)
    edit(header)
    with pytest.raises(TicketError, match=message):
        Ticket.from_bytes(reseal_ticket(ticket_bytes, header))


@pytest.mark.parametrize("raw,message", [
    (b"\x08\x01\xff\xff", "not a valid ONNX model"),
    (skeleton.serialize(make_skeleton((64, 50))), "placeholder 'fc1.weight' has shape"),
])
def test_broken_skeletons_are_named(monkeypatch, raw, message):
    monkeypatch.setattr(skeleton, "serialize", lambda model: raw)
    with pytest.raises(TicketError, match=message):
        Ticket.from_bytes(make_ticket().to_bytes())


def test_wrong_magic_and_version(ticket_bytes):
    with pytest.raises(TicketError, match="magic"):
        Ticket.from_bytes(b"PK\x03\x04" + ticket_bytes[4:])
    bumped = bytearray(ticket_bytes)
    bumped[8:10] = struct.pack("<H", 2)
    with pytest.raises(TicketError, match="unsupported ticket version 2"):
        Ticket.from_bytes(bytes(bumped))


def test_records_read_back_what_they_write(ticket_bytes):
    t = Ticket.from_bytes(ticket_bytes)
    for spec in t.layers.values():
        assert LayerSpec.from_json(spec.to_json()) == spec
    assert [DrawnTensor.from_json(d.to_json()) for d in t.tensors] == t.tensors
    meta = t.model_meta()
    assert ModelMeta.from_json(meta.to_json()) == meta
    assert (meta.input_shape, meta.classes, meta.seed) == ((1, 8, 8), 10, t.seed)
    assert meta.data == t.meta["config"]["data"] and meta.sparsity == t.sparsity()
    with pytest.raises(TicketError, match="granularity"):
        LayerSpec.from_json({**t.layers["fc1"].to_json(), "granularity": "row"})
    with pytest.raises(TicketError, match="std must be a number in"):
        DrawnTensor.from_json({**t.tensors[0].to_json(), "std": 0})


def test_sparsity_is_the_masks_and_tolerates_float_rounding(ticket_bytes):
    t = Ticket.from_bytes(ticket_bytes)
    kept = int(t.masks["fc1"].sum())
    assert t.meta["sparsity"] == 1 - kept / (50 * 64)  # ungated fc2 does not count
    header = ticket_header(ticket_bytes)
    header["meta"]["sparsity"] = (50 * 64 - kept) / (50 * 64)  # another order: within 1e-9
    assert Ticket.from_bytes(reseal_ticket(ticket_bytes, header)).meta["sparsity"] == \
        header["meta"]["sparsity"]


def test_seeds_up_to_2_64_write_and_read():
    t = make_ticket(seed=2**64 - 1)
    back = Ticket.from_bytes(t.to_bytes())
    assert back.seed == 2**64 - 1 and back.to_bytes() == t.to_bytes()
    assert from_dict({"seed": 2**63}).seed == 2**63
    with pytest.raises(ConfigError, match="seed"):
        from_dict({"seed": 2**64})


def test_later_minor_versions_read_ignoring_unknown_keys(ticket_bytes):
    """A minor version above 1 only adds keys; a 1.1 reader ignores unknown keys of the
    header, its table entries and meta, and reads the rest as 1.1."""
    header = ticket_header(ticket_bytes)
    header["provenance"] = {"tool": "another writer"}
    header["layers"][0]["note"], header["tensors"][0]["note"] = "x", "y"
    header["extras"][0]["note"], header["skeleton"]["note"] = "z", "w"
    header["meta"]["note"] = "kept"
    back = Ticket.from_bytes(reseal_ticket(ticket_bytes, header, minor=7))
    want = Ticket.from_bytes(ticket_bytes)
    assert back.version == (1, 7) and back.meta["note"] == "kept"
    assert back.layers == want.layers and back.tensors == want.tensors
    assert all(np.array_equal(back.masks[k], want.masks[k]) for k in want.masks)
    header["meta"]["config"]["train"]["future_key"] = 1  # a record: kept as it is
    assert Ticket.from_bytes(reseal_ticket(ticket_bytes, header, minor=7)).meta["config"][
        "train"]["future_key"] == 1


def test_a_1_0_preamble_on_a_1_1_header_says_so(ticket_bytes):
    with pytest.raises(TicketError, match=r"says format 1.0 but the header is a 1.1 header"):
        Ticket.from_bytes(reseal_ticket(ticket_bytes, ticket_header(ticket_bytes), minor=0))


def test_a_1_1_preamble_on_a_1_0_header_says_so():
    """The other way round (format.md section 2.5): never a missing key."""
    from tests.helpers import ROOT

    data = (ROOT / "tests/data/lenet300-v1.0.slt").read_bytes()
    with pytest.raises(TicketError, match=r"says format 1.1 but the header is a 1.0 header"):
        Ticket.from_bytes(reseal_ticket(data, ticket_header(data), minor=1))


@pytest.mark.parametrize("edit,message", [
    (lambda op: op.update(momentum=0.1), r"has the fields \['eps', 'momentum', 'name'\]"),
    (lambda op: op.update(eps=0), "eps 0 is not a number in"),
    (lambda op: op.update(eps=True), "eps True is not a number in"),
])
def test_format_1_0_ops_take_their_fields_and_no_more(edit, message):
    """A 1.0 op holds exactly its fields, each of its type and range (section 2.5)."""
    from tests.helpers import ROOT

    data = (ROOT / "tests/data/conv2bn-v1.0.slt").read_bytes()
    header = ticket_header(data)
    edit(next(op for op in header["meta"]["graph"] if op["op"] == "batchnorm"))
    with pytest.raises(TicketError, match=message):
        Ticket.from_bytes(reseal_ticket(data, header))
    header = ticket_header(data)
    next(op for op in header["meta"]["graph"] if op["op"] == "conv2d")["padding"] = 1.0
    with pytest.raises(TicketError, match="padding 1.0 is not an integer"):
        Ticket.from_bytes(reseal_ticket(data, header))


def test_a_config_without_a_section_reads_with_its_defaults(ticket_bytes):
    """meta.config is a run config: a missing key (a whole section) takes its default, for
    every reader (format.md section 2.1)."""
    header = ticket_header(ticket_bytes)
    del header["meta"]["config"]["data"]
    t = Ticket.from_bytes(reseal_ticket(ticket_bytes, header))
    default = from_dict({}).to_dict()["data"]
    assert t.meta["config"]["data"] == default and t.model_meta().data == default


def test_an_ungated_layer_is_a_constant_mask(monkeypatch):
    """An all-ones bitmap is refused for an ungated layer: the spec's one encoding is
    constant (format.md section 2.1)."""
    from sltc.format import maskcode

    encode = maskcode.encode
    monkeypatch.setattr(maskcode, "encode", lambda mask, encoding=None: (
        "bitmap", maskcode.pack(mask).tobytes()) if mask.all() else encode(mask, encoding))
    data = make_ticket().to_bytes()
    assert ticket_header(data)["layers"][1]["encoding"] == "bitmap"
    with pytest.raises(TicketError, match="'fc2' is ungated .* encoding constant, all ones"):
        Ticket.from_bytes(data)


def test_the_skeleton_names_sltc_as_its_producer(synthetic_run):
    """producer_name sltc, producer_version empty: the bytes do not depend on the torch
    release (format.md section 2.4)."""
    graph = Ticket.load(synthetic_run / "ticket.slt").skeleton
    assert (graph.producer_name, graph.producer_version) == ("sltc", "")


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_truncation_or_flip_is_a_ticket_error(ticket_bytes, data):
    blob = bytearray(ticket_bytes)
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] ^= data.draw(st.integers(1, 255))
    assume(bytes(blob) != ticket_bytes)  # two flips of one byte can cancel out
    with pytest.raises(TicketError):
        Ticket.from_bytes(bytes(blob))


def test_cli_reports_corruption_in_one_line(tmp_path, ticket_bytes):
    from tests.helpers import sltc

    bad = tmp_path / "bad.slt"
    bad.write_bytes(ticket_bytes[:-10])
    for cmd in ("inspect", "eval"):
        proc = sltc(cmd, bad)
        assert proc.returncode == 2
        line, = proc.stderr.strip().splitlines()
        assert "checksum mismatch" in line and str(bad) in line


def test_a_config_out_of_range_reads_and_is_refused_where_it_builds(ticket_bytes):
    """meta.config is a record: a reader checks its seed and data section only; rebuilding
    the network from it validates it whole (format.md section 2.1)."""
    from sltc.rebuild import model_from_ticket

    for section, key, value in (("model", "widths", [0]), ("train", "future_key", 1)):
        header = ticket_header(ticket_bytes)
        header["meta"]["config"][section][key] = value
        t = Ticket.from_bytes(reseal_ticket(ticket_bytes, header))
        assert t.meta["config"][section][key] == value
        with pytest.raises(TicketError, match=f"cannot rebuild.*{key}"):
            model_from_ticket(t)


def test_the_recorded_defaults_are_the_schemas():
    """A ticket's config is filled from config_record.DEFAULTS without the schema; they are
    the schema's defaults (the CRBG start values computed from the method and target)."""
    from sltc.format.config_record import DEFAULTS, whole

    schema = from_dict({}).to_dict()
    assert whole({}) == schema, "regenerate config_record.DEFAULTS from RunConfig().to_dict()"
    assert DEFAULTS["gates"]["mu_init"] is None and DEFAULTS["gates"]["lambda"] is None
    for target in (0.5, 0.9):
        for method in ("crbg", "edge_popup", "hard_concrete"):
            record = {"gates": {"method": method, "target_sparsity": target}}
            assert whole(record) == from_dict(record).to_dict()


def test_a_config_section_of_the_wrong_kind_is_refused(ticket_bytes):
    """A section that is not an object cannot take its defaults: refused at load, by name;
    rebuilding from such a record (a ticket built in Python) is one TicketError too."""
    from sltc.rebuild import model_from_ticket

    for section in ("model", "gates"):
        header = ticket_header(ticket_bytes)
        header["meta"]["config"][section] = 5
        with pytest.raises(TicketError, match=f"meta.config.{section} must be an object"):
            Ticket.from_bytes(reseal_ticket(ticket_bytes, header))
    t = Ticket.from_bytes(ticket_bytes)
    t.info, t.meta = None, {**t.meta, "config": {**t.meta["config"], "model": 5}}
    with pytest.raises(TicketError, match="cannot rebuild.*model"):
        model_from_ticket(t)
