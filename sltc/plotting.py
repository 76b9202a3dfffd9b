"""A run's curves (``sltc plot``), drawn from its ``metrics.jsonl``."""

from __future__ import annotations

from pathlib import Path

from . import rundir
from .figures import pyplot, save
from .format.errors import SltcError
from .format.outputs import METRICS


def run_metrics(run_dir: str | Path) -> list[dict]:
    """The epochs of a run's ``metrics.jsonl`` (a last line cut short by a kill is skipped)."""
    path = Path(run_dir) / METRICS
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


STOPPED = 1e-3  # a flip rate below this: the mask no longer changes, the search has stopped

# (panel title, y scale, [(metrics key, label, line style)])
PANELS = [
    ("task loss (training, cross-entropy)", "linear", [("task_loss", "task loss", "-")]),
    ("L0 term: expected density of the gates", "linear", [("l0", "expected density", "-")]),
    ("validation accuracy", "linear", [
        ("frozen_accuracy", "threshold-rule ticket", "-"),
        ("relaxed_accuracy", "relaxed gates", "--")]),
    ("sparsity (threshold rule)", "linear", [("sparsity", "threshold rule", "-")]),
    ("mask flip rate (changed since the previous epoch)", "log", [("flip_rate", "flip rate", "-")]),
    ("live gates (still get task gradient)", "linear", [("live_fraction", "live fraction", "-")]),
    ("lambda (end of epoch)", "log", [("lambda", "lambda", "-")]),
    ("seconds per epoch", "linear", [("seconds", "epoch", "-"), ("gate_seconds", "gates", ":")]),
]


def plot_curves(runs: list[tuple[str, list[dict]]], path: str | Path,
                target: float | None = None) -> None:
    """Per-epoch curves of one run or several (one colour each, labelled by name): task
    loss, the L0 term, validation accuracy (threshold-rule ticket and relaxed gates),
    sparsity against ``target``, the mask flip rate (the band below ``STOPPED`` marks a
    search that has stopped), the live fraction, lambda and seconds per epoch."""
    plt = pyplot()
    fig, axes = plt.subplots(4, 2, figsize=(11, 11), sharex=True)
    try:
        _draw_curves(plt, fig, axes, runs, target)
        save(fig, path)
    finally:
        plt.close(fig)


def _draw_curves(plt, fig, axes, runs: list[tuple[str, list[dict]]],
                 target: float | None) -> None:
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (title, scale, series) in zip(axes.flat, PANELS, strict=True):
        drawn = False
        for i, (name, rows) in enumerate(runs):
            for j, (key, label, style) in enumerate(series):
                xs, ys = _series(rows, key, positive=scale == "log")
                if xs:  # one run: a colour per curve; several: a colour per run
                    shown = label if len(runs) == 1 else f"{name}: {label}"
                    colour = colours[(j if len(runs) == 1 else i) % len(colours)]
                    ax.plot(xs, ys, style, marker=".", color=colour, label=shown)
                    drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "not recorded by this run", ha="center", va="center",
                    transform=ax.transAxes, color="gray")
        ax.set_title(title, fontsize=9)
        ax.set_yscale(scale if drawn else "linear")
        if scale == "log" and drawn:  # 2 and 0.001, not 2x10^0 and 10^-3
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            low, high = ax.get_ylim()
            if high < 10 * low:  # less than a decade: the minor ticks are all there is
                ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.grid(alpha=0.3)
    _mark_stopped(axes.flat[4])
    if target is not None:
        axes.flat[3].axhline(target, color="gray", linestyle="--", label=f"target {target}")
    for ax in axes.flat:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.25
    fig.suptitle(", ".join(f"{name} ({len(rows)} epochs)" for name, rows in runs), fontsize=10)
    fig.tight_layout()


def _mark_stopped(ax) -> None:
    """Shade the flip rates at which the mask no longer changes."""
    low, high = ax.get_ylim()
    if ax.get_yscale() == "log":
        ax.axhspan(min(low, STOPPED / 10), STOPPED, color="gray", alpha=0.15,
                   label=f"search stopped (< {STOPPED:g})")
        ax.set_ylim(min(low, STOPPED / 10), max(high, STOPPED * 10))
