"""End-to-end discover runs through the real CLI: files, determinism, resume, failures."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sltc.budget import HOLD_TOLERANCE
from sltc.config import GatesConfig
from sltc.format.ticket import Ticket
from tests.helpers import ROOT, TOO_SHORT, discover_here, kill_after_epochs, last_json, requires_fashion, sltc

RUN_FILES = ("config.yaml", "metrics.jsonl", "checkpoint.safetensors", "ticket.slt",
             "summary.json")
SUMMARY_KEYS = ("test_accuracy", "relaxed_accuracy", "sparsity", "density", "epochs",
                "seconds_per_epoch", "method", "seed")


def test_run_directory_and_summary(synthetic_run):
    for name in RUN_FILES:
        assert (synthetic_run / name).is_file()
    summary = json.loads((synthetic_run / "summary.json").read_text())
    assert all(k in summary for k in SUMMARY_KEYS)
    assert abs(summary["sparsity"] - 0.8) <= 0.01
    assert summary["test_accuracy"] > 0.5  # ten classes: chance is 0.1
    assert summary["warnings"] == []  # the first example run warns of nothing
    rows = [json.loads(line) for line in (synthetic_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for key in ("train_loss", "l0", "sparsity", "relaxed_accuracy", "frozen_accuracy", "seconds",
                "task_loss", "flip_rate", "live_fraction", "gate_seconds"):
        assert all(key in r for r in rows)
    assert all(r["task_loss"] < r["train_loss"] for r in rows)  # the L0 term is left out
    assert 0 < rows[-1]["flip_rate"] < rows[0]["flip_rate"]  # the search settles
    # a dense start (target 0.8): the first epoch's flips are the gates it closed
    assert rows[0]["flip_rate"] == pytest.approx(rows[0]["sparsity"], abs=1e-12)
    assert summary["gate_seconds"] < summary["train_seconds"]
    with open(synthetic_run / "checkpoint.safetensors", "rb") as f:
        assert b"pickle" not in f.read()


def test_same_command_same_ticket(synthetic_run, tmp_path):
    proc = sltc("discover", "examples/synthetic.yaml", "--out", tmp_path / "again", "--json",
                check=True)
    summary = last_json(proc)
    first = json.loads((synthetic_run / "summary.json").read_text())
    assert (summary["test_accuracy"], summary["sparsity"]) == (first["test_accuracy"],
                                                               first["sparsity"])
    a, b = Ticket.load(synthetic_run / "ticket.slt"), Ticket.load(tmp_path / "again/ticket.slt")
    assert all((a.masks[k] == b.masks[k]).all() for k in a.masks)
    assert (synthetic_run / "ticket.slt").read_bytes() == (tmp_path / "again/ticket.slt").read_bytes()


def test_resume_after_sigkill_gives_the_same_mask(synthetic_run, tmp_path):
    out = tmp_path / "killed"
    kill_after_epochs([sys.executable, "-m", "sltc.cli", "discover", "examples/synthetic.yaml",
                       "--out", out, "--json", "--set", "train.epochs=6"], out)
    assert not (out / "summary.json").exists(), "the run finished before it could be killed"
    sltc("discover", "examples/synthetic.yaml", "--out", out, "--resume", "--json",
         "--set", "train.epochs=6", check=True)
    discover_here("examples/synthetic.yaml", "--out", tmp_path / "whole",
                  "--set", "train.epochs=6")  # the run never stopped
    assert (out / "ticket.slt").read_bytes() == (tmp_path / "whole/ticket.slt").read_bytes()
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    whole = [json.loads(x) for x in (tmp_path / "whole/metrics.jsonl").read_text().splitlines()]
    searched = [(r["flip_rate"], r["live_fraction"], r["task_loss"]) for r in rows]
    assert searched == [(r["flip_rate"], r["live_fraction"], r["task_loss"]) for r in whole]


def test_resume_hint_runs_verbatim_and_gives_the_same_ticket(tmp_path):
    """Ctrl-C prints a command that, pasted into a shell as it is, continues the run, whose
    --set overrides it need not repeat, to the ticket of a run never stopped."""
    out, overrides = tmp_path / "stopped", ["--set", "train.epochs=6", "--set", "train.lr=0.04"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([sys.executable, "-m", "sltc.cli", "discover",
                             "examples/synthetic.yaml", "--out", str(out), *overrides],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while not (out / "checkpoint.safetensors").exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and not (out / "summary.json").exists(), err[-1000:]
    hint = err.strip().splitlines()[-1].partition("continue from the last finished epoch "
                                                  "with: ")[2]
    assert hint.startswith("sltc discover "), err[-1000:]
    resumed = subprocess.run(hint, shell=True, cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-1000:]
    discover_here("examples/synthetic.yaml", "--out", tmp_path / "whole", *overrides)
    assert (out / "ticket.slt").read_bytes() == (tmp_path / "whole/ticket.slt").read_bytes()


def test_non_finite_loss_stops_cleanly_and_keeps_checkpoint(synthetic_run, tmp_path):
    out = tmp_path / "nan"
    proc = sltc("discover", "examples/synthetic.yaml", "--out", out, "--json",
                "--set", "model.gain=100",  # 30 layers that each scale activations by ~70
                "--set", f"model.widths=[{','.join(['16'] * 30)}]")  # overflow float32
    assert proc.returncode == 2
    line, = proc.stderr.strip().splitlines()
    assert "loss became" in line and "lower" in line and "nothing was kept" in line
    assert not (out / "ticket.slt").exists() and (out / "config.yaml").exists()


def test_refuses_to_overwrite_a_run(synthetic_run):
    proc = sltc("discover", "examples/synthetic.yaml", "--out", synthetic_run)
    assert proc.returncode == 2 and "--resume" in proc.stderr


@pytest.mark.parametrize("method", ["hard_concrete", "edge_popup"])
def test_baselines_reach_the_target(tmp_path, method):
    proc = sltc("discover", "examples/synthetic.yaml", "--out", tmp_path / method, "--json",
                "--set", f"gates.method={method}", check=True)
    summary = last_json(proc)
    assert abs(summary["sparsity"] - 0.8) <= 0.01 and summary["test_accuracy"] > 0.3


DEADLINE = GatesConfig.model_fields["deadline"].default


@pytest.mark.parametrize("method", ["crbg", "crbg_st", "hard_concrete"])
def test_every_gate_method_ends_training_the_tickets_mask(tmp_path, method):
    """A budget far too short for the controller (a tenth of the L0 push, 24 steps): from
    ``gates.deadline`` on the hold keeps the threshold rule on the target, so the freezer
    moves the sparsity by less than a point; and the run says the gates did not get there
    by themselves, and what budget would have let them. Without the hold (deadline 1) the
    freezer has to move it."""
    held = discover_here("examples/synthetic.yaml", "--out", tmp_path / "held", *TOO_SHORT,
                         "--set", f"gates.method={method}")
    assert abs(held["threshold_sparsity"] - 0.8) <= HOLD_TOLERANCE + 1e-3
    assert abs(held["sparsity"] - held["threshold_sparsity"]) <= 0.01
    assert held["deadline_step"] == int(DEADLINE * held["total_steps"]) + 1
    assert held["deadline_sparsity"] < 0.8 - 0.02
    warned, = [w for w in held["warnings"] if "by themselves" in w]
    assert f"{held['deadline_sparsity']:.3f}" in warned
    assert "steps (" in warned or "did not come down by themselves" in warned
    free = discover_here("examples/synthetic.yaml", "--out", tmp_path / "free", *TOO_SHORT,
                         "--set", f"gates.method={method}", "--set", "gates.deadline=1")
    assert free["held_steps"] == 0 and free["deadline_sparsity"] is None
    assert free["sparsity"] - free["threshold_sparsity"] > 0.02


def test_a_resumed_run_is_held_from_its_new_deadline(tmp_path):
    """Continued from 2 to 4 epochs, a run is held again past the deadline of its new length."""
    out = tmp_path / "run"
    discover_here("examples/synthetic.yaml", "--out", out, *TOO_SHORT)
    longer = discover_here("examples/synthetic.yaml", "--out", out, *TOO_SHORT, "--set",
                           "train.epochs=4", "--resume")
    assert longer["total_steps"] == 2 * longer["steps_per_epoch"] * 2
    assert longer["deadline_step"] == int(DEADLINE * longer["total_steps"]) + 1
    assert abs(longer["threshold_sparsity"] - 0.8) <= HOLD_TOLERANCE + 1e-3


@pytest.mark.slow
@requires_fashion
def test_one_epoch_on_fashion_mnist(tmp_path):
    proc = sltc("discover", "examples/lenet300-fashion.yaml", "--out", tmp_path / "a",
                "--set", "train.epochs=1", "--json", check=True)
    summary = last_json(proc)
    assert summary["test_accuracy"] >= 0.75
    assert abs(summary["sparsity"] - 0.9) <= 0.01
