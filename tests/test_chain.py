"""Any gated network, end to end: discover -> ticket -> ONNX (dense, sparse) and CSR -> every
engine, against the torch model rebuilt from the ticket."""


import numpy as np
import onnx
import pytest
import torch

from sltc.data import recorded_test_set
from sltc.exporters import export
from sltc.format.ticket import Ticket
from sltc.rebuild import model_from_ticket
from sltc.runtime.engines import ENGINES, prepare
from sltc.runtime.loader import load
from sltc.runtime.validate import validate
from tests.helpers import discover_here, last_json, sltc_here
from tests.models import mixed

pytest.importorskip("onnxruntime")

CONV = ["model.widths=null", "model.batchnorm=true", "train.epochs=1", "train.max_steps=3"]
ARCHS = {  # name: --set options for a few training steps on synthetic data
    "mixed": ["model.arch=python:tests.models:mixed", "model.widths=null", "train.epochs=2",
              "train.max_steps=10"],
    "mlp": ["train.epochs=1", "train.max_steps=10"],
    # conv2 and conv6 (the same layers) go through tests/test_zoo.py; 128 test images
    "conv4": ["model.arch=conv4", *CONV, "data.synthetic_size=512", "data.val_size=64"],
}



@pytest.fixture(scope="module", params=sorted(ARCHS))
def chain(request, tmp_path_factory):
    """A ticket of one architecture and its three exports."""
    out = tmp_path_factory.mktemp(request.param)
    sets = [a for s in ARCHS[request.param] for a in ("--set", s)]
    discover_here("examples/synthetic.yaml", "--out", out / "run", *sets)
    ticket = out / "run/ticket.slt"
    files = {"ticket": ticket}
    for weights in ("dense", "sparse"):
        files[weights] = out / f"{weights}.onnx"
        report = export(ticket, "onnx", files[weights], weights=weights)
        assert report["top1_agreement"] == 1.0 and report["max_rel_diff"] <= 1e-4
        onnx.checker.check_model(onnx.load(str(files[weights])), full_check=True)
    files["csr"] = out / "m.csr.safetensors"
    export(ticket, "csr", files["csr"])
    return files


def test_every_engine_matches_torch_on_every_file(chain):
    ticket = Ticket.load(chain["ticket"])
    test = recorded_test_set(ticket.meta["config"]["data"], ticket.seed)
    x = test.images[:64].astype(np.float32) / np.float32(255)
    own = mixed((1, 28, 28), 10) if ticket.meta["config"]["model"]["arch"].startswith(
        "python:") else None  # a user's network: the user passes it, sltc imports nothing
    with torch.no_grad():
        want = model_from_ticket(ticket, own)(torch.from_numpy(x)).numpy()
    scale = np.abs(want).max()
    for kind, path in chain.items():
        model = load(path)
        for engine in ENGINES.names():
            got = prepare(model, engine, threads=1)(x)
            assert np.abs(got - want).max() <= 1e-4 * scale, (kind, engine)
    assert (want.std(axis=0) > 1e-2 * scale).any(), "logits that ignore the input prove little"


def test_validate_prints_the_ticket_accuracy_exactly(chain):
    """The CLI on the ticket with every engine; the API (the same function) on the exports."""
    recorded = Ticket.load(chain["ticket"]).meta["test_accuracy"]
    for engine in ENGINES.names():
        out = last_json(sltc_here("validate", chain["ticket"], "--engine", engine, "--json",
                                  check=True))
        assert out["test_accuracy"] == recorded, engine
    for kind in ("dense", "sparse", "csr"):
        for engine in ENGINES.names():
            assert validate(chain[kind], engine)["test_accuracy"] == recorded, (kind, engine)
