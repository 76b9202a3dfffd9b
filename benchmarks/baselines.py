"""The baselines tuned like CRBG: a recipe grid per method and network family, chosen on the
validation split.

    python benchmarks/baselines.py --methods edge_popup --families conv,residual
    python benchmarks/baselines.py --methods hard_concrete           # every family
    python benchmarks/baselines.py --table                           # the records so far

Each family is one network's example on Fashion-MNIST (``FAMILIES``: LeNet-300-100 for
networks of linear layers only, Conv-4 for plain conv nets, ResNet-20 for residual ones,
the ViT for transformers), at a 90% target, seed 0, 5,000 validation images, at each
budget of ``BUDGETS`` (100 steps, one epoch, the example's own epochs). A gate method runs
every recipe of ``GRID`` (its optimiser keys spelled out, so that no default leaks in):
edge-popup's paper recipe (SGD 0.1, momentum 0.9) and Adam at 0.02, 0.05 and 0.1, each
with weight decay 1e-4 and without (``--recipes`` names some of them). Runs go
``--workers`` at a time, one thread each; records go to ``--out`` (a rerun of some keeps
the others). Dense training of the same networks and budgets is
``benchmarks/budget_sweep.py``'s.

The winner of a method and family is the recipe with the best mean rank over the budgets
(rank 1: the best validation accuracy of the ticket at that budget; ties: the higher mean
validation accuracy). A grid may be run in rounds, every recipe at the shortest budget and
the best few at the longer ones (``--recipes``): the winner is then chosen among the
recipes that reached the longest budget run. Test accuracy is recorded and plays no part
in choosing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402
from _runs import run_all  # noqa: E402

FAMILIES = {"mlp": "examples/lenet300-fashion.yaml", "conv": "examples/conv4-fashion.yaml",
            "residual": "examples/resnet20-fashion.yaml",
            "transformer": "examples/vit-fashion.yaml"}
BUDGETS = {"100 steps": ["train.epochs=1", "train.max_steps=100"], "1 epoch": ["train.epochs=1"],
           "default": []}
SGD = ["train.optimizer=sgd", "train.lr=0.1", "train.momentum=0.9"]
GRID = {
    "sgd 0.1": [*SGD, "train.weight_decay=0"],
    "sgd 0.1 wd": [*SGD, "train.weight_decay=0.0001"],
    **{f"adam {lr}{' wd' * wd}": ["train.optimizer=adam", f"train.lr={lr}",
                                  f"train.weight_decay={1e-4 if wd else 0}"]
       for lr in (0.02, 0.05, 0.1) for wd in (False, True)},
}
COMMON = ["gates.target_sparsity=0.9", "seed=0", "data.val_size=5000"]
KEY = ("method", "family", "budget", "recipe")


def jobs_for(method: str, family: str, runs: Path) -> list[tuple[dict, tuple]]:
    """(record key, job) of every run of ``method`` on ``family``."""
    out = []
    for budget, budget_sets in BUDGETS.items():
        for recipe, recipe_sets in GRID.items():
            key = {"method": method, "family": family, "budget": budget, "recipe": recipe}
            folder = runs / "-".join(str(v).replace(" ", "_") for v in key.values())
            out.append((key, (FAMILIES[family], folder, [*COMMON, f"gates.method={method}",
                                                          *budget_sets, *recipe_sets])))
    return out


def record(key: dict, summary: dict) -> dict:
    return {**key, **{k: summary.get(k) for k in (
        "val_accuracy", "test_accuracy", "relaxed_val_accuracy", "sparsity",
        "threshold_sparsity", "train_seconds", "epochs")}}


def winners(records: list[dict]) -> dict[tuple[str, str], dict]:
    """(method, family) -> the chosen recipe, its mean rank and mean validation accuracy."""
    chosen = {}
    for method, family in dict.fromkeys((r["method"], r["family"]) for r in records):
        mine = [r for r in records if (r["method"], r["family"]) == (method, family)]
        ranks: dict[str, list[int]] = {}
        for budget in dict.fromkeys(r["budget"] for r in mine):
            ordered = sorted((r for r in mine if r["budget"] == budget),
                             key=lambda r: -r["val_accuracy"])
            for rank, r in enumerate(ordered, 1):
                ranks.setdefault(r["recipe"], []).append(rank)
        longest = max((r["budget"] for r in mine), key=list(BUDGETS).index)
        finalists = {r["recipe"] for r in mine if r["budget"] == longest}
        scores = {recipe: (sum(v) / len(v), -sum(r["val_accuracy"] for r in mine
                                                  if r["recipe"] == recipe) / len(v))
                  for recipe, v in ranks.items() if recipe in finalists}
        best = min(scores, key=scores.get)
        chosen[method, family] = {"recipe": best, "mean_rank": scores[best][0],
                                  "mean_val_accuracy": -scores[best][1],
                                  "budgets": len(ranks[best])}
    return chosen


def table(records: list[dict]) -> None:
    chosen = winners(records)
    for (method, family), win in chosen.items():
        mine = [r for r in records if (r["method"], r["family"]) == (method, family)]
        budgets = list(dict.fromkeys(r["budget"] for r in mine))
        print(f"\n{method} / {family} ({FAMILIES[family]}): validation accuracy of the ticket "
              f"(test in brackets); chosen: {win['recipe']} (mean rank {win['mean_rank']:.2f})")
        print("| recipe | " + " | ".join(budgets) + " |")
        print("|---|" + "---|" * len(budgets))
        for recipe in dict.fromkeys(r["recipe"] for r in mine):
            cells = []
            for budget in budgets:
                r = next((r for r in mine if (r["recipe"], r["budget"]) == (recipe, budget)),
                         None)
                cells.append("" if r is None else
                             f"{r['val_accuracy']:.4f} ({r['test_accuracy']:.4f})")
            name = f"**{recipe}**" if recipe == win["recipe"] else recipe
            print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="edge_popup,hard_concrete")
    ap.add_argument("--recipes", default=",".join(GRID))
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--budgets", default=",".join(BUDGETS))
    ap.add_argument("--out", default="benchmarks/out/baselines.json")
    ap.add_argument("--runs", default="runs/baselines")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--table", action="store_true", help="print the records so far and stop")
    args = ap.parse_args()
    out = Path(args.out)
    old = json.loads(out.read_text())["records"] if out.exists() else []
    if args.table:
        table(old)
        return
    budgets, recipes = args.budgets.split(","), args.recipes.split(",")
    planned = [(k, j) for m in args.methods.split(",") for f in args.families.split(",")
               for k, j in jobs_for(m, f, Path(args.runs))
               if k["budget"] in budgets and k["recipe"] in recipes]

    def done(job, summary):
        print(f"{Path(job[1]).name}: val {summary['val_accuracy']:.4f}", flush=True)

    summaries = run_all([j for _, j in planned], workers=args.workers, on_done=done)
    new = [record(k, s) for (k, _), s in zip(planned, summaries, strict=True)]
    redone = {tuple(r[k] for k in KEY) for r in new}
    records = [r for r in old if tuple(r[k] for k in KEY) not in redone] + new
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "records": records,
                               "winners": [{"method": m, "family": f, **w}
                                           for (m, f), w in winners(records).items()]},
                              indent=2) + "\n")
    table(records)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
