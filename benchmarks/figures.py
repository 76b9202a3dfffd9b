"""The CRBG paper's three figures for LeNet-300-100 on Fashion-MNIST.

    python benchmarks/figures.py --out benchmarks/out/figures

1. sparsity and validation accuracy (relaxed and frozen gates) over training, read
   from the default run's ``metrics.jsonl`` (the test set is scored once, at the end);
2. per-layer sparsity of the frozen ticket;
3. test accuracy of the ticket against base-network width, 10% to 100% of 300-100,
   at the default target sparsity of 90%.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402
from _runs import run_all  # noqa: E402

EXAMPLE = "examples/lenet300-fashion.yaml"
WIDTHS = [0.1, 0.25, 0.5, 0.75, 1.0]


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sltc.inspect import inspect_ticket

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/out/figures")
    args = ap.parse_args()
    out = Path(args.out)
    jobs = [(EXAMPLE, out / "runs" / f"width{int(f * 100)}",
             [f"model.widths=[{max(1, round(300 * f))},{max(1, round(100 * f))}]"])
            for f in WIDTHS]
    summaries = run_all(jobs)
    default_run = out / "runs" / "width100"
    rows = [json.loads(line) for line in (default_run / "metrics.jsonl").read_text().splitlines()]

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ep = [r["epoch"] for r in rows]
    axes[0].plot(ep, [r["sparsity"] for r in rows], label="sparsity (threshold rule)", color="k")
    axes[0].plot(ep, [r["frozen_accuracy"] for r in rows], label="val accuracy, frozen gates")
    axes[0].plot(ep, [r["relaxed_accuracy"] for r in rows], "--", label="val accuracy, relaxed")
    axes[0].set_xlabel("epoch")
    axes[0].set_title("training")
    axes[0].legend()
    report = inspect_ticket(default_run / "ticket.slt")
    names = [layer["name"] for layer in report["layers"]]
    axes[1].bar(names, [1 - layer["density"] for layer in report["layers"]])
    axes[1].set_ylim(0, 1)
    axes[1].set_title("per-layer sparsity of the ticket")
    axes[2].plot([100 * f for f in WIDTHS], [s["test_accuracy"] for s in summaries], marker="o")
    axes[2].set_xlabel("width, % of 300-100")
    axes[2].set_ylabel("test accuracy (90% sparse ticket)")
    axes[2].set_title("accuracy against width")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "figures.png", dpi=110)
    data = {"machine": machine(), "training": rows, "layers": report["layers"],
            "width": [{"width_fraction": f, "test_accuracy": s["test_accuracy"],
                       "sparsity": s["sparsity"]} for f, s in zip(WIDTHS, summaries, strict=True)]}
    (out / "figures.json").write_text(json.dumps(data, indent=2) + "\n")
    print("| width | test accuracy | sparsity |\n|---|---|---|")
    for w in data["width"]:
        print(f"| {w['width_fraction']:.0%} | {w['test_accuracy']:.4f} | {w['sparsity']:.4f} |")
    print("| layer | sparsity |\n|---|---|")
    for layer in report["layers"]:
        print(f"| {layer['name']} | {1 - layer['density']:.4f} |")
    print(f"\nwrote {out / 'figures.png'}")


if __name__ == "__main__":
    main()
