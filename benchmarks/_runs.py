"""Run many ``sltc discover`` jobs, two at a time, each on one thread, and collect summaries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def discover(example: str, out: Path, sets: list[str], device: str = "auto") -> dict:
    """One run in its own process; reuses a finished run directory."""
    if (out / "summary.json").exists():
        return json.loads((out / "summary.json").read_text())
    if out.exists():
        import shutil

        shutil.rmtree(out)
    args = [sys.executable, "-m", "sltc.cli", "discover", example, "--out", str(out), "--json",
            "--device", device]
    for s in sets:
        args += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(args)}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_all(jobs: list[tuple[str, Path, list[str]]], workers: int = 2, on_done=None,
            device: str = "auto") -> list[dict]:
    def one(job):
        summary = discover(*job, device=device)
        if on_done:
            on_done(job, summary)
        return summary

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, jobs))
