"""A user's own network from Python: sltc.find_ticket and examples/custom_model.py."""

import json
import subprocess
import sys

import numpy as np
import torch

import sltc
from sltc.data import synthetic_split
from sltc.runtime.engines import ENGINES, prepare
from sltc.runtime.loader import load
from tests.helpers import ROOT
from tests.models import mixed


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
    accuracy = float((hits["dense"] == test.labels[:32]).mean())
    assert all(np.array_equal(h, hits["dense"]) for h in hits.values())
    with torch.no_grad():
        from sltc.rebuild import model_from_ticket

        want = model_from_ticket(ticket, mixed((1, 28, 28), 10))(torch.from_numpy(x))
    assert np.array_equal(want.argmax(1).numpy(), hits["dense"]) and 0 <= accuracy <= 1


def test_find_ticket_without_validation_data(tmp_path):
    train = synthetic_split(2, "train", 256)
    summary, _ = sltc.find_ticket(mixed((1, 28, 28), 10), _loader(train), _loader(train),
                                  {"train": {"epochs": 1, "max_steps": 2}}, out=tmp_path / "r",
                                  progress=False)
    assert summary["val_accuracy"] is None
    rows = [json.loads(r) for r in (tmp_path / "r/metrics.jsonl").read_text().splitlines()]
    assert rows[0]["frozen_accuracy"] is None and 0.0 <= rows[0]["sparsity"] <= 1.0


def test_custom_model_example_runs(tmp_path):
    proc = subprocess.run([sys.executable, "examples/custom_model.py", "--out", tmp_path / "c"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    accuracy = float(lines[0].rsplit(" ", 1)[1])
    assert accuracy > 0.9 and lines[-1].endswith(f"{accuracy:.4f}")
