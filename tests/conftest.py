import os
import shutil

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # a worker per core (make test): one thread each
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from tests.helpers import ROOT, discover_here  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory):
    """One small discover run on the synthetic dataset, shared by tests that read it."""
    out = tmp_path_factory.mktemp("run") / "syn"
    discover_here("examples/synthetic.yaml", "--out", out)
    return out


@pytest.fixture(scope="session")
def mixed_run(tmp_path_factory):
    """A user's own network (tests/models.py: strided and grouped convs with bias, BatchNorm, a
    residual add, class token, position embeddings, LayerNorm, attention, GELU)."""
    out = tmp_path_factory.mktemp("run") / "mixed"
    discover_here("examples/synthetic.yaml", "--out", out,
                  "--set", "model.arch=python:tests.models:mixed", "--set", "model.widths=null",
                  "--set", "train.epochs=2", "--set", "train.max_steps=10")
    return out


@pytest.fixture(scope="session")
def conv_ticket():
    """A Conv-2 ticket with BatchNorm written by sltc 0.1.0 (format 1.0)."""
    return ROOT / "tests/data/conv2bn-v1.0.slt"


@pytest.fixture(scope="module")
def good(synthetic_run, tmp_path_factory):
    """A valid ticket, its CSR export (implied and stored values) and ONNX export."""
    from sltc.exporters import export

    root = tmp_path_factory.mktemp("good")
    ticket = root / "model.slt"
    shutil.copy(synthetic_run / "ticket.slt", ticket)
    for name, fmt, kw in (("model.csr.safetensors", "csr", {}),
                          ("stored.csr.safetensors", "csr", {"values": "stored"}),
                          ("model.onnx", "onnx", {"check": False})):
        export(ticket, fmt, root / name, **kw)
    return root


@pytest.fixture()
def user(tmp_path):
    """A folder of the user's that the cases write into (or must not)."""
    (tmp_path / "notes.txt").write_text("mine\n")
    return tmp_path
