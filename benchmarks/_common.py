"""Shared by the benchmark scripts: a table on stdout and a JSON file."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def sltc(*args, env: dict | None = None) -> str:
    """Run the real CLI (``env``: variables to set for it); exit with its one-line error if
    it fails."""
    proc = subprocess.run([sys.executable, "-m", "sltc.cli", *map(str, args)], text=True,
                          capture_output=True, env=None if env is None else {**os.environ, **env})
    if proc.returncode:
        sys.exit(proc.stderr)
    return proc.stdout


def machine() -> dict:
    from sltc.runtime.quantize import cpu_int8_kernels

    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "cpu": cpu_model(), "int8_kernels": cpu_int8_kernels(),
            "date": time.strftime("%Y-%m-%d")}


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name, as ``/proc/cpuinfo`` gives it (``platform.processor()`` where
    it does not)."""
    try:
        lines = Path(cpuinfo).read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown"
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")),
                platform.processor() or "unknown")


def report(rows: list[dict], out: str | Path, title: str, columns: list[str]) -> None:
    """Print ``rows`` as a Markdown table and write them, with the machine, to ``out``."""
    print(f"\n{title}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        cells = [f"{r[c]:.4g}" if isinstance(r[c], float) else "-" if r[c] is None else str(r[c])
                 for c in columns]
        print("| " + " | ".join(cells) + " |")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {out}")
