"""Shared test helpers: the real CLI in a subprocess, data availability."""

import contextlib
import gzip
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from sltc.format.ticket import PREAMBLE

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")
# a budget far too short for the lambda controller (a tenth of the L0 push, 24 steps)
TOO_SHORT = ["--set", "gates.lambda=0.1", "--set", "train.epochs=2", "--set",
             "train.max_steps=12", "--set", "data.synthetic_size=512", "--set", "data.val_size=64"]


def sltc(*args, check=False, timeout=600, env=None):
    """Run the real CLI in a subprocess (``env``: extra variables); returns the
    CompletedProcess."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "sltc.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"sltc {args} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def sltc_here(*args, check=False) -> subprocess.CompletedProcess:
    """The CLI's ``main`` in this process: what ``sltc`` shows, without starting an
    interpreter (and importing torch again). For argument parsing, config checks and the
    one-line errors, and for the runs that only make a ticket for a test to read; a test
    of what a process does on its own (a kill, a resume, byte-identical output across
    processes) uses ``sltc``. The exit code, stdout and stderr as ``sltc`` returns them;
    ``check`` as in ``sltc``."""
    out, err, argv, env, cwd = io.StringIO(), io.StringIO(), sys.argv, dict(os.environ), os.getcwd()
    sys.argv, code = ["sltc", *map(str, args)], 0
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            from sltc.cli import main
            main()
    except SystemExit as e:
        code = e.code
    finally:
        sys.argv = argv
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
    if check and code != 0:
        raise AssertionError(f"sltc {args} failed:\n{out.getvalue()}\n{err.getvalue()}")
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def last_json(proc) -> dict:
    """The JSON object a ``--json`` command prints last."""
    return json.loads(proc.stdout.strip().splitlines()[-1])


def discover_here(*args) -> dict:
    """``sltc discover ARGS --json`` in this process; its summary."""
    return last_json(sltc_here("discover", *args, "--json", check=True))


def write_idx(path: Path, array, compress: bool = False) -> None:
    """An IDX file of uint8 ``array`` (MNIST's format; gzip-compressed where asked)."""
    head = b"\0\0\x08" + bytes([array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    data = head + array.astype("uint8").tobytes()
    Path(path).write_bytes(gzip.compress(data) if compress else data)


requires_fashion = pytest.mark.skipif(not FASHION.is_dir(),
                                      reason="needs apt-get install dataset-fashion-mnist")


def kill_after_epochs(args: list, out: Path, epochs: int = 2, timeout: float = 300) -> None:
    """Start ``args`` (a discover into ``out``) and SIGKILL it, children included, once
    ``out/metrics.jsonl`` holds ``epochs`` lines."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(list(map(str, args)), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    metrics, deadline = out / "metrics.jsonl", time.time() + timeout
    while time.time() < deadline and not (
            metrics.exists() and len(metrics.read_text().splitlines()) >= epochs):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def reseal_ticket(data: bytes, header: dict, minor: int | None = None) -> bytes:
    """Rewrite a ticket's header (and its minor version, if given) and every checksum, so
    only the header's content is wrong."""
    _, major, old_minor, head_len = PREAMBLE.unpack_from(data)
    minor = old_minor if minor is None else minor
    body = data[PREAMBLE.size + head_len:-4]
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    out = PREAMBLE.pack(b"SLTICKET", major, minor, len(head)) + head + body
    return out + struct.pack("<I", zlib.crc32(out))


def ticket_header(data: bytes) -> dict:
    head_len = PREAMBLE.unpack_from(data)[3]
    return json.loads(data[PREAMBLE.size:PREAMBLE.size + head_len])
