"""Every network in the registry: a few steps on synthetic 32x32 RGB images, then the ticket
exported and validated through every engine (the edge-popup family is covered in depth by
tests/test_chain.py)."""

import pytest
import torch

from sltc.config import from_dict
from sltc.exporters import export
from sltc.layers import gated_layers
from sltc.models import MODELS, build_model
from sltc.runtime.engines import ENGINES
from sltc.runtime.validate import validate
from tests.helpers import discover_here, sltc
from tests.test_chain import ARCHS

HEAVY = {"resnet18", "resnet50", "wrn", "vit_tiny", "swin_tiny"}  # 5M to 36M weights
# the heavy networks end to end at their preset depth, narrower (their full widths are
# built and counted in test_networks_have_the_published_layer_counts)
NARROWER = {"resnet18": "model.width=0.25", "resnet50": "model.width=0.25",
            "wrn": "model.width=2", "vit_tiny": "model.dim=48", "swin_tiny": "model.dim=24"}
TINY = ["data.synthetic_shape=[3,32,32]", "data.synthetic_size=64", "data.val_size=16",
        "data.batch_size=8", "train.epochs=1", "train.max_steps=3"]


# conv2 and conv6 are conv4's code (convnets._conv_net) with fewer or more channel pairs
SAME_CODE = {"conv2": "conv4", "conv6": "conv4"}


def test_the_chain_test_covers_the_names_skipped_here():
    assert set(ARCHS) - {"mixed"} <= set(MODELS.names())
    assert set(SAME_CODE.values()) <= set(ARCHS)


@pytest.mark.parametrize("arch", [pytest.param(a, marks=pytest.mark.slow) if a in HEAVY else a
                                  for a in MODELS.names() if a not in {*ARCHS, *SAME_CODE}])
def test_registry_network_end_to_end(arch, tmp_path):
    extra = [NARROWER[arch]] if arch in NARROWER else []
    sets = [a for s in [*TINY, f"model.arch={arch}", "model.widths=null", *extra]
            for a in ("--set", s)]
    summary = discover_here("examples/synthetic.yaml", "--out", tmp_path / "run", *sets)
    ticket = tmp_path / "run/ticket.slt"
    report = export(ticket, "onnx", tmp_path / "m.onnx")
    assert report["top1_agreement"] == 1.0 and report["max_rel_diff"] <= 1e-4
    for path in (ticket, tmp_path / "m.onnx"):
        for engine in ENGINES.names():
            out = validate(path, engine)
            assert out["test_accuracy"] == summary["test_accuracy"], (path.name, engine)


@pytest.mark.parametrize("arch,layers", [("resnet20", 22), ("resnet56", 58), ("resnet18", 21),
                                         ("resnet50", 54), ("vit", 1 + 6 * 4 + 1),
                                         ("vit_tiny", 1 + 12 * 4 + 1),
                                         ("swin", 1 + 6 * 4 + 2 + 1),
                                         ("swin_tiny", 1 + 12 * 4 + 3 + 1)])
def test_networks_have_the_published_layer_counts(arch, layers):
    """Gated layers: ResNet-20 = 19 convs + 2 projection shortcuts + the classifier, and so on."""
    _, model = build_model(from_dict({"model": {"arch": arch}}), (3, 32, 32), 10, 0.5, 0.25)
    assert len(gated_layers(model)) == layers
    assert model.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_wide_resnet_depth_and_width():
    _, model = build_model(from_dict({"model": {"arch": "wrn", "depth": 16, "width": 4}}),
                           (3, 32, 32), 10, 0.5, 0.25)
    convs = [m for m in gated_layers(model) if len(m.weight_shape) == 4]
    assert len(convs) == 1 + 2 * 6 + 3 and max(m.weight_shape[0] for m in convs) == 64 * 4
    proc = sltc("discover", "examples/synthetic.yaml", "--set", "model.arch=wrn",
                "--set", "model.widths=null", "--set", "model.depth=15")
    assert proc.returncode == 2 and "6n + 4" in proc.stderr
