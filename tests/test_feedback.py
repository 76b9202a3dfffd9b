"""What a run tells its user: progress in a redirected log, warnings when the ticket is
worse than training looked, the config reference, curves, continuing a finished run."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from sltc.config import SECTIONS, RunConfig, check_applicable, from_dict
from sltc.config_reference import example_yaml, reference
from sltc.discover import freeze_warnings
from sltc.format.errors import ConfigError
from sltc.progress import Progress
from tests.helpers import discover_here, last_json, sltc, sltc_here

EVERY_LINE = {"SLTC_PROGRESS_SECONDS": "0"}



def test_a_redirected_log_shows_steps_and_the_final_evaluation(tmp_path):
    proc = sltc("discover", "examples/synthetic.yaml", "--out", tmp_path / "r", "--set",
                "train.epochs=1", check=True, env=EVERY_LINE)
    lines = proc.stderr.splitlines()
    steps = [line for line in lines if line.startswith("epoch 1/1: step ")]
    assert len(steps) >= 28  # one per step of the epoch, not only at its end
    assert "step 1/28 (4%)" in steps[0] and "ETA" in steps[0] and "img/s" in steps[0]
    for stat in ("loss", "sparsity", "lambda"):
        assert f" {stat} " in steps[0]
    for task in ("test set, relaxed gates", "test set, frozen ticket"):
        assert any(line.startswith(f"{task}: batch ") for line in lines)
    assert any(line.startswith("epoch 1: validation accuracy") for line in lines)
    ticket = tmp_path / "r/ticket.slt"
    assert "test set: batch" in sltc("eval", ticket, check=True, env=EVERY_LINE).stderr
    out = sltc("validate", ticket, "--engine", "csr", check=True, env=EVERY_LINE)
    assert "test set through csr: batch" in out.stderr
    quiet = sltc("eval", ticket, "--json", check=True, env=EVERY_LINE)
    assert quiet.stderr == "" and last_json(quiet)["test_accuracy"] >= 0


def test_plain_lines_come_at_the_interval(tmp_path):
    log = tmp_path / "log"
    with open(log, "w") as stream:
        progress = Progress(True, stream)
        progress.interval = 3600.0
        with progress.task("slow", 5, "step", keep=True) as task:
            for _ in range(5):
                task.advance(loss=1.0)
        with progress.task("quick", 5) as task:  # under two seconds and not kept: no line
            task.advance(5)
    assert log.read_text().splitlines() == [
        f"slow: step 5/5 (100%) loss 1 | {log.read_text().split('| ')[1].strip()}"]


def test_a_run_that_misses_its_target_says_so(tmp_path):
    proc = sltc("discover", "examples/synthetic.yaml", "--out", tmp_path / "n", "--json",
                "--set", "gates.granularity=neuron", "--set", "gates.target_sparsity=0.9",
                "--set", "train.epochs=1", check=True)
    summary = last_json(proc)
    for key in ("relaxed_val_accuracy", "val_accuracy", "threshold_sparsity", "sparsity"):
        assert isinstance(summary[key], float)
    assert summary["warnings"] and all(f"warning: {w}" in proc.stderr for w in summary["warnings"])
    assert any("misses the target" in w and "neuron" in w for w in summary["warnings"])


def _summary(**changes):
    return {"target_sparsity": 0.9, "sparsity": 0.9, "threshold_sparsity": 0.9,
            "granularity": "weight", "relaxed_val_accuracy": 0.85, "val_accuracy": 0.85,
            **changes}


def test_a_run_that_ended_too_dense_is_told_the_threshold_start():
    dense = from_dict({"gates": {"target_sparsity": 0.5}}).gates  # the dense start
    told = freeze_warnings(_summary(threshold_sparsity=0.85), dense)["freeze_moved"]
    assert "denser" in told and "--set gates.mu_init=0.5 --set gates.lambda=1.0" in told
    at_threshold = from_dict({"gates": {"target_sparsity": 0.9}}).gates
    told = freeze_warnings(_summary(threshold_sparsity=0.85), at_threshold)["freeze_moved"]
    assert "mu_init" not in told and "a larger gates.lambda" in told
    told = freeze_warnings(_summary(threshold_sparsity=0.95), dense)["freeze_moved"]
    assert "sparser" in told and "smaller gates.lambda" in told


def test_freeze_warnings_fire_on_their_own_gap_only():
    assert freeze_warnings(_summary(threshold_sparsity=0.885, val_accuracy=0.835)) == {}
    assert set(freeze_warnings(_summary(threshold_sparsity=0.85))) == {"freeze_moved"}
    assert set(freeze_warnings(_summary(val_accuracy=0.80))) == {"freeze_accuracy"}
    missed = freeze_warnings(_summary(sparsity=0.93, threshold_sparsity=0.93,
                                      granularity="neuron"))
    assert set(missed) == {"freeze_missed"} and "neuron" in missed["freeze_missed"]
    assert freeze_warnings(_summary(relaxed_val_accuracy=None, val_accuracy=None)) == {}


def _held(at: float, first: float = 0.3) -> dict:
    return _summary(first_sparsity=first, deadline_sparsity=at, deadline_step=70,
                    total_steps=100, steps_per_epoch=10)


def test_a_held_run_says_what_budget_would_have_let_the_gates_get_there():
    """At their pace (the log-density error fell from log 7 to log 4 in 70 steps) the gates
    need about 244 steps to reach 90%, more than the run's 100: the hold did what they could
    not, and 244 / 0.7 = 349 steps (35 epochs of 10) would have brought them there by the
    deadline. Gates that would have got there in the steps left warn of nothing."""
    told = freeze_warnings(_held(0.6))["held"]
    assert "sparsity 0.600 by themselves when 70% of the run" in told
    assert "about 349 steps (35 epochs here)" in told
    assert freeze_warnings(_held(0.87, first=0.5)) == {}  # 84 steps: within the run's 100
    assert freeze_warnings(_held(0.89)) == {}  # within 2 points
    assert "went past the target" in freeze_warnings(_held(0.93))["held"]
    assert "did not come down" in freeze_warnings(_held(0.6, first=0.6))["held"]


def _declared_keys() -> set[str]:
    """Every key a config file can hold: the sections' keys and the top-level scalars."""
    defaults = RunConfig().to_dict()
    return {f"{s}.{k}" if s in SECTIONS else s
            for s, v in defaults.items() for k in (v if s in SECTIONS else [None])}


def test_config_lists_every_key_with_type_default_and_reason():
    rows = last_json(sltc("config", "--json", check=True))
    assert {r["key"] for r in rows} == _declared_keys()
    assert rows == reference()
    assert all(r["reason"] and r["type"] for r in rows)
    assert {r["key"]: r["default"] for r in rows}["train.epochs"] == RunConfig().train.epochs


def test_the_example_yaml_is_complete_commented_and_loads_to_the_defaults():
    text = sltc("config", "--example", check=True).stdout
    assert text == example_yaml()
    assert from_dict(yaml.safe_load(text)) == RunConfig()
    keys = [line.split(":")[0].strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#") and not line.endswith(":")]
    assert len(keys) == len(_declared_keys())
    assert text.count("# ") >= len(keys)


@pytest.mark.parametrize("data,message", [
    ({"train": {"epoch": 3}}, "unknown key 'train.epoch'; did you mean 'train.epochs'?"),
    ({"gates": {"targt_sparsity": 0.5}}, "did you mean 'gates.target_sparsity'?"),
    ({"sed": 1}, "did you mean 'seed'?"),
    ({"model": {"arch": "conv4", "widths": [10]}}, "model.widths does not apply to conv4"),
    ({"model": {"arch": "resnet20", "patch": 4}}, "model.patch does not apply to resnet20"),
    ({"model": {"arch": "vit", "window": 4}}, "model.window does not apply to vit"),
])
def test_config_mistakes_name_the_key_and_the_fix(data, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("?", r"\?")):
        check_applicable(from_dict(data))


def test_keys_of_the_chosen_architecture_are_accepted():
    for model in ({"arch": "wrn", "depth": 16, "width": 4}, {"arch": "swin", "window": 4},
                  {"arch": "mlp", "widths": [10], "batchnorm": True},
                  {"arch": "python:tests.models:mixed", "kwargs": {"dim": 8}}):
        check_applicable(from_dict({"model": model}))


def test_recorded_configs_are_read_as_older_versions_wrote_them(conv_ticket):
    """A ticket made from an MLP config with model.arch overridden records widths it never
    read: it still loads (the check applies where a user's config enters)."""
    from sltc.format.ticket import Ticket
    from sltc.rebuild import model_from_ticket

    ticket = Ticket.load(conv_ticket)
    assert ticket.meta["config"]["model"]["widths"] != RunConfig().model.widths
    model_from_ticket(ticket)


def test_an_inapplicable_key_on_the_command_line_is_one_line(tmp_path):
    proc = sltc("discover", "examples/conv4-fashion.yaml", "--out", tmp_path / "x",
                "--set", "model.widths=[10]")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "model.widths does not apply to conv4" in proc.stderr


def test_train_size_takes_a_subset_and_keeps_the_validation_split():
    from sltc.data import load_dataset

    cfg = {"name": "synthetic", "synthetic_size": 512, "val_size": 64}
    full = load_dataset(from_dict({"data": cfg}).data, 0)
    part = load_dataset(from_dict({"data": {**cfg, "train_size": 100}}).data, 0)
    assert len(part.train) == 100 and len(full.train) == 448
    assert (part.val.images == full.val.images).all()
    rows = {r.tobytes() for r in full.train.images}
    assert all(r.tobytes() in rows for r in part.train.images)


def test_eval_every_validates_on_schedule_and_plot_draws_the_curves(tmp_path):
    out = tmp_path / "e"
    discover_here("examples/synthetic.yaml", "--out", out, "--set", "train.eval_every=2",
                  "--set", "data.train_size=512")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert ["frozen_accuracy" in r for r in rows] == [False, True, True]  # 2 and the last
    assert all(r["seconds"] > 0 and "train_loss" in r for r in rows)
    plotted = last_json(sltc_here("plot", out, "--json", check=True))
    assert plotted == {"plot": str(out / "curves.png"), "epochs": 3}
    from matplotlib.image import imread

    height, width, _ = imread(out / "curves.png").shape
    assert (width, height) == (1210, 1210)
    popup = tmp_path / "popup"
    discover_here("examples/synthetic.yaml", "--out", popup, "--set", "gates.method=edge_popup",
                  "--set", "data.train_size=512")
    both = last_json(sltc_here("plot", out, popup, "-o", tmp_path / "both.png", "--json",
                               check=True))
    assert both == {"plot": str(tmp_path / "both.png"), "epochs": [3, 3]}
    assert imread(tmp_path / "both.png").shape[:2] == (1210, 1210)
    unnamed = sltc_here("plot", out, popup)
    assert unnamed.returncode == 2 and "-o PNG" in unnamed.stderr
    missing = sltc_here("plot", tmp_path)
    assert missing.returncode == 2 and "no metrics.jsonl" in missing.stderr
    assert "Traceback" not in missing.stderr
    for bad, why in ((tmp_path, "is a directory"), (out / "curves.png" / "x.png", "cannot write")):
        proc = sltc_here("plot", out, "-o", bad)
        assert proc.returncode == 2 and why in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_a_finished_run_continues_with_more_epochs(synthetic_run, tmp_path):
    run = tmp_path / "more"
    shutil.copytree(synthetic_run, run)
    before = (run / "ticket.slt").read_bytes()
    changed = sltc_here("discover", "examples/synthetic.yaml", "--out", run, "--resume",
                        "--set", "train.epochs=5", "--set", "train.lr=0.1")
    assert changed.returncode == 2 and "train.lr differs" in changed.stderr
    fewer = sltc_here("discover", "examples/synthetic.yaml", "--out", run, "--resume",
                      "--set", "train.epochs=2")
    assert fewer.returncode == 2 and "below the run's 3" in fewer.stderr
    summary = discover_here("examples/synthetic.yaml", "--out", run, "--resume",
                            "--set", "train.epochs=5")
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    assert summary["epochs"] == 5 and (run / "ticket.slt").read_bytes() != before
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 5


def test_freeze_and_discover_share_one_default_scope(synthetic_run, tmp_path):
    a, b, c = (tmp_path / f"{n}.slt" for n in "abc")
    sltc("freeze", synthetic_run, "-o", a, "--target-sparsity", "0.5", "--json", check=True)
    for path, scope in ((b, "global"), (c, "layer")):
        sltc_here("freeze", synthetic_run, "-o", path, "--target-sparsity", "0.5",
                  "--scope", scope, "--json", check=True)
    assert Path(a).read_bytes() == Path(b).read_bytes() != Path(c).read_bytes()


def test_null_puts_a_key_that_cannot_be_null_back_to_its_default():
    from sltc.config_yaml import load_config

    cfg = load_config("examples/synthetic.yaml", ["model.arch=conv2", "model.widths=null"])
    assert cfg.model.widths == RunConfig().model.widths
    assert load_config(None, ["gates.target_sparsity=null"]).gates.target_sparsity is None


def test_curves_of_one_run_differ_in_colour_and_several_runs_by_run():
    """One run: the threshold-rule ticket and the relaxed gates in two colours. Several runs:
    one colour per run, both curves of a run in it. Log axes print plain numbers."""
    from sltc.figures import pyplot
    from sltc.plotting import PANELS, _draw_curves

    rows = [{"epoch": e, "frozen_accuracy": 0.8 + e / 100, "relaxed_accuracy": 0.81 + e / 100,
             "lambda": 1.5 + e / 10} for e in range(1, 4)]
    titles = [title for title, _, _ in PANELS]
    accuracy, lam = titles.index("validation accuracy"), titles.index("lambda (end of epoch)")
    plt = pyplot()
    for runs in ([("a", rows)], [("a", rows), ("b", rows)]):
        fig, axes = plt.subplots(4, 2)
        _draw_curves(plt, fig, axes, runs, None)
        colours = [line.get_color() for line in axes.flat[accuracy].get_lines()]
        if len(runs) == 1:
            assert len(colours) == 2 and colours[0] != colours[1]
        else:
            assert colours[0] == colours[1] != colours[2] == colours[3]
        fig.canvas.draw()
        labels = [t.get_text() for t in axes.flat[lam].get_yticklabels(minor=True)
                  if t.get_text()]
        assert labels and all("times" not in t and "^" not in t for t in labels), labels
        plt.close(fig)
