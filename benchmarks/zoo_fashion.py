"""ResNet-20 and the ViT on Fashion-MNIST: CRBG tickets at 90% against dense training.

    python benchmarks/zoo_fashion.py --out benchmarks/out/zoo_fashion.json

Runs ``sltc discover`` on ``examples/resnet20-fashion.yaml`` and
``examples/vit-fashion.yaml`` (frozen random weights, only the gates train), then
trains each architecture densely (every weight trains, torch's default init, Adam
1e-3, the same epochs, batches and data) as a reference for what the network can do
at that budget. Prints the table and writes JSON; one job at a time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report, sltc  # noqa: E402

from sltc.config import load_config  # noqa: E402
from sltc.data import load_dataset  # noqa: E402
from sltc.evaluate import accuracy  # noqa: E402
from sltc.loaders import data_for  # noqa: E402
from sltc.models import create_model  # noqa: E402

EXAMPLES = {"resnet20": "examples/resnet20-fashion.yaml", "vit": "examples/vit-fashion.yaml"}


def dense(example: str) -> dict:
    """The same architecture with every weight trained, at the ticket's budget."""
    config = load_config(example)
    dataset = load_dataset(config.data, config.seed)
    torch.manual_seed(config.seed)
    model = create_model(config.model, dataset.input_shape, dataset.classes, dataset.mean,
                         dataset.std)
    data = data_for(config, dataset, "cpu")
    steps = min(len(data.train), config.train.max_steps or 10**12)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps * config.train.epochs)
    tic = time.perf_counter()
    for epoch in range(config.train.epochs):
        model.train()
        for _, (x, y) in zip(range(steps), data.train.epoch(config.seed, epoch), strict=False):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    seconds = (time.perf_counter() - tic) / config.train.epochs
    return {"test_accuracy": accuracy(model, data.test), "seconds_per_epoch": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/zoo-fashion")
    ap.add_argument("--out", default="benchmarks/out/zoo_fashion.json")
    args = ap.parse_args()
    rows = []
    for name, example in EXAMPLES.items():
        run = Path(args.work) / name
        if not (run / "summary.json").exists():
            sltc("discover", example, "--out", run, "--json")
        s = json.loads((run / "summary.json").read_text())
        cfg = load_config(example)
        budget = f"{cfg.train.epochs} x {cfg.train.max_steps or 'all'} steps of {cfg.data.batch_size}"
        rows.append({"network": name, "training": "CRBG ticket (gates only)", "budget": budget,
                     "sparsity": s["sparsity"], "test_accuracy": s["test_accuracy"],
                     "relaxed_accuracy": s["relaxed_accuracy"],
                     "seconds_per_epoch": s["seconds_per_epoch"]})
        d = dense(example)
        rows.append({"network": name, "training": "dense (all weights)", "budget": budget,
                     "sparsity": 0.0, "test_accuracy": d["test_accuracy"],
                     "relaxed_accuracy": None, "seconds_per_epoch": d["seconds_per_epoch"]})
    report(rows, args.out, "Fashion-MNIST: tickets at 90% against dense training, same budget",
           ["network", "training", "budget", "sparsity", "test_accuracy", "relaxed_accuracy",
            "seconds_per_epoch"])


if __name__ == "__main__":
    main()
