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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report, sltc  # noqa: E402
from dense import train_dense  # noqa: E402

from sltc.config_yaml import load_config  # noqa: E402

EXAMPLES = {"resnet20": "examples/resnet20-fashion.yaml", "vit": "examples/vit-fashion.yaml"}


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
        d = train_dense(cfg, 1e-3)
        rows.append({"network": name, "training": "dense (all weights)", "budget": budget,
                     "sparsity": 0.0, "test_accuracy": d["test_accuracy"],
                     "relaxed_accuracy": None, "seconds_per_epoch": d["seconds_per_epoch"]})
    report(rows, args.out, "Fashion-MNIST: tickets at 90% against dense training, same budget",
           ["network", "training", "budget", "sparsity", "test_accuracy", "relaxed_accuracy",
            "seconds_per_epoch"])


if __name__ == "__main__":
    main()
