"""Figures as PNG files: matplotlib headless and quiet, each file written atomically.
No torch here (the runtime's ``bench --plot`` draws through it too)."""

from __future__ import annotations

import logging
from pathlib import Path

from . import rundir
from .errors import SltcError
from .io import atomic_write


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, without its first-use font-cache notice."""
    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str | Path, dpi: int = 110) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    pyplot().close(fig)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The epochs of a run's ``metrics.jsonl`` (a last line cut short by a kill is skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise SltcError(f"{run_dir}: no metrics.jsonl; pass a run directory made by discover")
    rows = rundir.read_metrics(path)
    if not rows and path.stat().st_size > 0:
        raise SltcError(f"{path}: no line holds an epoch's record (a JSON object of numbers "
                        "with an integer epoch); pass a run directory made by discover")
    if not rows:
        raise SltcError(f"{path}: no finished epoch yet; plot once the first epoch has ended")
    return rows


def _series(rows: list[dict], key: str, positive: bool = False) -> tuple[list, list]:
    """(epochs, values) of ``key`` where recorded (and above 0, for a log scale)."""
    points = [(r["epoch"], r[key]) for r in rows
              if r.get(key) is not None and (not positive or r[key] > 0)]
    return [p[0] for p in points], [p[1] for p in points]


def plot_curves(run_dir: str | Path, path: str | Path, target: float | None = None) -> int:
    """Loss, validation accuracy (relaxed gates and frozen ticket), sparsity and lambda per
    epoch, from ``metrics.jsonl``; returns the number of epochs drawn."""
    rows = read_metrics(run_dir)
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    (loss, acc), (spars, lam) = axes
    loss.plot(*_series(rows, "train_loss"), marker=".", label="train loss (task + lambda L0)")
    loss.set_title("loss")
    for key, label in (("relaxed_accuracy", "relaxed gates"), ("frozen_accuracy", "frozen ticket")):
        acc.plot(*_series(rows, key), marker="o", label=label)
    acc.set_title("validation accuracy")
    spars.plot(*_series(rows, "sparsity"), marker="o", label="threshold rule")
    if target is not None:
        spars.axhline(target, color="gray", linestyle="--", label=f"target {target}")
    spars.set_title("sparsity")
    epochs, lambdas = _series(rows, "lambda", positive=True)  # 0: the L0 term is off
    lam.plot(epochs, lambdas, marker=".", label="lambda")
    if lambdas:
        lam.set_yscale("log")
    lam.set_title("lambda (end of epoch)")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    fig.suptitle(f"{Path(run_dir).name}: {len(rows)} epochs", fontsize=10)
    fig.tight_layout()
    save(fig, path)
    return len(rows)
