"""``sltc inspect``: what a ticket holds and how close its masks sit to the entropy floor."""

from __future__ import annotations

import math
from pathlib import Path

from .format import skeleton
from .format.maskcode import entropy_bits
from .format.ticket import Ticket


def inspect_ticket(path: str | Path) -> dict:
    ticket = Ticket.load(path)
    layers = []
    for entry in ticket.stored:
        numel = math.prod(entry["shape"])
        n = math.prod(entry["mask_shape"])
        layers.append({
            "name": entry["name"],
            "shape": entry["shape"],
            "numel": numel,
            "gated": entry["granularity"] is not None,
            "granularity": entry["granularity"],
            "density": entry["ones"] / n,
            "encoding": entry["encoding"],
            "mask_bits": 8 * entry["length"],
            "entropy_bits": entropy_bits(n, entry["ones"]),
        })
    file_bytes = Path(path).stat().st_size
    dense = 4 * sum(layer["numel"] for layer in layers)
    total = {
        "mask_bits": sum(layer["mask_bits"] for layer in layers),
        "entropy_bits": sum(layer["entropy_bits"] for layer in layers),
        "file_bytes": file_bytes,
        "skeleton_bytes": len(skeleton.encode(skeleton.serialize(ticket.skeleton))),
        "graph_nodes": len(ticket.skeleton.graph.node),
        "dense_fp32_bytes": dense,
        "compression_ratio": dense / file_bytes,
        "sparsity": ticket.sparsity(),
        "seed": ticket.seed,
        "test_accuracy": ticket.model_meta().test_accuracy,
    }
    return {"layers": layers, "total": total}


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ticket layers")
    for col in ("name", "shape", "numel", "density", "encoding", "mask_bits", "entropy_bits"):
        table.add_column(col, justify="left" if col in ("name", "encoding") else "right")
    for layer in report["layers"]:
        table.add_row(layer["name"], "x".join(map(str, layer["shape"])), str(layer["numel"]),
                      f"{layer['density']:.4f}", layer["encoding"], str(layer["mask_bits"]),
                      f"{layer['entropy_bits']:.0f}")
    console = Console()
    console.print(table)
    t = report["total"]
    console.print(
        f"mask bits {t['mask_bits']} vs entropy floor {t['entropy_bits']:.0f} "
        f"({t['mask_bits'] / max(t['entropy_bits'], 1):.4f}x); file {t['file_bytes']} B, of "
        f"which skeleton {t['skeleton_bytes']} B ({t['graph_nodes']} nodes); "
        f"dense fp32 {t['dense_fp32_bytes']} B; {t['compression_ratio']:.1f}x smaller; "
        f"sparsity {t['sparsity']:.4f}")


def plot_sparsity(report: dict, path: str | Path) -> None:
    """Per-layer sparsity in network order, first layer at the top: one row per layer, so
    that networks of 50+ layers stay readable; ungated layers in grey."""
    from .figures import pyplot, save

    plt = pyplot()
    layers = report["layers"]
    names = [f"{layer['name']} ({'x'.join(map(str, layer['shape']))})" for layer in layers]
    values = [1 - layer["density"] for layer in layers]
    colours = ["tab:blue" if layer["gated"] else "tab:gray" for layer in layers]
    fig, ax = plt.subplots(figsize=(7.5, max(2.5, 0.6 + 0.22 * len(layers))))
    rows = range(len(layers))
    ax.barh(rows, values, color=colours)
    ax.set_yticks(rows, names, fontsize=7 if len(layers) > 20 else 9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("sparsity (pruned fraction)")
    ax.set_title(f"per-layer sparsity, {len(layers)} layers in network order "
                 f"(ticket: {report['total']['sparsity']:.3f})", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save(fig, path)
