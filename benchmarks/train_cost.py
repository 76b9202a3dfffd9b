"""Seconds per training epoch: CRBG, hard concrete, edge-popup and dense training.

    python benchmarks/train_cost.py --out benchmarks/out/train_cost.json
    python benchmarks/train_cost.py --example examples/conv4-fashion.yaml --steps 40 \
        --out benchmarks/out/train_cost_conv4.json

An example's network on Fashion-MNIST (default LeNet-300-100), batch 128, all four
measured in this one process, interleaved over ``--rounds`` rounds (the median is
reported) so that machine noise hits every method alike; ``--steps`` caps an epoch.
Dense training is ordinary: the same network with trainable weights (Adam, lr 1e-3), no
gates. Gate epochs include the lambda controller's per-step sparsity count; validation
is excluded everywhere. ``gate_seconds``: the part of a gate epoch spent on the gates
(sampling or edge-popup's top-k, the updates after each step; ``discover.GateClock``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report  # noqa: E402

from sltc.config_yaml import load_config  # noqa: E402
from sltc.data import load_dataset  # noqa: E402
from sltc.discover import Trainer  # noqa: E402
from sltc.loaders import data_for  # noqa: E402
from sltc.models import build_model, create_model  # noqa: E402


def dense_epoch(model, opt, batches, epoch: int, steps: int) -> float:
    model.train()
    tic = time.perf_counter()
    for _, (x, y) in zip(range(steps), batches.epoch(0, epoch), strict=False):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - tic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/out/train_cost.json")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--example", default="examples/lenet300-fashion.yaml")
    ap.add_argument("--steps", type=int, default=None, help="cap on steps per epoch")
    args = ap.parse_args()
    cap = [f"train.max_steps={args.steps}"] if args.steps else []
    base = load_config(args.example, cap)
    data = load_dataset(base.data, base.seed)
    cpu = torch.device("cpu")
    trainers = {}
    for m in ("crbg", "hard_concrete", "edge_popup"):
        config = load_config(args.example, [f"gates.method={m}", *cap])
        config, model = build_model(config, data.input_shape, data.classes, data.mean, data.std)
        trainers[m] = Trainer(config, model, data_for(config, data, cpu), cpu)
    dense = create_model(base.model, data.input_shape, data.classes, data.mean, data.std)
    opt = torch.optim.Adam(dense.parameters(), lr=1e-3)
    batches = data_for(base, data, cpu).train
    steps = trainers["crbg"].steps_per_epoch
    times = {m: [] for m in [*trainers, "dense"]}
    gates = {m: [] for m in trainers}
    for r in range(args.rounds):
        for method, trainer in trainers.items():
            tic = time.perf_counter()
            gates[method].append(trainer.train_epoch(r, lambda **s: None)["gate_seconds"])
            times[method].append(time.perf_counter() - tic)
        times["dense"].append(dense_epoch(dense, opt, batches, r, steps))
    dense_s = statistics.median(times["dense"])
    rows = [{"method": m, "seconds_per_epoch": statistics.median(t),
             "gate_seconds": statistics.median(gates[m]) if m in gates else None,
             "over_dense": statistics.median(t) / dense_s, "rounds": len(t)}
            for m, t in times.items()]
    report(rows, args.out, f"seconds per epoch, {base.model.arch}, {steps} steps of 128, "
           f"{torch.get_num_threads()} threads", ["method", "seconds_per_epoch",
                                                   "gate_seconds", "over_dense"])
    assert np.isfinite(dense_s)


if __name__ == "__main__":
    main()
