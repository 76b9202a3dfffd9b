"""Remedies for CRBG's plateau, side by side with edge-popup, on the validation split.

    python benchmarks/crbg_remedies.py --model conv4 --variants crbg,edge_popup,margin025
    python benchmarks/crbg_remedies.py --model lenet300 --epochs 20 --seeds 0,1
    python benchmarks/crbg_remedies.py --list                 # every variant and its overrides

Each variant is a ``sltc discover`` run of the model's example with the same budget
(``--epochs``; Conv-4: the whole training set, ``--val-size`` validation images) and the
variant's overrides on top of the method's recipe (``pareto.RECIPES``). A variant named
``edge_popup@RUN`` trains edge-popup at the per-layer densities of the ticket of the run
``RUN`` (another variant of the same model, target and seed): the 2x2 of allocation
against optimisation. Records go to ``--out`` (one per model, variant, target and seed;
a rerun of some replaces those and keeps the rest), with each run's last-epoch search
statistics (flip rate, live fraction), its per-epoch validation curve, its wall time and
the seconds its gates took. Rows are ranked by the ticket's validation accuracy; test
accuracy is printed for reference and plays no part in choosing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402
from _runs import run_all  # noqa: E402
from pareto import MODELS, RECIPES  # noqa: E402

VARIANTS = {  # name: (method, overrides)
    "crbg": ("crbg", []),
    "edge_popup": ("edge_popup", []),
    "hard_concrete": ("hard_concrete", []),
    # (a) mu kept in a narrow live band
    "margin025": ("crbg", ["gates.mu_margin=0.25"]),
    "margin010": ("crbg", ["gates.mu_margin=0.1"]),
    "margin025_lr005": ("crbg", ["gates.mu_margin=0.25", "train.lr=0.05"]),
    # a larger gate learning rate, and noise that falls over the run
    "lr005": ("crbg", ["train.lr=0.05"]),
    "anneal": ("crbg", ["gates.sigma_final=0.1"]),
    "lr005_anneal": ("crbg", ["train.lr=0.05", "gates.sigma_final=0.1"]),
    "margin025_lr005_anneal": ("crbg", ["gates.mu_margin=0.25", "train.lr=0.05",
                                        "gates.sigma_final=0.1"]),
    "sgd": ("crbg", ["train.optimizer=sgd", "train.lr=20", "train.momentum=0.9"]),
    # (b) no L0 push on dead gates; SGD with momentum in place of Adam
    "spare_dead": ("crbg", ["gates.spare_dead=true"]),
    # (c) a density budget in place of the penalty; a controller that reaches the target
    # halfway, on a cubic ramp from dense
    "projection": ("crbg", ["gates.budget=projection"]),
    "projection_cubic": ("crbg", ["gates.budget=projection", "gates.ramp=0.5",
                                  "gates.ramp_shape=cubic", "gates.mu_init=1.0"]),
    "controller_cubic": ("crbg", ["gates.ramp=0.5", "gates.ramp_shape=cubic",
                                  "gates.mu_init=1.0"]),
    # (d) CRBG held to edge-popup's uniform per-layer density: a lambda controller per layer
    "crbg_layer": ("crbg", ["gates.scope=layer"]),
    "crbg_layer_projection": ("crbg", ["gates.budget=projection", "gates.scope=layer"]),
    "margin025_lr005_anneal_layer": ("crbg", ["gates.mu_margin=0.25", "train.lr=0.05",
                                              "gates.sigma_final=0.1", "gates.scope=layer"]),
    "sigma025": ("crbg", ["gates.sigma=0.25"]),
    # straight-through across the clamp: a separate method, never CRBG itself
    "crbg_st": ("crbg_st", []),
}


def layer_sparsity(ticket: Path) -> dict[str, float]:
    """Each gated layer's sparsity in a ticket."""
    from sltc.format.ticket import Ticket

    t = Ticket.load(ticket)
    return {s.name: round(1.0 - float(t.weight_mask(s.name).mean()), 6) for s in t.gated()}


# CRBG as it was before these measurements: every CRBG variant starts here, so that a
# variant means the same run whatever the defaults are now
BEFORE = ["train.lr=0.02", "gates.mu_margin=null", "gates.sigma_final=null"]


def overrides(variant: str, run_of, target: float) -> tuple[str, list[str]]:
    """The method and ``--set`` options of ``variant``."""
    if "@" in variant:  # edge_popup@RUN: at the densities RUN's ticket found
        method, source = variant.split("@")
        densities = layer_sparsity(run_of(source) / "ticket.slt")
        overall = json.loads((run_of(source) / "summary.json").read_text())["sparsity"]
        return method, [f"gates.layer_sparsity={json.dumps(densities)}",
                        f"gates.target_sparsity={overall:.6f}"]
    method, sets = VARIANTS[variant]
    return method, (BEFORE if method.startswith("crbg") else []) + sets


def record(key: dict, run: Path, summary: dict) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    return {**key, **{k: summary.get(k) for k in (
        "test_accuracy", "val_accuracy", "relaxed_val_accuracy", "sparsity",
        "threshold_sparsity", "train_seconds", "gate_seconds")},
        "flip_rate": last.get("flip_rate"), "live_fraction": last.get("live_fraction"),
        "curve": [{k: r.get(k) for k in ("epoch", "frozen_accuracy", "flip_rate",
                                         "live_fraction", "sparsity")} for r in rows]}


RUN_KEY = ("model", "variant", "target_sparsity", "seed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/out/crbg_remedies.json")
    ap.add_argument("--runs", default="runs/remedies")
    ap.add_argument("--model", default="conv4", choices=sorted(MODELS))
    ap.add_argument("--variants", default="crbg,edge_popup")
    ap.add_argument("--targets", default="0.9")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--val-size", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        for name, (method, sets) in VARIANTS.items():
            print(f"{name:18} {method:14} {' '.join(sets)}")
        return
    budget = [f"train.epochs={args.epochs}", f"data.val_size={args.val_size}", *args.sets]
    runs = Path(args.runs)

    def run_of(variant: str, target: float, seed: int) -> Path:
        return runs / f"{args.model}-{variant.replace('@', '-at-')}-{target}-{seed}"

    # variants that read another run's ticket go after the others
    names = sorted(args.variants.split(","), key=lambda v: "@" in v)
    keys, _jobs = [], []
    for phase in (False, True):
        batch = []
        for variant in (v for v in names if ("@" in v) == phase):
            for target in map(float, args.targets.split(",")):
                for seed in map(int, args.seeds.split(",")):
                    method, sets = overrides(variant, lambda v, t=target, s=seed: run_of(v, t, s),
                                             target)
                    options = [f"gates.method={method}", f"gates.target_sparsity={target}",
                               f"seed={seed}", *RECIPES.get(method, []), *budget, *sets]
                    key = {"model": args.model, "variant": variant, "method": method,
                           "target_sparsity": target, "seed": seed,
                           "budget": " ".join(budget), "overrides": " ".join(sets)}
                    batch.append(((MODELS[args.model], run_of(variant, target, seed), options),
                                  key))
        summaries = run_all([j for j, _ in batch], workers=args.workers,
                            on_done=lambda job, s: print(f"{job[1].name}: val "
                                                         f"{s['val_accuracy']:.4f}", flush=True))
        for (job, key), summary in zip(batch, summaries, strict=True):
            keys.append(record(key, job[1], summary))
    out = Path(args.out)
    old = json.loads(out.read_text())["records"] if out.exists() else []
    redone = {tuple(r[k] for k in RUN_KEY) for r in keys}
    records = [r for r in old if tuple(r[k] for k in RUN_KEY) not in redone] + keys
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "records": records}, indent=2) + "\n")
    print("\n| model | variant | target | seed | val (ticket) | val (relaxed) | test | "
          "threshold sparsity | flip rate | live | seconds | gate seconds |")
    print("|" + "---|" * 12)
    for r in sorted(records, key=lambda r: (r["model"], r["target_sparsity"],
                                            -r["val_accuracy"])):
        print(f"| {r['model']} | {r['variant']} | {r['target_sparsity']} | {r['seed']} | "
              f"{r['val_accuracy']:.4f} | {r['relaxed_val_accuracy'] or 0:.4f} | "
              f"{r['test_accuracy']:.4f} | {r['threshold_sparsity']:.3f} | "
              f"{r['flip_rate']:.4f} | {r['live_fraction']:.3f} | {r['train_seconds']:.0f} | "
              f"{r['gate_seconds']:.0f} |")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
