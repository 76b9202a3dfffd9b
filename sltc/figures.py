"""Figures as PNG files: matplotlib headless and quiet, each file written atomically.
No torch and nothing of training here: the runtime's ``bench --plot`` draws through it."""

from __future__ import annotations

import logging
from pathlib import Path

from .format.outputs import atomic_write


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
