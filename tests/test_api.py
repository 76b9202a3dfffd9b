"""A user's own network from Python: sltc.find_ticket and examples/custom_model.py."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import sltc
from sltc.data import load_split, synthetic_split
from sltc.runtime.engines import ENGINES, prepare
from sltc.runtime.loader import load
from tests.helpers import FASHION, ROOT, last_json, requires_fashion
from tests.helpers import sltc as sltc_cli
from tests.models import Idle, mixed


def _loader(split, **kw):
    data = torch.utils.data.TensorDataset(torch.from_numpy(split.images),
                                          torch.from_numpy(split.labels))
    return torch.utils.data.DataLoader(data, batch_size=64, **kw)


def test_find_ticket_writes_a_run_like_discover(tmp_path):
    train, test = synthetic_split(1, "train", 512), synthetic_split(1, "test", 128)
    config = {"seed": 5, "train": {"epochs": 2, "max_steps": 4}}
    summary, ticket = sltc.find_ticket(mixed((1, 28, 28), 10), _loader(train, shuffle=True),
                                       _loader(test), config, val=_loader(test),
                                       out=tmp_path / "run", progress=False)
    for name in ("config.yaml", "metrics.jsonl", "checkpoint.safetensors", "ticket.slt",
                 "summary.json"):
        assert (tmp_path / "run" / name).is_file()
    assert json.loads((tmp_path / "run/summary.json").read_text()) == summary
    assert abs(ticket.sparsity() - 0.9) <= 0.01
    assert ticket.meta["config"]["model"]["arch"] == "python:tests.models:Mixed"
    assert ticket.meta["config"]["data"]["name"] == "loaders"
    x = test.images[:32].astype(np.float32) / 255
    hits = {engine: prepare(load(tmp_path / "run/ticket.slt"), engine)(x).argmax(1)
            for engine in ENGINES.names()}
    assert all(np.array_equal(h, hits["dense"]) for h in hits.values())
    with torch.no_grad():
        from sltc.rebuild import model_from_ticket

        want = model_from_ticket(ticket, mixed((1, 28, 28), 10))(torch.from_numpy(x))
    assert np.array_equal(want.argmax(1).numpy(), hits["dense"])
    every = prepare(load(tmp_path / "run/ticket.slt"), "dense")(test.images.astype(np.float32) / 255)
    assert float((every.argmax(1) == test.labels).mean()) == ticket.meta["test_accuracy"]


def test_a_layer_forward_never_calls_is_refused_by_name(tmp_path):
    train = synthetic_split(2, "train", 128)
    with pytest.raises(sltc.NetworkError, match=r"never calls 'spare' in forward.*delete it"):
        sltc.find_ticket(Idle((1, 28, 28), 10), _loader(train), _loader(train),
                         {"train": {"epochs": 1, "max_steps": 2}}, out=tmp_path / "r",
                         progress=False)
    assert not (tmp_path / "r/ticket.slt").exists()


def test_find_ticket_without_validation_data(tmp_path, capfd):
    train = synthetic_split(2, "train", 256)
    summary, _ = sltc.find_ticket(mixed((1, 28, 28), 10), _loader(train), _loader(train),
                                  {"train": {"epochs": 1, "max_steps": 2}}, out=tmp_path / "r")
    said = capfd.readouterr().err
    assert "epoch 1: no validation split" in said and "nan" not in said, said
    assert summary["val_accuracy"] is None
    rows = [json.loads(r) for r in (tmp_path / "r/metrics.jsonl").read_text().splitlines()]
    assert rows[0]["frozen_accuracy"] is None
    assert rows[0]["sparsity"] == summary["threshold_sparsity"]  # one epoch: the same gates


@requires_fashion
def test_validate_data_scores_a_find_ticket_ticket(tmp_path):
    """A ticket whose data came from Python runs on any dataset folder of its input shape
    and classes, to the accuracy find_ticket recorded on the same images."""
    train, test = (load_split("fashion_mnist", which) for which in ("train", "test"))
    def batches(split, n, size):
        return [(torch.from_numpy(split.images[i:i + size] / np.float32(255)),
                 torch.from_numpy(split.labels[i:i + size])) for i in range(0, n, size)]

    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    summary, _ = sltc.find_ticket(net, batches(train, 8192, 128), batches(test, len(test), 500),
                                  {"gates": {"target_sparsity": 0.5, "mu_init": 0.5},
                                   "train": {"epochs": 1}},
                                  out=tmp_path / "run", progress=False)
    ticket = tmp_path / "run/ticket.slt"
    proc = sltc_cli("validate", ticket, "--data", FASHION, "--engine", "dense", "--json",
                    check=True)
    result = last_json(proc)
    assert result["examples"] == len(test) and result["difference"] == 0.0, result
    assert result["test_accuracy"] == summary["test_accuracy"] > 0.3  # chance is 0.1
    for args, problem in ((["--data", tmp_path], "no dataset found"), ([], "pass --data DIR")):
        proc = sltc_cli("validate", ticket, *args)
        line, = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and problem in line, line


def test_custom_model_example_runs(tmp_path):
    proc = subprocess.run([sys.executable, "examples/custom_model.py", "--out", tmp_path / "c"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "warning" not in proc.stderr.lower(), proc.stderr
    lines = proc.stdout.strip().splitlines()
    accuracy = float(lines[0].rsplit(" ", 1)[1])
    assert accuracy > 0.9 and lines[-1].endswith(f"{accuracy:.4f}")


# --- the first batch checked, loaders without len() ---------------------------------------

def _batches(x: torch.Tensor, y: torch.Tensor, size: int = 64) -> list:
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]


class _Stream:
    """Batches from a generator: no len()."""

    def __init__(self, batches: list):
        self.batches = batches

    def __iter__(self):
        yield from self.batches


API_CASES = {  # name: (train loader from (x, y), the message's words)
    "images of another shape": (lambda x, y: _batches(torch.zeros(128, 1, 32, 32), y[:128]),
                                "on a batch of 2 x 1 x 32 x 32 raised RuntimeError"),
    "float labels": (lambda x, y: _batches(x, y.float()),
                     "expected y as one integer class index per image (shape 64), got a "
                     "float32 tensor of shape 64"),
    "2-D labels": (lambda x, y: _batches(x, y[:, None]), "got an int64 tensor of shape 64 x 1"),
    "labels out of range": (lambda x, y: _batches(x, y + 50),
                            "labels run from 50 to 59 but the network (tests.models) gives 10 "
                            "outputs"),
    "empty": (lambda x, y: [], "yields no batch"),
    "one-shot generator": (lambda x, y: iter(_batches(x, y)), "can be read only once"),
    "triples": (lambda x, y: [(a, b, b) for a, b in _batches(x, y)],
                "expected (x, y) batches, got a tuple of 3"),
    "not iterable": (lambda x, y: 5, "got an int"),
}


@pytest.mark.parametrize("name", API_CASES)
def test_find_ticket_checks_the_first_batch(name, tmp_path):
    """One documented exception (sltc.BatchError, a ValueError) from one check of the first
    batch, saying what it expected and what it got; nothing written."""
    import sltc
    from sltc.data import synthetic_split
    from tests.models import mixed

    split = synthetic_split(1, "train", 256)
    x, y = torch.from_numpy(split.images), torch.from_numpy(split.labels)
    make, message = API_CASES[name]
    test = make(x, y) if name == "images of another shape" else _batches(x, y)
    with pytest.raises(sltc.BatchError, match=re.escape(message)) as caught:
        sltc.find_ticket(mixed((1, 28, 28), 10), make(x, y), test, out=tmp_path / "r",
                         progress=False)
    assert isinstance(caught.value, ValueError) and "\n" not in str(caught.value)
    assert not (tmp_path / "r").exists()


def test_find_ticket_takes_loaders_without_len(tmp_path, monkeypatch, capsys):
    """A generator without len() trains: its batches counted once, without a total."""
    import sltc
    from sltc.data import synthetic_split
    from tests.models import mixed

    monkeypatch.setenv("SLTC_PROGRESS_SECONDS", "0")
    split = synthetic_split(1, "train", 256)
    batches = _batches(torch.from_numpy(split.images), torch.from_numpy(split.labels))
    summary, ticket = sltc.find_ticket(mixed((1, 28, 28), 10), _Stream(batches),
                                       _Stream(batches), {"train": {"epochs": 1}},
                                       out=tmp_path / "r", val=_Stream(batches))
    err = capsys.readouterr().err
    assert "counting the training batches: batch 4 |" in err and "step 4/4" in err
    assert summary["epochs"] == 1 and summary["test_accuracy"] is not None
    assert abs(ticket.sparsity() - 0.9) <= 0.01
