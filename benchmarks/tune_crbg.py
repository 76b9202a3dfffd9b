"""Tune CRBG on the validation split (never the test set), one factor at a time.

    python benchmarks/tune_crbg.py --out benchmarks/out/tune_crbg.json
    python benchmarks/tune_crbg.py --family conv --out benchmarks/out/tune_crbg_conv4.json

``--family mlp`` (the default): every row is a ``sltc discover
examples/lenet300-fashion.yaml`` run with the defaults, 20 epochs (to fit the sweep on
two cores) and the listed overrides; the last rows vary the epoch count itself.
``--family conv``: ``examples/conv4-fashion.yaml``, one epoch of 120 steps of 128 and
1,000 validation images, and the remedies the gate literature suggests for short
budgets and deep nets: training that starts dense (``mu_init`` above the threshold), a
ramped target, a larger or smaller gate learning rate, smaller noise, BatchNorm off, the
signed-constant gain. Rows are ranked by the ticket's accuracy on the validation
split; test accuracy is printed for reference only and played no part in choosing the
defaults.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report  # noqa: E402
from _runs import run_all  # noqa: E402

CONV_GRID = [
    [],
    ["gates.mu_init=1.0"], ["gates.mu_init=1.5"],
    ["gates.ramp=0.5"], ["gates.mu_init=1.0", "gates.ramp=0.5"],
    ["train.lr=0.05"], ["train.lr=0.1"], ["train.lr=0.01"],
    ["gates.sigma=0.25"],
    ["gates.controller_gain=20"],
    ["model.batchnorm=false"],
    ["model.gain=1.0"],
]
MLP_GRID = [
    [],
    ["train.lr=0.01"], ["train.lr=0.05"],
    ["gates.sigma=0.25"], ["gates.sigma=1.0"],
    ["gates.mu_init=1.0"], ["gates.mu_init=0.25"],
    ["gates.threshold=0.25"], ["gates.threshold=0.75"],
    ["gates.controller_gain=20"], ["gates.controller_gain=150"],
    ["gates.controller_kp=0"], ["gates.controller_kp=12"],
    ["gates.ramp=0.3"],
    ["model.gain=1.0"], ["model.gain=3.0"],
    ["data.batch_size=64"], ["train.schedule=constant"],
    ["model.init=uniform"], ["model.init=kaiming_normal"],
    ["model.batchnorm=true"],
    ["train.epochs=40"], ["train.epochs=60"], ["train.epochs=80"],
]

FAMILIES = {  # family: (example, grid, budget)
    "mlp": ("examples/lenet300-fashion.yaml", MLP_GRID, ["train.epochs=20"]),
    "conv": ("examples/conv4-fashion.yaml", CONV_GRID,
             ["train.epochs=1", "train.max_steps=120", "data.val_size=1000"]),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/out/tune_crbg.json")
    ap.add_argument("--work", default="runs/tune")
    ap.add_argument("--family", choices=sorted(FAMILIES), default="mlp")
    ap.add_argument("--extra", nargs="*", default=None,
                    help="Overrides put before every row's own (default: the family's budget).")
    args = ap.parse_args()
    example, grid, budget = FAMILIES[args.family]
    extra = budget if args.extra is None else args.extra
    jobs = [(example, Path(args.work) / args.family / ("_".join(g) or "defaults"),
             [*extra, *g]) for g in grid]
    summaries = run_all(jobs, on_done=lambda job, s: print(job[2], s["val_accuracy"], flush=True))
    rows = [{"overrides": " ".join(g) or "(defaults)", "val_accuracy": s["val_accuracy"],
             "relaxed_val_accuracy": s.get("relaxed_val_accuracy"),
             "sparsity": s["sparsity"], "threshold_sparsity": s["threshold_sparsity"],
             "test_accuracy": s["test_accuracy"], "seconds_per_epoch": s["seconds_per_epoch"]}
            for g, s in zip(grid, summaries, strict=True)]
    rows.sort(key=lambda r: -r["val_accuracy"])
    report(rows, args.out, f"CRBG on {example} ({' '.join(extra)}), target sparsity 0.9, "
           "ranked by validation accuracy", ["overrides", "val_accuracy",
                                             "relaxed_val_accuracy", "sparsity",
                                             "threshold_sparsity", "test_accuracy",
                                             "seconds_per_epoch"])


if __name__ == "__main__":
    main()
