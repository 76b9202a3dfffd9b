"""Dense training beside the tickets: the same network, data split and budget, every weight trained.

    python benchmarks/dense.py examples/conv4-fashion.yaml --out runs/dense/conv4 --lr 0.001 \
        --set train.epochs=1

The yardstick of the strong-lottery-ticket claim: what the network reaches when its weights
train, at the budget its ticket got. The config's network (torch's default init in place of
sltc's frozen weights; no gates), dataset, validation split, batches, ``train.epochs`` and
``train.max_steps``; Adam at ``--lr`` with a cosine schedule over the run's steps. Writes
``summary.json`` (validation and test accuracy, training seconds) into ``--out``, as
``sltc discover`` does, and prints it as one JSON line. ``benchmarks/baselines.py`` chooses
``--lr`` on the validation split; ``benchmarks/zoo_fashion.py`` reads the same trainer.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from sltc.config_yaml import load_config
from sltc.data import load_dataset
from sltc.evaluate import accuracy
from sltc.loaders import data_for
from sltc.models import create_model


def train_dense(config, lr: float) -> dict:
    """Train every weight of ``config``'s network at its budget; its accuracies and time."""
    dataset = load_dataset(config.data, config.seed)
    torch.manual_seed(config.seed)
    model = create_model(config.model, dataset.input_shape, dataset.classes, dataset.mean,
                         dataset.std)
    data = data_for(config, dataset, "cpu")
    steps = min(len(data.train), config.train.max_steps or 10**12)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
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
    seconds = time.perf_counter() - tic
    return {"method": "dense", "lr": lr, "val_accuracy": accuracy(model, data.val),
            "test_accuracy": accuracy(model, data.test), "train_seconds": seconds,
            "seconds_per_epoch": seconds / config.train.epochs, "epochs": config.train.epochs,
            "steps_per_epoch": steps, "sparsity": 0.0, "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--out", required=True, help="a folder for summary.json")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    args = ap.parse_args()
    summary = train_dense(load_config(args.config, args.sets), args.lr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
