"""Several processes under torchrun (gloo on the CPU), and the CUDA code paths a CPU can run."""

import json
import os
import subprocess
import sys

import pytest

from sltc.budget import HOLD_TOLERANCE
from sltc.format.ticket import Ticket
from tests.helpers import ROOT, TOO_SHORT, discover_here, kill_after_epochs, last_json, sltc_here

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", "-m", "sltc"]
SMALL = ["--set", "data.synthetic_size=512", "--set", "data.val_size=64"]  # 128 test images


def torchrun(*args, check=True):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([*TORCHRUN, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)
    if check and proc.returncode:
        raise AssertionError(f"torchrun {args} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    torchrun("discover", "examples/synthetic.yaml", "--out", out, "--json")
    return out


@pytest.mark.slow  # two torchrun launches of two processes each
def test_two_processes_write_one_deterministic_ticket(ddp_run, synthetic_run, tmp_path):
    assert sorted(p.name for p in ddp_run.iterdir()) == sorted(
        ["config.yaml", "metrics.jsonl", "checkpoint.safetensors", "ticket.slt", "summary.json"])
    rows = [json.loads(r) for r in (ddp_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # one writer
    torchrun("discover", "examples/synthetic.yaml", "--out", tmp_path / "again", "--json")
    assert (tmp_path / "again/ticket.slt").read_bytes() == (ddp_run / "ticket.slt").read_bytes()
    two = json.loads((ddp_run / "summary.json").read_text())
    one = json.loads((synthetic_run / "summary.json").read_text())
    assert abs(two["test_accuracy"] - one["test_accuracy"]) <= 0.03
    assert abs(two["sparsity"] - 0.8) <= 0.01
    # no BatchNorm: a step over two shards is the one-process step up to float order
    a, b = Ticket.load(ddp_run / "ticket.slt"), Ticket.load(synthetic_run / "ticket.slt")
    same = sum(int((a.masks[k] == b.masks[k]).sum()) for k in a.masks)
    assert same / sum(m.size for m in a.masks.values()) > 0.99


@pytest.mark.slow  # three torchrun launches of two processes each
def test_resume_under_torchrun_gives_the_uninterrupted_ticket(ddp_run, tmp_path):
    out = tmp_path / "killed"
    kill_after_epochs([*TORCHRUN, "discover", "examples/synthetic.yaml", "--out", out, "--json",
                       "--set", "train.epochs=5"], out)
    assert not (out / "summary.json").exists(), "the run finished before it could be killed"
    torchrun("discover", "examples/synthetic.yaml", "--out", out, "--resume", "--json",
             "--set", "train.epochs=5")
    torchrun("discover", "examples/synthetic.yaml", "--out", tmp_path / "whole", "--json",
             "--set", "train.epochs=5")
    assert (out / "ticket.slt").read_bytes() == (tmp_path / "whole/ticket.slt").read_bytes()


@pytest.mark.slow  # one torchrun launch of two processes
def test_two_processes_hold_the_target_past_the_deadline(tmp_path):
    """A budget far too short for the controller: both ranks shift their gates by the same
    amount from the deadline on, so the ticket's mask is the one training ended with."""
    proc = torchrun("discover", "examples/synthetic.yaml", "--out", tmp_path / "run", "--json",
                    *TOO_SHORT)
    summary = last_json(proc)
    assert summary["held_steps"] > 0 and summary["deadline_sparsity"] < 0.8 - 0.02
    assert abs(summary["threshold_sparsity"] - 0.8) <= HOLD_TOLERANCE + 1e-3
    assert abs(summary["sparsity"] - summary["threshold_sparsity"]) <= 0.01


def test_cuda_code_paths_on_the_cpu(tmp_path):
    """channels_last and bf16 autocast, forced on where CUDA would choose them; the ticket is
    still scored in fp32, so the runtime reproduces its accuracy."""
    out, out_fp32 = tmp_path / "run", tmp_path / "fp32"
    conv2 = ["--set", "model.arch=conv2", "--set", "model.widths=null", "--set",
             "model.batchnorm=true", "--set", "train.epochs=1", "--set", "train.max_steps=4", *SMALL]
    summary = discover_here("examples/synthetic.yaml", "--out", out, *conv2, "--set",
                            "train.channels_last=true", "--set", "train.precision=bf16")
    plain = discover_here("examples/synthetic.yaml", "--out", out_fp32, *conv2)
    assert (out / "ticket.slt").read_bytes() != (out_fp32 / "ticket.slt").read_bytes()
    assert abs(summary["sparsity"] - plain["sparsity"]) <= 0.01
    validated = last_json(sltc_here("validate", out / "ticket.slt", "--engine", "dense", "--json",
                                    check=True))
    assert validated["test_accuracy"] == summary["test_accuracy"]
