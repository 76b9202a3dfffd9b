"""CRBG without tuning: every network at every budget, beside edge-popup and dense training.

    python benchmarks/budget_sweep.py --networks conv4,resnet20,vit,usernet \
        --methods crbg,edge_popup,dense
    python benchmarks/budget_sweep.py --networks resnet20 --budgets "100 steps" \
        --methods crbg --variant deadline05 --set gates.deadline=0.5
    python benchmarks/budget_sweep.py --table     # the records so far
    python benchmarks/budget_sweep.py --plot benchmarks/out/figures/budget_sweep.png \
        --baselines benchmarks/out/baselines.json   # edge-popup: the tuned recipe's runs

Each cell is one network's example on Fashion-MNIST (``NETWORKS``; ``usernet`` is
``examples/user_convnet.py``, a conv net in no registry and no recipe's tuning) at a 90%
target, 5,000 validation images, at a budget of ``BUDGETS`` (100 steps, one epoch, the
example's own epochs). ``crbg``, ``edge_popup`` and ``hard_concrete`` set only
``gates.method``: each runs on the recipe sltc chooses for it and the network
(``sltc.recipes``). ``dense`` trains every weight of the same network at the same budget
(``benchmarks/dense.py``) with Adam at each of ``DENSE_LRS``, and the table shows the rate
chosen on validation. ``--variant NAME --set KEY=VALUE`` records runs under a name of
their own. Runs go ``--workers`` at a time, one thread each; records go to ``--out`` (a
rerun of some keeps the others). The table gives each run's ticket (test accuracy), the
threshold rule's sparsity where training ended and the relaxed gates' validation accuracy
against the ticket's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402
from _runs import dense, discover, run_all  # noqa: E402
from baselines import FAMILIES, winners  # noqa: E402

NETWORKS = {"lenet300": "examples/lenet300-fashion.yaml",
            "conv4": "examples/conv4-fashion.yaml",
            "resnet20": "examples/resnet20-fashion.yaml", "vit": "examples/vit-fashion.yaml",
            "usernet": "examples/user-convnet-fashion.yaml"}
BUDGETS = {"100 steps": ["train.epochs=1", "train.max_steps=100"], "1 epoch": ["train.epochs=1"],
           "default": []}
DENSE_LRS = (1e-3, 3e-3, 1e-2)
COMMON = ["gates.target_sparsity=0.9", "data.val_size=5000"]
KEY = ("network", "budget", "method", "seed", "variant", "lr")
FIELDS = ("val_accuracy", "test_accuracy", "relaxed_val_accuracy", "sparsity",
          "threshold_sparsity", "first_sparsity", "deadline_sparsity", "held_steps",
          "total_steps", "recipe", "train_seconds", "epochs")


def jobs_for(network: str, budget: str, method: str, seed: int, variant: str, sets: list[str],
             runs: Path, lrs: tuple[float, ...] = DENSE_LRS) -> list[tuple[dict, tuple]]:
    example = NETWORKS[network]
    base = [*COMMON, f"seed={seed}", *BUDGETS[budget]]
    out = []
    for lr in lrs if method == "dense" else (None,):
        key = {"network": network, "budget": budget, "method": method, "seed": seed,
               "variant": variant, "lr": lr}
        folder = runs / "-".join(str(v).replace(" ", "_") for v in key.values() if v is not None)
        job = (dense, example, folder, [*base, *sets], lr) if method == "dense" else \
            (discover, example, folder, [*base, f"gates.method={method}", *sets])
        out.append((key, job))
    return out


def best_dense(records: list[dict], network: str, budget: str, seed: int = 0) -> dict | None:
    """The dense run whose rate scored best on validation."""
    mine = [r for r in records if (r["network"], r["budget"], r["method"], r["seed"]) ==
            (network, budget, "dense", seed)]
    return max(mine, key=lambda r: r["val_accuracy"], default=None)


def tuned_baselines(path: Path) -> list[dict]:
    """The runs of ``benchmarks/baselines.py`` with each method's chosen recipe, as records of
    this sweep (variant ``tuned``): the same training ``gates.method`` alone now gives, since
    that recipe is what sltc fills for the method and family."""
    records = json.loads(path.read_text())["records"]
    chosen = winners(records)
    network = {family: next(n for n, e in NETWORKS.items() if e == example)
               for family, example in FAMILIES.items()}
    return [{"network": network[r["family"]], "budget": r["budget"], "method": r["method"],
             "seed": 0, "variant": "tuned", "lr": None, "overrides": r["recipe"],
             **{f: r.get(f) for f in FIELDS}}
            for r in records if r["recipe"] == chosen[r["method"], r["family"]]["recipe"]]


def table(records: list[dict]) -> None:
    print("\n| network | budget | variant | method | seed | ticket test (val) | threshold rule "
          "at the end | relaxed - ticket (val) | gates by themselves at the deadline |")
    print("|" + "---|" * 9)
    for r in records:
        if r["method"] == "dense":
            continue
        gap = r["relaxed_val_accuracy"] - r["val_accuracy"] if r["relaxed_val_accuracy"] \
            is not None else float("nan")
        held = f"{r['deadline_sparsity']:.3f}" if r.get("deadline_sparsity") is not None else "-"
        gap = f"{100 * gap:+.2f}" if gap == gap else "-"
        print(f"| {r['network']} | {r['budget']} | {r['variant']} | {r['method']} | {r['seed']} | "
              f"{r['test_accuracy']:.4f} ({r['val_accuracy']:.4f}) | "
              f"{r['threshold_sparsity']:.3f} | {gap} | {held} |")
    for network, budget in dict.fromkeys((r["network"], r["budget"]) for r in records):
        d = best_dense(records, network, budget)
        if d:
            print(f"| {network} | {budget} | - | dense (Adam {d['lr']:g}, chosen on val) | 0 | "
                  f"{d['test_accuracy']:.4f} ({d['val_accuracy']:.4f}) | 0 | | |")


def plot(records: list[dict], path: Path, variant: str = "default") -> None:
    """One panel per network: the ticket's test accuracy at each budget, a line per method
    (the runs of ``variant``, comma-separated names in order of preference, then the tuned
    baselines'; dense at the rate chosen on validation)."""
    from sltc.figures import pyplot

    order = [*variant.split(","), "tuned"]
    plt = pyplot()
    networks = [n for n in NETWORKS if any(r["network"] == n and r["method"] != "edge_popup"
                                           for r in records)]
    fig, axes = plt.subplots(1, len(networks), figsize=(4.2 * len(networks), 3.6), squeeze=False)
    for ax, network in zip(axes[0], networks, strict=True):
        budgets = [b for b in BUDGETS if any((r["network"], r["budget"]) == (network, b)
                                             for r in records)]
        for method in ("crbg", "edge_popup", "hard_concrete", "dense"):
            ys = []
            for b in budgets:
                r = best_dense(records, network, b) if method == "dense" else min(
                    (r for r in records if (r["network"], r["budget"], r["method"], r["seed"])
                     == (network, b, method, 0) and r["variant"] in order),
                    key=lambda r: order.index(r["variant"]), default=None)
                ys.append(r["test_accuracy"] if r else float("nan"))
            if any(y == y for y in ys):
                ax.plot(budgets, ys, marker="o", label=method.replace("_", "-"))
        ax.set_title(f"{network}, 90% (dense: 0%)")
        ax.set_xlabel("budget")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", default="conv4,resnet20,vit,usernet")
    ap.add_argument("--budgets", default=",".join(BUDGETS))
    ap.add_argument("--methods", default="crbg,edge_popup,dense")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--lrs", default=",".join(map(str, DENSE_LRS)),
                    help="dense training's learning rates, of which validation chooses")
    ap.add_argument("--variant", default="default")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--out", default="benchmarks/out/budget_sweep.json")
    ap.add_argument("--runs", default="runs/budget_sweep")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--table", action="store_true", help="print the records so far and stop")
    ap.add_argument("--plot", default=None, help="draw the records' figure to this PNG")
    ap.add_argument("--baselines", default=None,
                    help="with --table or --plot: add the chosen recipes' runs of this "
                         "benchmarks/baselines.py output")
    args = ap.parse_args()
    unknown = set(args.networks.split(",")) - set(NETWORKS)
    if unknown:
        ap.error(f"--networks: {', '.join(sorted(unknown))} not among {', '.join(NETWORKS)}")
    try:
        lrs = tuple(map(float, args.lrs.split(",")))
    except ValueError:
        ap.error(f"--lrs {args.lrs!r}: give learning rates separated by commas, e.g. 0.001,0.003")
    if args.baselines and not Path(args.baselines).is_file():
        ap.error(f"--baselines {args.baselines}: no such file; benchmarks/baselines.py writes it")
    out = Path(args.out)
    old = json.loads(out.read_text())["records"] if out.exists() else []
    if args.table or args.plot:
        shown = old + (tuned_baselines(Path(args.baselines)) if args.baselines else [])
        table(shown)
        if args.plot:
            plot(shown, Path(args.plot), args.variant)
        return
    planned = [kj for n in args.networks.split(",") for b in args.budgets.split(",")
               for m in args.methods.split(",") for s in map(int, args.seeds.split(","))
               for kj in jobs_for(n, b, m, s, args.variant, args.sets, Path(args.runs), lrs)]
    summaries = run_all([j for _, j in planned], workers=args.workers,
                        runner=lambda job: job[0](*job[1:]),
                        on_done=lambda job, s: print(f"{Path(job[2]).name}: val "
                                                     f"{s['val_accuracy']:.4f}", flush=True))
    here = machine()
    new = [{**k, "overrides": " ".join(args.sets), **{f: s.get(f) for f in FIELDS},
            "cpu": here["cpu"], "int8_kernels": here["int8_kernels"], "date": here["date"]}
           for (k, _), s in zip(planned, summaries, strict=True)]
    redone = {tuple(r[k] for k in KEY) for r in new}
    records = [r for r in old if tuple(r[k] for k in KEY) not in redone] + new
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "records": records}, indent=2) + "\n")
    table(records)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
