"""Config validation: typed objects, dotted-path errors, --set overrides, CLI exit codes."""

import pytest

from sltc.config import RunConfig, from_dict
from sltc.config_yaml import apply_override, load_config
from sltc.format.errors import ConfigError
from tests.helpers import sltc_here


def test_defaults_and_keys_scripts_rely_on():
    cfg = from_dict({})
    assert isinstance(cfg, RunConfig)
    assert (cfg.seed, cfg.model.arch, cfg.model.widths) == (0, "mlp", [300, 100])
    assert cfg.gates.method == "crbg" and cfg.gates.granularity == "weight"
    assert cfg.gates.target_sparsity == 0.9 and cfg.train.epochs >= 1


@pytest.mark.parametrize("data,fragment", [
    ({"model": {"widht": [1]}}, "unknown key 'model.widht'"),
    ({"train": {"epochs": "many"}}, "train.epochs"),
    ({"gates": {"lambda": -1}}, "gates.lambda"),
    ({"gates": {"lambda": float("inf")}}, "gates.lambda"),
    ({"model": {"arch": "resnet9000"}}, "model.arch"),
    ({"gates": {"method": "magic"}}, "gates.method"),
    ({"gates": {"target_sparsity": 1.5}}, "gates.target_sparsity"),
    ({"gates": {"method": "edge_popup", "scope": "global"}}, "must be layer or null"),
    ({"gates": {"budget": "projection", "target_sparsity": None}}, "needs a gates.target"),
    ({"gates": {"layer_sparsity": {"fc1": 0.5}}}, "applies to edge_popup only"),
    ({"gates": {"method": "edge_popup", "layer_sparsity": {"fc1": 1.0}}}, "layer_sparsity"),
])
def test_rejects_with_dotted_path(data, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        from_dict(data)


def test_override_parses_yaml_values(tmp_path):
    cfg = load_config(None, ["model.widths=[2048, 2048]", "gates.lambda=0.5", "seed=9"])
    assert cfg.model.widths == [2048, 2048] and cfg.gates.lambda_ == 0.5 and cfg.seed == 9
    data = {}
    apply_override(data, "a.b.c=true")
    assert data == {"a": {"b": {"c": True}}}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_override({}, "no-equals-sign")


@pytest.mark.parametrize("gates,start", [
    ({}, (0.5, 1.0)),  # 90%: at the threshold
    ({"target_sparsity": 0.5}, (0.75, 0.3)),  # below 85%: CRBG starts dense
    ({"target_sparsity": 0.84}, (0.75, 0.3)),
    ({"target_sparsity": 0.85}, (0.5, 1.0)),
    ({"target_sparsity": None}, (0.5, 1.0)),
    ({"target_sparsity": 0.5, "method": "hard_concrete"}, (0.5, 1.0)),
    ({"target_sparsity": 0.5, "mu_init": 0.6}, (0.6, 0.3)),  # a value given wins
    ({"target_sparsity": 0.5, "lambda": 2, "mu_init": None}, (0.75, 2.0)),
])
def test_start_depends_on_method_and_target(gates, start):
    cfg = from_dict({"gates": gates})
    assert (cfg.gates.mu_init, cfg.gates.lambda_) == start
    assert from_dict(cfg.to_dict()) == cfg  # the recorded config holds the values used


def test_resolved_config_round_trips(tmp_path):
    from sltc.rundir import write_config

    cfg = load_config("examples/lenet300-fashion.yaml", ["train.epochs=3"])
    write_config(tmp_path / "c.yaml", cfg)
    assert load_config(tmp_path / "c.yaml") == cfg


@pytest.mark.parametrize("override,fragment", [
    ("model.unknown=1", "unknown key 'model.unknown'"),
    ("train.epochs=abc", "train.epochs"),
    ("gates.lambda=-0.1", "gates.lambda"),
    ("model.arch=vgg", "model.arch"),
])
def test_cli_config_errors_are_one_line_exit_2(tmp_path, override, fragment):
    proc = sltc_here("discover", "examples/synthetic.yaml", "--out", tmp_path / "r", "--set",
                     override)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_cli_missing_dataset_is_one_line_exit_2(tmp_path):
    empty = tmp_path / "nodata"
    empty.mkdir()
    proc = sltc_here("discover", "examples/lenet300-fashion.yaml", "--out", tmp_path / "r",
                     "--set", "data.name=mnist", "--set", f"data.root={empty}")
    assert proc.returncode == 2
    line, = proc.stderr.strip().splitlines()
    assert "not found" in line and str(empty) in line and "IDX" in line


@pytest.mark.parametrize("shape,halfway", [("linear", 0.45), ("cubic", 0.9 * (1 - 0.5 ** 3))])
def test_ramped_target_rises_from_zero_to_the_target(shape, halfway):
    g = from_dict({"gates": {"ramp": 0.5, "ramp_shape": shape}}).gates
    assert [g.ramped(p) for p in (0.0, 0.25, 0.5, 1.0)] == pytest.approx([0, halfway, 0.9, 0.9])
    assert from_dict({}).gates.ramped(0.1) == 0.9  # no ramp: the target from the start


def test_the_recorded_data_section_is_the_configs():
    """``DataSection`` (the format's, no pydantic) and ``DataConfig`` (the user's) are one
    section: the same keys in one order, the same defaults, and the same JSON values
    accepted; a record is JSON sltc wrote, so the section coerces no type (no "5" for 5)."""
    from sltc.config import DataConfig, ValidationError
    from sltc.format.errors import DataError
    from sltc.format.limits import MAX_IMAGE_SIDE, MAX_IMAGES, MAX_SIDE
    from sltc.format.records import DataSection

    assert DataSection().to_json() == DataConfig().model_dump()
    assert list(DataSection().to_json()) == list(DataConfig.model_fields)
    big = MAX_IMAGES
    candidates = {
        "name": ["mnist", "synthetic", "loaders", "imagenet", None, 3],
        "root": [None, "/data", 3, ["a"]],
        "val_size": [0, -1, big, big + 1, None, 2.5],
        "train_size": [None, 0, 1, big, big + 1, "x"],
        "batch_size": [1, 0, 1 << 16, (1 << 16) + 1, None],
        "synthetic_size": [16, 15, big, big + 1],
        "synthetic_shape": [[3, 32, 32], [1, 28], [0, 28, 28], [1, MAX_SIDE, 1],
                            [1, MAX_SIDE + 1, 1], "1x28x28", None],
        "augment": [[], ["crop", "flip"], ["rotate"], "crop", None],
        "image_size": [None, [32, 32], [MAX_IMAGE_SIDE + 1, 4], [32], [0, 4]],
        "workers": [0, 16, 17, -1, None],
        "nope": [1],
    }
    for key, values in candidates.items():
        for value in values:
            record = {"name": "synthetic", key: value}
            try:
                DataConfig.model_validate(record)
                config_ok = True
            except ValidationError:
                config_ok = False
            try:
                DataSection.from_json(record)
                section_ok = True
            except DataError:
                section_ok = False
            assert config_ok == section_ok, (key, value, config_ok)
    for coerced in ("5", 5.0, True):
        with pytest.raises(DataError, match="val_size"):
            DataSection.from_json({"val_size": coerced})
    pixels = {"name": "synthetic", "synthetic_size": big, "synthetic_shape": [3, 32, 32]}
    with pytest.raises(DataError, match="pixels"):
        DataSection.from_json(pixels)
    DataSection.from_json({**pixels, "name": "mnist"})


def test_edge_popup_needs_a_target():
    """Edge-popup's top-k holds a density: without a target there is none to hold (no hidden
    default)."""
    with pytest.raises(ConfigError, match="edge_popup keeps a top-k: it needs"):
        from_dict({"gates": {"method": "edge_popup", "target_sparsity": None}})
    assert from_dict({"gates": {"method": "crbg", "target_sparsity": None}}).gates.lambda_ >= 0
