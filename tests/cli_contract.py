"""The contract every user mistake is held to, and the real CLI that is held to it.

A case runs the real CLI in a subprocess and must end in exit code 2 with exactly one line
on stderr starting with ``sltc: error:``, no traceback, a peak RSS under 1 GiB, within its
timeout, and every file of the user's as it was (``check_cases``). ``write_ticket`` and
``write_csr`` make files that load but break one rule; ``idx_set`` and ``image_folder``
make small datasets.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from sltc.format import limits
from tests.helpers import ROOT, reseal_ticket, ticket_header, write_idx

MEMORY_LIMIT = limits.MEMORY
TIMEOUT = 60


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    peak_rss: int  # bytes
    seconds: float


# Starts every case of a batch, two at a time, and reads each one's peak RSS (kB) from
# wait4: one interpreter for the batch, one per case. A case forked straight from pytest
# would count pytest's own pages in its peak (the peak survives exec); one forked from this
# small process does not.
SPAWNER = """
import json, os, signal, subprocess, sys, threading, time
from concurrent.futures import ThreadPoolExecutor

def run(job):
    tic = time.perf_counter()
    with open(job["out"], "wb") as out, open(job["err"], "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "sltc.cli", *job["args"]], cwd=job["cwd"],
                                env=job["env"], stdout=out, stderr=err, start_new_session=True)
    timer = threading.Timer(job["timeout"], os.killpg, (proc.pid, signal.SIGKILL))
    timer.start()
    _, status, usage = os.wait4(proc.pid, 0)
    timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"code": proc.returncode, "rss": usage.ru_maxrss, "seconds": time.perf_counter() - tic}

with ThreadPoolExecutor(2) as pool:
    print(json.dumps(list(pool.map(run, json.load(sys.stdin)))))
"""


def run_clis(cases: list[tuple[list, Path]], timeout: float = TIMEOUT, env=None) -> list[Result]:
    """The real CLI in a subprocess per ``(args, cwd)``, two at a time (each is mostly one
    CPU-bound start-up), with its peak RSS and a hard timeout."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT), **(env or {})}
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [{"args": list(map(str, args)), "cwd": str(cwd), "env": env, "timeout": timeout,
                 "out": f"{tmp}/{i}.out", "err": f"{tmp}/{i}.err"}
                for i, (args, cwd) in enumerate(cases)]
        done = subprocess.run([sys.executable, "-c", SPAWNER], input=json.dumps(jobs), text=True,
                              capture_output=True, check=True, env=env)
        return [Result(row["code"], Path(job["out"]).read_text(errors="replace"),
                       Path(job["err"]).read_text(errors="replace"), row["rss"] * 1024,
                       row["seconds"]) for job, row in zip(jobs, json.loads(done.stdout), strict=True)]


def run_cli(*args, cwd=ROOT, timeout: float = TIMEOUT, env=None) -> Result:
    """The real CLI in a subprocess, with its peak RSS and a hard timeout."""
    return run_clis([(list(args), cwd)], timeout, env)[0]


def snapshot(*roots: Path) -> dict[str, str]:
    """Path -> SHA-256 of every file under ``roots`` (what must not change)."""
    files = {}
    for root in roots:
        for path in [root] if root.is_file() else sorted(root.rglob("*")):
            if path.is_file():
                files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def assert_user_error(result: Result, timeout: float = TIMEOUT, code: int = 2) -> str:
    """The contract for a user mistake; returns the message."""
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert result.code == code, (result.code, result.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("sltc: error: "), result.stderr[-2000:]
    assert result.peak_rss < MEMORY_LIMIT, result.peak_rss
    assert result.seconds < timeout
    return lines[0]


@dataclass
class Case:
    args: list
    watch: list = field(default_factory=list)  # files and folders that must not change
    match: str | None = None  # a word the message must hold
    cwd: Path = ROOT


def check_cases(cases: dict[str, Case]) -> None:
    """Run every case and check each against the contract; one failure report names every
    case that broke it."""
    before = {name: snapshot(*case.watch) for name, case in cases.items()}
    results = dict(zip(cases, run_clis([(c.args, c.cwd) for c in cases.values()]), strict=True))
    failures = []
    for name, case in cases.items():
        try:
            message = assert_user_error(results[name])
            assert snapshot(*case.watch) == before[name], "a file of the user's changed"
            assert case.match is None or case.match.lower() in message.lower(), message
        except AssertionError as e:
            failures.append(f"{name}: {e}")
    assert not failures, "\n".join(failures)


def check_case(args, watch=(), match: str | None = None, cwd=ROOT) -> None:
    check_cases({"case": Case(list(args), list(watch), match, cwd)})


def write_ticket(good: Path, dest: Path, edit) -> Path:
    data = (good / "model.slt").read_bytes()
    header = ticket_header(data)
    edit(header)
    dest.write_bytes(reseal_ticket(data, header))
    return dest


def write_csr(good: Path, dest: Path, edit, source="model.csr.safetensors") -> Path:
    with safe_open(str(good / source), "np") as f:
        manifest = json.loads(f.metadata()["sltc"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    edit(manifest, tensors)
    save_file(tensors, str(dest), metadata={"sltc": json.dumps(manifest)})
    return dest


def first_csr(manifest: dict) -> str:
    return next(layer["name"] for layer in manifest["layers"] if layer["storage"] == "csr")


def idx_set(root: Path, train=(64, 28, 28), test=(32, 28, 28), labels=1, pixels=None) -> Path:
    """IDX files of random (or ``pixels``) images, ``labels`` labels per image."""
    rng = np.random.default_rng(0)
    root.mkdir()
    for split, shape in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, shape) if pixels is None else np.full(shape, pixels)
        write_idx(root / f"{split}-images-idx3-ubyte", images)
        write_idx(root / f"{split}-labels-idx1-ubyte",
                  rng.integers(0, 10, (shape[0], labels) if labels > 1 else shape[:1]))
    return root


def image_folder(root: Path, size=(8, 8), per_class: int = 4) -> Path:
    from PIL import Image

    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(
                    root / split / label / f"{i}.png")
    return root
