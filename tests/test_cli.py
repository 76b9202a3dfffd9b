"""freeze, inspect and eval through the real CLI on a finished run."""

import json
import subprocess
import sys
import time

import pytest

from sltc.format.maskcode import entropy_bits
from sltc.format.ticket import Ticket
from tests.helpers import last_json, sltc, sltc_here


def test_freeze_is_byte_identical_and_hits_targets(synthetic_run, tmp_path):
    a, b = tmp_path / "a.slt", tmp_path / "b.slt"
    sltc("freeze", synthetic_run, "-o", a, "--json", check=True)  # in a process of its own
    sltc_here("freeze", synthetic_run, "-o", b, "--json", check=True)
    assert a.read_bytes() == b.read_bytes() == (synthetic_run / "ticket.slt").read_bytes()
    for scope in ("layer", "global"):
        out = last_json(sltc_here("freeze", synthetic_run, "-o", tmp_path / f"{scope}.slt",
                                  "--target-sparsity", "0.95", "--scope", scope, "--json",
                                  check=True))
        assert abs(out["sparsity"] - 0.95) < 1e-3
        assert abs(Ticket.load(tmp_path / f"{scope}.slt").sparsity() - 0.95) < 1e-3


def test_eval_reproduces_the_run_accuracy(synthetic_run):
    summary = json.loads((synthetic_run / "summary.json").read_text())
    out = last_json(sltc("eval", synthetic_run / "ticket.slt", "--json", check=True))
    assert out["test_accuracy"] == summary["test_accuracy"]


def test_inspect_reports_layers_and_totals(synthetic_run, tmp_path):
    png = tmp_path / "sparsity.png"
    report = last_json(sltc("inspect", synthetic_run / "ticket.slt", "--json", "--plot", png,
                            check=True))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for layer in report["layers"]:
        for key in ("name", "shape", "numel", "density", "encoding", "mask_bits", "entropy_bits"):
            assert key in layer
    total = report["total"]
    for key in ("mask_bits", "entropy_bits", "file_bytes", "dense_fp32_bytes", "compression_ratio"):
        assert key in total
    assert total["mask_bits"] == sum(x["mask_bits"] for x in report["layers"])
    ticket = Ticket.load(synthetic_run / "ticket.slt")
    expect = sum(entropy_bits(m.size, int(m.sum())) for m in ticket.masks.values())
    assert total["entropy_bits"] == pytest.approx(expect)
    assert total["file_bytes"] == (synthetic_run / "ticket.slt").stat().st_size


def test_bare_sltc_prints_its_help_once():
    proc = sltc()
    assert proc.returncode == 0 and proc.stdout.count("Usage:") == 1, proc.stdout
    assert not proc.stderr.strip(), proc.stderr


def test_bad_paths_are_one_line_errors(tmp_path):
    for args in (("inspect", tmp_path / "missing.slt"), ("freeze", tmp_path),
                 ("discover", tmp_path / "missing.yaml")):
        proc = sltc_here(*args)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_train_threads_sets_the_runs_threads(tmp_path):
    """train.threads is the run's torch thread count (recorded in the summary), over the
    environment's OMP_NUM_THREADS."""
    proc = sltc("discover", "examples/synthetic.yaml", "--out", tmp_path / "r", "--json",
                "--set", "train.epochs=1", "--set", "train.max_steps=2",
                "--set", "train.threads=2", env={"OMP_NUM_THREADS": "1"}, check=True)
    assert last_json(proc)["threads"] == 2


def test_openmp_threads_sleep_at_once_only_on_a_busy_machine():
    from sltc.openmp import busy_cores, openmp_env

    idle, busy = openmp_env(0.3, 2), openmp_env(1.5, 2)
    assert int(idle["GOMP_SPINCOUNT"]) > 0 and busy["GOMP_SPINCOUNT"] == "0"
    assert idle["OMP_WAIT_POLICY"] == busy["OMP_WAIT_POLICY"] == "PASSIVE"
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.2)
        assert busy_cores() >= 1.5  # two processes that never wait, whatever else runs
    finally:
        for p in spinners:
            p.kill()
            p.wait()
