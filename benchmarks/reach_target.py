"""How fast the gates reach the target sparsity: the threshold rule and lambda, step by step.

    python benchmarks/reach_target.py --example examples/resnet20-fashion.yaml \
        --budget train.epochs=1 train.max_steps=100 --variants today,gain20,lr01
    python benchmarks/reach_target.py --list        # every variant and its overrides

Trains the gates of the example (no validation, no freezing: only the path to the target)
under each variant's overrides, one after another in this process, and records after every
step the threshold rule's sparsity as the gates have it (before sltc's hold, where
``gates.deadline`` holds them) and lambda. Prints, per variant, the sparsity at 25, 50, 75
and 100% of the run, the first step within one point of the target, and lambda at the end;
writes every trace to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

from sltc.config import load_config  # noqa: E402
from sltc.discover import Trainer  # noqa: E402

VARIANTS = {  # name: overrides
    "today": [],
    "no_hold": ["gates.deadline=1"],
    "deadline05": ["gates.deadline=0.5"],
    "deadline09": ["gates.deadline=0.9"],
    "gain20": ["gates.controller_gain=20"],
    "gain50": ["gates.controller_gain=50"],
    "kp0": ["gates.controller_kp=0"],
    "lambda10": ["gates.lambda=10"],
    "lr01": ["train.lr=0.1"],
    "lr002": ["train.lr=0.02"],
    "mu_init03": ["gates.mu_init=0.3"],
    "no_anneal": ["gates.sigma_final=null"],
    "no_band": ["gates.mu_margin=null"],
    "sigma025": ["gates.sigma=0.25"],
    "constant_lr": ["train.schedule=constant"],
}


def trace(example: str, sets: list[str]) -> dict:
    config = load_config(example, sets)
    trainer = Trainer.from_config(config, torch.device("cpu"))
    rows: list[tuple[int, float, float]] = []

    def on_step(**stats):
        rows.append((len(rows) + 1, trainer.natural_sparsity, stats["lambda"]))

    tic = time.perf_counter()
    for epoch in range(config.train.epochs):
        trainer.train_epoch(epoch, on_step)
    target = config.gates.target_sparsity
    reached = next((step for step, s, _ in rows if s >= target - 0.01), None)
    at = {f"{q}%": rows[max(0, round(q / 100 * len(rows)) - 1)][1] for q in (25, 50, 75, 100)}
    return {"steps": len(rows), "target": target, "sparsity_at": at,
            "reached_within_1_point": reached, "lambda_end": rows[-1][2],
            "held_sparsity_end": trainer.current_sparsity(), "seconds": time.perf_counter() - tic,
            "recipe": trainer.config.recipe.chosen,
            "trace": rows[::max(1, len(rows) // 200)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--example", default="examples/resnet20-fashion.yaml")
    ap.add_argument("--budget", nargs="*", default=["train.epochs=1", "train.max_steps=100"])
    ap.add_argument("--variants", default="today")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--out", default="benchmarks/out/reach_target.json")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        for name, sets in VARIANTS.items():
            print(f"{name:12} {' '.join(sets)}")
        return
    torch.set_num_threads(1)
    out = Path(args.out)
    records = json.loads(out.read_text())["records"] if out.exists() else []
    for name in args.variants.split(","):
        key = {"example": args.example, "budget": " ".join(args.budget), "variant": name,
               "overrides": " ".join([*VARIANTS[name], *args.sets])}
        r = {**key, **trace(args.example, [*args.budget, *VARIANTS[name], *args.sets])}
        records = [x for x in records if {k: x[k] for k in key} != key] + [r]
        print(f"{name:12} sparsity at 25/50/75/100%: "
              + " ".join(f"{v:.3f}" for v in r["sparsity_at"].values())
              + f" | within 1 point at step {r['reached_within_1_point']} of {r['steps']}"
              f" | lambda {r['lambda_end']:.3g} | held {r['held_sparsity_end']:.3f}", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"machine": machine(), "records": records}, indent=1) + "\n")


if __name__ == "__main__":
    main()
