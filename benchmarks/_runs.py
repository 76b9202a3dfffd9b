"""Run many ``sltc discover`` (or dense-training) jobs, two at a time, each on one thread,
and collect their summaries."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DENSE = Path(__file__).resolve().parent / "dense.py"


def _cached(out: Path, args: list[str]) -> dict:
    """Run ``args`` (a command that writes ``out/summary.json`` and prints it as its last
    line) on one thread; reuse a finished run directory."""
    if (out / "summary.json").exists():
        return json.loads((out / "summary.json").read_text())
    if out.exists():
        shutil.rmtree(out)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(args)}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _sets(sets: list[str]) -> list[str]:
    return [a for s in sets for a in ("--set", s)]


def discover(example: str, out: Path, sets: list[str], device: str = "auto") -> dict:
    """One ``sltc discover`` run in its own process."""
    return _cached(out, [sys.executable, "-m", "sltc.cli", "discover", example, "--out",
                         str(out), "--json", "--device", device, *_sets(sets)])


def dense(example: str, out: Path, sets: list[str], lr: float) -> dict:
    """The example's network trained densely at ``lr`` (``benchmarks/dense.py``)."""
    return _cached(out, [sys.executable, str(DENSE), example, "--out", str(out), "--lr",
                         str(lr), *_sets(sets)])


def run_all(jobs: list[tuple[str, Path, list[str]]], workers: int = 2, on_done=None,
            device: str = "auto", runner=None) -> list[dict]:
    """Every job's summary, in order; ``runner(job)`` runs one (default: ``discover``)."""
    def one(job):
        summary = runner(job) if runner else discover(*job, device=device)
        if on_done:
            on_done(job, summary)
        return summary

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, jobs))
