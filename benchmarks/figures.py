"""The CRBG paper's three figures for LeNet-300-100 on Fashion-MNIST.

    python benchmarks/figures.py --out benchmarks/out/figures

1. sparsity and validation accuracy (relaxed and frozen gates) over training, read
   from the default run's ``metrics.jsonl`` (the test set is scored once, at the end);
2. per-layer sparsity of the frozen ticket;
3. test accuracy of the ticket against base-network width, 10% to 100% of 300-100,
   at the default target sparsity of 90%.

And figure 2 for a ResNet, from a ticket already made (``benchmarks/zoo_fashion.py``
makes the ResNet-20 one):

    python benchmarks/figures.py --resnet runs/zoo-fashion/resnet20/ticket.slt

per-layer sparsity of the frozen ticket, layers in network order, to ``resnet_layers.png``
and ``resnet_layers.json``, with the mean sparsity of each stage's 3x3 convolutions.
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


def resnet_layers(ticket: Path, out: Path) -> None:
    """The paper's figure 2 for a ResNet ticket: per-layer sparsity in network order."""
    from sltc.inspection import inspect_ticket, plot_sparsity

    report = inspect_ticket(ticket)
    out.mkdir(parents=True, exist_ok=True)
    plot_sparsity(report, out / "resnet_layers.png")
    stages: dict[str, list[float]] = {}
    for layer in report["layers"]:
        if len(layer["shape"]) == 4 and layer["shape"][2:] == [3, 3]:
            parts = layer["name"].split(".")
            stage = f"stage {int(parts[1]) + 1}" if parts[0] == "layers" else parts[0]
            stages.setdefault(stage, []).append(1 - layer["density"])
    means = {stage: sum(v) / len(v) for stage, v in stages.items()}
    data = {"machine": machine(), "ticket": str(ticket), "stage_mean_sparsity": means,
            "layers": [{"name": layer["name"], "shape": layer["shape"],
                        "sparsity": 1 - layer["density"]} for layer in report["layers"]]}
    (out / "resnet_layers.json").write_text(json.dumps(data, indent=2) + "\n")
    print("| layer | shape | sparsity |\n|---|---|---|")
    for layer in data["layers"]:
        print(f"| {layer['name']} | {'x'.join(map(str, layer['shape']))} | "
              f"{layer['sparsity']:.3f} |")
    print("\n" + ", ".join(f"{s}: {m:.3f}" for s, m in means.items()))
    print(f"\nwrote {out / 'resnet_layers.png'}")


def main() -> None:
    from sltc.figures import pyplot
    from sltc.inspection import inspect_ticket

    plt = pyplot()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/out/figures")
    ap.add_argument("--resnet", type=Path, help="draw figure 2 for this ResNet ticket only")
    args = ap.parse_args()
    out = Path(args.out)
    if args.resnet:
        resnet_layers(args.resnet, out)
        return
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
