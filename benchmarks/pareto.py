"""Accuracy against sparsity for CRBG, hard concrete and edge-popup, side by side.

    python benchmarks/pareto.py --out benchmarks/out/pareto          # LeNet-300-100 and Conv-4
    python benchmarks/pareto.py --quick --out benchmarks/out/quick   # a smoke run of minutes
    python benchmarks/pareto.py --models resnet20 --epochs 1 --train-size 8000 \
        --targets 0.5,0.8,0.9,0.95 --out benchmarks/out/pareto-resnet20   # a CPU-sized subset
    python benchmarks/pareto.py --models resnet20,vit --epochs 30 --device cuda --workers 4 \
        --targets 0.5,0.8,0.9,0.95 --out benchmarks/out/pareto-gpu       # a real budget

Fashion-MNIST, target sparsities 50/80/90/95/98% (``--targets``), seeds 0 and 1, the same
budget for every method: LeNet-300-100 20 epochs (a third of the example's default, to fit
30 runs on two cores); Conv-4 ``--epochs`` epochs (default 1) capped at ``--conv-steps``
steps of 128 (0: no cap) and 1,000 validation images; ResNet-20 and the ViT
(``examples/*-fashion.yaml``) ``--epochs`` epochs (default: the example's) on the first
``--train-size`` training images (default: all). The gate methods reach their target
through ``gates.target_sparsity`` (lambda controller + freezer); edge-popup through its
density ``1 - target``. Each method uses its own recipe: CRBG the defaults (whose start
depends on the target, see ``gates.mu_init``), hard concrete Adam at lr 0.1 (log-alpha
lives on a wider scale than mu), edge-popup SGD 0.1 with momentum 0.9 and weight decay
1e-4. Runs go ``--workers`` at a time, one thread each. Writes ``pareto.json`` and
``pareto.png`` in ``--out``; a run of part of the grid (``--models conv4``, ``--methods
crbg --targets 0.5,0.8``) keeps the other records of the ``pareto.json`` already there.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402
from _runs import run_all  # noqa: E402

MODELS = {"lenet300": "examples/lenet300-fashion.yaml", "conv4": "examples/conv4-fashion.yaml",
          "resnet20": "examples/resnet20-fashion.yaml", "vit": "examples/vit-fashion.yaml"}
RECIPES = {
    "crbg": [],
    "hard_concrete": ["train.lr=0.1"],
    "edge_popup": ["train.optimizer=sgd", "train.lr=0.1", "train.momentum=0.9",
                   "train.weight_decay=0.0001"],
}
TARGETS = [0.5, 0.8, 0.9, 0.95, 0.98]


def budget(model: str, args) -> list[str]:
    """The ``--set`` options that give every method of ``model`` the same budget."""
    if model == "conv4":
        steps = 20 if args.quick else args.conv_steps
        return [f"train.epochs={args.epochs or 1}", *([f"train.max_steps={steps}"] if steps else []),
                f"data.val_size={args.val_size or 1000}"]
    if model == "lenet300":
        epochs = 2 if args.quick else args.epochs or 20
        return [f"train.epochs={epochs}", *([f"data.val_size={args.val_size}"] if args.val_size
                                             else [])]
    sets = [f"data.val_size={args.val_size or 1000}"]
    sets += [f"train.epochs={args.epochs}"] if args.epochs else []
    sets += [f"data.train_size={args.train_size}"] if args.train_size else []
    sets += ["train.max_steps=10"] if args.quick else []
    return sets


def _means(records: list[dict], model: str, method: str, key: str) -> list[tuple]:
    """(mean ``key``, mean test accuracy, target) per target of one model and method."""
    pts: dict[float, list] = {}
    for r in records:
        if r["model"] == model and r["method"] == method and r.get(key) is not None:
            pts.setdefault(r["target_sparsity"], []).append(r)
    return [(sum(r[key] for r in v) / len(v), sum(r["test_accuracy"] for r in v) / len(v), t)
            for t, v in sorted(pts.items())]


def plot(records: list[dict], path: Path) -> None:
    """Per model: accuracy against sparsity, and against training time (wall seconds of the
    whole run, each point labelled with its target) where the records have it."""
    from sltc.figures import pyplot

    plt = pyplot()
    models = sorted({r["model"] for r in records}, key=list(MODELS).index)
    timed = any(r.get("train_seconds") for r in records)
    fig, axes = plt.subplots(1 + timed, len(models), figsize=(5.5 * len(models), 4 + 4 * timed),
                             squeeze=False)
    for col, model in enumerate(models):
        for method in RECIPES:
            pts = _means(records, model, method, "sparsity")
            if pts:
                axes[0][col].plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                                  label=method)
            pts = _means(records, model, method, "train_seconds") if timed else []
            if pts:
                axes[1][col].plot([p[0] for p in pts], [p[1] for p in pts], "o", label=method)
                for x, y, t in pts:
                    axes[1][col].annotate(f"{t:g}", (x, y), fontsize=7, xytext=(3, 3),
                                          textcoords="offset points")
        axes[0][col].set_title(f"{model} / Fashion-MNIST")
        axes[0][col].set_xlabel("sparsity (pruned fraction of gated weights)")
        if timed:
            axes[1][col].set_title(f"{model}: accuracy against training time (label: target)")
            axes[1][col].set_xlabel("training wall time of the run (s, mean over seeds)")
        for ax in axes[:, col]:
            ax.set_ylabel("test accuracy (mean over seeds)")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


RUN_KEY = ("model", "method", "target_sparsity", "seed")


def kept(path: Path, records: list[dict]) -> list[dict]:
    """The records of an earlier ``pareto.json`` that this run does not redo: part of a grid
    (a model, a method, some targets) can be rerun and the rest kept."""
    if not path.exists():
        return []
    redone = {tuple(r[k] for k in RUN_KEY) for r in records}
    return [r for r in json.loads(path.read_text())
            if tuple(r[k] for k in RUN_KEY) not in redone]


def in_order(records: list[dict]) -> list[dict]:
    """Records by model, method, target and seed, so that a partial rerun keeps the file's
    order."""
    return sorted(records, key=lambda r: (list(MODELS).index(r["model"]),
                                          list(RECIPES).index(r["method"]),
                                          r["target_sparsity"], r["seed"]))


@contextlib.contextmanager
def held(out: Path):
    """Hold ``out`` while its ``pareto.json`` is read and rewritten: pareto runs of different
    models may share one ``--out`` side by side (``benchmarks/gpu_pareto.sh``)."""
    handle = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/out/pareto")
    ap.add_argument("--runs", default=None, help="run directories (default: OUT/runs)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--models", default="lenet300,conv4")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--conv-steps", type=int, default=120,
                    help="conv4: steps per epoch (0: the whole training set)")
    ap.add_argument("--targets", default=",".join(map(str, TARGETS)))
    ap.add_argument("--epochs", type=int, default=None,
                    help="conv4 (default 1) / resnet20 / vit (default: the example's) epochs")
    ap.add_argument("--train-size", type=int, default=None, help="resnet20 / vit images")
    ap.add_argument("--val-size", type=int, default=None,
                    help="validation images (default: 1,000; LeNet-300-100: its example's)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--methods", default=",".join(RECIPES))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="KEY=VALUE for every run, e.g. data.root=DIR")
    args = ap.parse_args()
    out = Path(args.out)
    runs = Path(args.runs) if args.runs else out / "runs"
    targets = [0.5, 0.9] if args.quick else [float(s) for s in args.targets.split(",")]
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    jobs, keys = [], []
    for model in args.models.split(","):
        for method in args.methods.split(","):
            recipe = RECIPES[method]
            for target in targets:
                for seed in seeds:
                    sets = [f"gates.method={method}", f"gates.target_sparsity={target}",
                            f"seed={seed}", *recipe, *budget(model, args), *args.sets]
                    jobs.append((MODELS[model], runs / f"{model}-{method}-{target}-{seed}",
                                 sets))
                    keys.append({"method": method, "model": model, "target_sparsity": target,
                                 "seed": seed, "budget": " ".join(budget(model, args))})
    done = [0]

    def progress(job, summary):
        done[0] += 1
        print(f"[{done[0]}/{len(jobs)}] {job[1].name}: sparsity {summary['sparsity']:.4f} "
              f"test {summary['test_accuracy']:.4f}", flush=True)

    summaries = run_all(jobs, workers=args.workers, on_done=progress, device=args.device)
    records = [{**k, "sparsity": s["sparsity"], "test_accuracy": s["test_accuracy"],
                "val_accuracy": s["val_accuracy"], "relaxed_accuracy": s["relaxed_accuracy"],
                "threshold_sparsity": s["threshold_sparsity"], "device": s["device"],
                "seconds": s["seconds_per_epoch"] * s["epochs"],
                "train_seconds": s.get("train_seconds"), "gate_seconds": s.get("gate_seconds")}
               for k, s in zip(keys, summaries, strict=True)]
    out.mkdir(parents=True, exist_ok=True)
    with held(out):
        records = in_order(kept(out / "pareto.json", records) + records)
        (out / "pareto.json").write_text(json.dumps(records, indent=2) + "\n")
        (out / "machine.json").write_text(json.dumps(machine(), indent=2) + "\n")
        plot(records, out / "pareto.png")
    print("\n| model | method | target | sparsity | test accuracy (mean of seeds) |")
    print("|---|---|---|---|---|")
    for model in dict.fromkeys(r["model"] for r in records):
        for method in dict.fromkeys(r["method"] for r in records if r["model"] == model):
            for target in sorted({r["target_sparsity"] for r in records if r["model"] == model}):
                rs = [r for r in records if (r["model"], r["method"], r["target_sparsity"]) ==
                      (model, method, target)]
                print(f"| {model} | {method} | {target} | "
                      f"{sum(r['sparsity'] for r in rs) / len(rs):.4f} | "
                      f"{sum(r['test_accuracy'] for r in rs) / len(rs):.4f} |")
    print(f"\nwrote {out / 'pareto.json'} and {out / 'pareto.png'}")


if __name__ == "__main__":
    main()
