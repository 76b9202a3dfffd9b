"""Shared test helpers: the real CLI in a subprocess, data availability."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")


def sltc(*args, check=False, timeout=600):
    """Run the real CLI in a subprocess; returns the CompletedProcess."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "sltc.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"sltc {args} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


requires_fashion = pytest.mark.skipif(not FASHION.is_dir(),
                                      reason="needs apt-get install dataset-fashion-mnist")
