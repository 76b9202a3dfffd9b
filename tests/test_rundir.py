"""Run directories through the real CLI: one discover at a time, resuming after a kill or
from a damaged checkpoint, stale temp files, and metrics that do or do not plot."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import save_file

from sltc.format.errors import SltcError
from tests.cli_contract import Case, check_case, check_cases, run_cli
from tests.helpers import ROOT


def test_two_discovers_into_one_directory(user):
    """Started together, one holds the directory and finishes; the other is refused."""
    out = user / "run"
    args = [sys.executable, "-m", "sltc.cli", "discover", "examples/synthetic.yaml", "--out",
            out, "--set", "train.epochs=10", "--json"]
    procs = [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [(p.communicate(timeout=300), p.returncode) for p in procs]
    (done, _), = [r for r in results if r[1] == 0]
    ((_, refused), code), = [r for r in results if r[1] != 0]
    assert json.loads(done[0].splitlines()[-1])["epochs"] == 10
    assert code == 2 and "in use by another sltc discover" in refused, refused
    assert len(refused.strip().splitlines()) == 1


def _resumable(synthetic_run, user) -> Path:
    run = user / "run"
    shutil.copytree(synthetic_run, run)
    for name in ("ticket.slt", "summary.json"):
        (run / name).unlink()
    return run


def _rewrite_checkpoint(path: Path, edit) -> None:
    with safe_open(str(path), "np") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    edit(meta, tensors)
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize("damage", ["state-keys", "optimizer-shapes"])
def test_resume_damaged_checkpoint(damage, synthetic_run, user):
    run = _resumable(synthetic_run, user)

    def edit(meta, tensors):
        if damage == "state-keys":
            meta["state"] = json.dumps({"epoch": 3})
        else:
            key = next(k for k in tensors if k.startswith("optim.") and tensors[k].ndim)
            tensors[key] = np.zeros((7, 3), tensors[key].dtype)
    _rewrite_checkpoint(run / "checkpoint.safetensors", edit)
    check_case(["discover", run / "config.yaml", "--out", run, "--resume", "--set",
                "train.epochs=4"], [run], "checkpoint" if damage == "state-keys" else "optimizer")


def _edit_run_record(path: Path, edit) -> None:
    def rewrite(meta, tensors):
        run = json.loads(meta["run"])
        edit(run)
        meta["run"] = json.dumps(run)
        if not run:
            del meta["run"]
    _rewrite_checkpoint(path, rewrite)


def test_a_checkpoint_of_another_run_is_refused(synthetic_run, user):
    """freeze and --resume read a checkpoint only with the seed, config and layer table of
    its run directory's config.yaml; one written before sltc recorded them still loads."""
    from sltc.discover import load_run
    from sltc.format.errors import TrainingError

    run = _resumable(synthetic_run, user)
    ckpt = run / "checkpoint.safetensors"
    original = ckpt.read_bytes()
    _edit_run_record(ckpt, lambda r: r["config"].update(seed=4))
    check_cases({"freeze": Case(["freeze", run, "-o", user / "t.slt"], [run], "seed 4"),
                 "resume": Case(["discover", run / "config.yaml", "--out", run, "--resume",
                                 "--set", "train.epochs=4"], [run], "seed 4")})
    edits = {"its train.lr is 0.1": lambda r: r["config"]["train"].update(lr=0.1),
             "its layer 'fc2'": lambda r: r["layers"][1].update(shape=[32, 65])}
    for message, edit in edits.items():
        ckpt.write_bytes(original)
        _edit_run_record(ckpt, edit)
        with pytest.raises(TrainingError, match=message):
            load_run(run, "cpu")
    ckpt.write_bytes(original)
    _edit_run_record(ckpt, lambda r: r.clear())  # as sltc wrote checkpoints before
    assert load_run(run, "cpu").config.seed == 3


@pytest.mark.parametrize("metrics", ["partial-line", "missing"])
def test_resume_after_a_kill_mid_append(metrics, synthetic_run, user):
    """What a kill leaves in metrics.jsonl is no reason to fail: the run goes on."""
    run = _resumable(synthetic_run, user)
    path = run / "metrics.jsonl"
    if metrics == "missing":
        path.unlink()
    else:
        path.write_text(path.read_text() + '{"epoch": 4, "loss": 0.')
    result = run_cli("discover", run / "config.yaml", "--out", run, "--resume", "--set",
                     "train.epochs=4", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["test_accuracy"] is not None
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[-1]["epoch"] == 4


def test_stale_temp_files_are_removed(good, user):
    """A temp file left by a killed export goes with the next export of that file."""
    stale = user / ".m.onnx.999999999.abcdef.tmp"  # a pid no process has
    stale.write_bytes(b"partial")
    result = run_cli("export", good / "model.slt", "-f", "onnx", "--no-check", "-o",
                     user / "m.onnx", "--json")
    assert result.code == 0, result.stderr
    assert not stale.exists() and (user / "m.onnx").is_file()


def test_metrics_that_do_not_plot(good, synthetic_run, user):
    """A metrics file of lists and dicts, or 96 MB of them, is one line within bounds;
    bench with more threads than CPUs is a usage error."""
    runs = {}
    for name, body in (("values", b'{"epoch": 1, "train_loss": [1], "lambda": {"a": 1}}\n'),
                       ("96 MB", b'{"epoch": 1, "train_loss": [], "sparsity": []}\n' * 2_000_000)):
        runs[name] = user / name.replace(" ", "")
        shutil.copytree(synthetic_run, runs[name])
        (runs[name] / "metrics.jsonl").write_bytes(body)
    cases = {name: Case(["plot", run, "-o", user / f"{run.name}.png"], [run], "epoch's record")
             for name, run in runs.items()}
    cases["bench --threads 100000"] = Case(["bench", good / "model.onnx", "--threads",
                                            "100000"], [good], "--threads")
    check_cases(cases)


_metric = st.none() | st.integers(-10**40, 10**40) | st.floats(allow_nan=True) | \
    st.lists(st.integers(), max_size=2) | st.text(max_size=4)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.dictionaries(st.sampled_from(["epoch", "train_loss", "lambda",
                                                      "sparsity", "frozen_accuracy"]),
                                     _metric | st.integers(-2, 3), max_size=5), max_size=4))
def test_plot_fuzz(tmp_path_factory, rows):
    """Any metrics lines plot, or are one SltcError (never a matplotlib failure)."""
    from sltc.plotting import plot_curves, run_metrics

    run = tmp_path_factory.mktemp("run")
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    try:
        epochs = run_metrics(run)
    except SltcError:
        return
    plot_curves([("run", epochs)], run / "curves.png")
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metrics_keep_one_record_per_epoch(tmp_path):
    from sltc.rundir import read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 2, "train_loss": 1.0}\n{"epoch": 1, "train_loss": 2.0}\n'
                    '{"epoch": 2, "train_loss": 0.5}\n{"epoch": 0}\n{"epoch": 3, "x": 1e39}\n'
                    '{"epoch": 3, "x": ' + "1" * 5000 + '}\n{"epoch": 3, "lambda": 0.\n' +
                    json.dumps({"epoch": 4, **{f"k{i}": i for i in range(32)}}) + "\n")
    assert read_metrics(path) == [{"epoch": 1, "train_loss": 2.0},
                                  {"epoch": 2, "train_loss": 0.5}]
