"""Gated layers against plain torch layers holding the same weights."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sltc.config import from_dict
from sltc.freeze import frozen_masks, sparsity, threshold_masks, topk_masks
from sltc.layers import GatedConv2d, GatedLinear, gate, gated_layers
from sltc.models import MODELS, create_model


def _cfg(**gates):
    return from_dict({"seed": 4, "gates": {"mu_init": 2.0, **gates}})


def test_open_gates_equal_dense_linear():
    cfg = _cfg()
    layer = GatedLinear.from_dense(nn.Linear(20, 7, bias=False), name="fc", seed=4,
                                   init="uniform", gain=1.0, gates_cfg=cfg.gates, gated=True)
    layer.eval()
    x = torch.randn(3, 20)
    dense = layer.to_dense(torch.ones(7, 20))
    assert torch.equal(dense.weight.data, layer.weight)
    assert torch.equal(layer(x), dense(x))


def test_conv_mask_round_trip():
    cfg = _cfg(granularity="neuron")
    layer = GatedConv2d.from_dense(nn.Conv2d(3, 6, 3, padding=1, bias=False), name="conv",
                                   seed=4, init="signed_constant", gain=1.0,
                                   gates_cfg=cfg.gates, gated=True)
    mask = layer.weight_mask(torch.tensor([1, 0, 1, 1, 0, 1], dtype=torch.bool))
    x = torch.randn(2, 3, 8, 8)
    layer.fixed_mask = mask.float()
    expected = F.conv2d(x, layer.weight * mask, padding=1)
    assert torch.equal(layer(x), expected)
    assert torch.equal(layer.to_dense(mask)(x), expected)
    assert torch.all(expected[:, [1, 4]] == 0)


def test_gate_swaps_every_layer_and_names_are_stable():
    for arch in MODELS.names():
        cfg = from_dict({"model": {"arch": arch}, "gates": {"gate_first": False}})
        model = gate(create_model(cfg.model, (1, 28, 28), 10, 0.5, 0.25), cfg)
        layers = gated_layers(model)
        assert not any(type(m) in (nn.Linear, nn.Conv2d) for m in model.modules())
        assert layers[0].gate is None and all(m.gate is not None for m in layers[1:])
        assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_frozen_masks_and_exact_topk():
    cfg = from_dict({"seed": 1, "model": {"widths": [40]}})
    model = gate(create_model(cfg.model, (1, 8, 8), 10, 0.5, 0.25), cfg)
    for m in gated_layers(model):
        m.gate.mu.data = torch.rand_like(m.gate.mu)
    for scope in ("layer", "global"):
        masks = topk_masks(model, 0.8, scope)
        assert abs(sparsity(model, masks) - 0.8) < 1e-3
    layer_masks = topk_masks(model, 0.8, "layer")
    for m in gated_layers(model):
        assert int(layer_masks[m.name].sum()) == round(0.2 * m.numel)
    masks = threshold_masks(model, 0.5)
    x = torch.rand(4, 1, 8, 8)
    with frozen_masks(model, masks):
        y = model(x)
    assert all(m.fixed_mask is None for m in gated_layers(model))
    manual = x.flatten(1)
    for i, m in enumerate(gated_layers(model)):
        manual = F.linear((manual - 0.5) / 0.25 if i == 0 else manual, m.weight * masks[m.name])
        manual = torch.relu(manual) if i == 0 else manual
    assert torch.allclose(y, manual, atol=1e-6)


def test_freeze_never_ships_a_denser_ticket_than_asked():
    from sltc.freeze import freeze

    cfg = from_dict({"seed": 2, "model": {"widths": [50]}})
    model = gate(create_model(cfg.model, (1, 8, 8), 10, 0.5, 0.25), cfg)
    for m in gated_layers(model):
        m.gate.mu.data = torch.rand_like(m.gate.mu)  # threshold 0.5: about half kept
    natural = sparsity(model, threshold_masks(model, 0.5))
    denser = freeze(model, 0.5, natural + 0.005, "global", 0.01)
    assert abs(sparsity(model, denser) - (natural + 0.005)) < 1e-3  # pruned to the target
    within = freeze(model, 0.5, natural - 0.005, "global", 0.01)
    assert sparsity(model, within) == natural  # threshold mask kept: inside [t, t + tol]


def test_neuron_gates_never_remove_a_class():
    cfg = from_dict({"gates": {"granularity": "neuron"}})
    layers = gated_layers(gate(create_model(cfg.model, (1, 28, 28), 10, 0.5, 0.25), cfg))
    assert all(m.gate is not None for m in layers[:-1]) and layers[-1].gate is None


def test_any_conv_and_linear_with_bias_equal_plain_torch():
    cfg = _cfg()
    conv = nn.Conv2d(8, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    gated = GatedConv2d.from_dense(conv, name="c", seed=4, init="uniform", gain=1.0,
                                   gates_cfg=cfg.gates, gated=True).eval()
    x = torch.randn(2, 8, 9, 7)
    plain = gated.to_dense(torch.ones(gated.weight_shape, dtype=torch.bool))
    assert torch.equal(plain.weight.data, gated.weight) and torch.equal(plain.bias.data, gated.bias)
    assert torch.allclose(gated(x), F.conv2d(x, gated.weight, gated.bias, (2, 1), (1, 2), (1, 2), 2))
    assert torch.allclose(plain(x), gated(x), atol=1e-6)
    linear = GatedLinear.from_dense(nn.Linear(5, 3), name="l", seed=4, init="uniform", gain=1.0,
                                    gates_cfg=cfg.gates, gated=False)
    y = torch.randn(4, 5)
    assert torch.equal(linear(y), F.linear(y, linear.weight, torch.zeros(3)))


def _all_tensors(model):
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def test_every_tensor_follows_the_rule_not_torch_rng():
    from sltc.format.seeding import NORMAL_STD, generate_normal, generate_weight
    from tests.models import mixed

    cfg = from_dict({"seed": 9, "model": {"arch": "python:tests.models:mixed"}})
    built = []
    for torch_seed in (1, 2):
        torch.manual_seed(torch_seed)
        built.append(gate(mixed((1, 12, 12), 4), cfg))
    a, b = (_all_tensors(m) for m in built)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    model = built[0]
    for m in gated_layers(model):
        want = generate_weight(9, m.name, m.weight_shape, m.init, m.fan_in, m.gain)
        assert torch.equal(m.weight, torch.from_numpy(want))
    assert torch.all(a["stem.bias"] == 0) and torch.all(a["attn.qkv.bias"] == 0)
    assert torch.all(a["norm1.weight"] == 1) and torch.all(a["norm1.bias"] == 0)
    assert torch.all(a["bn.running_mean"] == 0) and torch.all(a["bn.running_var"] == 1)
    own = dict(mixed((1, 12, 12), 4).named_parameters())  # the network's own values, kept
    for name in ("cls_token", "pos_embed", "gamma"):
        assert torch.equal(a[name], own[name].detach()), name
    assert torch.all(a["gamma"] == 0.5)

    class Drawn(nn.Module):  # a module that asks for its parameter to be drawn by name
        drawn_by_name = ("table",)

        def __init__(self):
            super().__init__()
            self.table, self.scale = nn.Parameter(torch.ones(3, 5)), nn.Parameter(torch.ones(5))
            self.fc = nn.Linear(5, 2)

        def forward(self, x):
            return self.fc(x * self.scale + self.table.sum(0))

    drawn = dict(gate(Drawn(), cfg).named_parameters())
    assert torch.equal(drawn["table"], torch.from_numpy(generate_normal(9, "table", (3, 5),
                                                                        NORMAL_STD)))
    assert torch.all(drawn["scale"] == 1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(".gate.mu") for n in trainable)


def test_multihead_attention_is_refused_with_a_hint():
    from sltc.format.errors import ConfigError

    model = nn.Sequential(nn.Linear(4, 4), nn.MultiheadAttention(4, 2))
    with pytest.raises(ConfigError, match="write the attention with nn.Linear"):
        gate(model, _cfg())


def test_recalibration_gives_the_statistics_of_the_frozen_network():
    from sltc.freeze import as_ticket

    cfg = from_dict({"seed": 3, "model": {"arch": "conv2", "batchnorm": True}})
    model = gate(create_model(cfg.model, (1, 8, 8), 10, 0.5, 0.25), cfg)
    for m in gated_layers(model):
        m.gate.mu.data = torch.rand_like(m.gate.mu)
    masks = threshold_masks(model, 0.5)
    images = [(torch.rand(16, 1, 8, 8), torch.zeros(16, dtype=torch.long)) for _ in range(3)]
    bn = model.bn_conv1
    before = {n: b.clone() for n, b in bn.named_buffers()}  # the training statistics
    seen = []
    hook = model.conv1.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    with as_ticket(model, masks, images, 40):  # 16 + 16 + the first 8 of the third batch
        hook.remove()
        per_batch = seen  # conv1's outputs: what bn_conv1 normalised, batch by batch
        assert [len(b) for b in per_batch] == [16, 16, 8]
        # momentum None: the cumulative average of the batches' statistics
        mean = sum(b.mean((0, 2, 3)) for b in per_batch) / 3
        var = sum(b.var((0, 2, 3), unbiased=True) for b in per_batch) / 3
        assert torch.allclose(bn.running_mean, mean, atol=1e-5)
        assert torch.allclose(bn.running_var, var, atol=1e-5)
        assert all(m.fixed_mask is not None for m in gated_layers(model))
    assert all(torch.equal(b, before[n]) for n, b in bn.named_buffers()), "they are back"
    assert not torch.equal(bn.running_mean, mean)
    assert all(m.fixed_mask is None for m in gated_layers(model))


def test_a_frozen_mask_moves_with_its_module():
    cfg = from_dict({"seed": 2, "model": {"widths": [12]}})
    model = gate(create_model(cfg.model, (1, 4, 4), 10, 0.5, 0.25), cfg)
    masks = threshold_masks(model, 0.5)
    with frozen_masks(model, masks):
        model.double()  # the path .cuda() takes: Module._apply
        assert all(m.fixed_mask.dtype == torch.float64 for m in gated_layers(model))
        assert model(torch.rand(2, 1, 4, 4, dtype=torch.float64)).dtype == torch.float64


def test_recalibration_skips_a_last_batch_of_one_and_keeps_dropout_off():
    from collections import OrderedDict

    from sltc.freeze import recalibrate

    model = gate(nn.Sequential(OrderedDict(
        flatten=nn.Flatten(), drop=nn.Dropout(0.9), fc1=nn.Linear(16, 6, bias=False),
        bn=nn.BatchNorm1d(6, affine=False), fc2=nn.Linear(6, 10, bias=False))), _cfg())
    batches = [(torch.rand(4, 1, 4, 4), None), (torch.rand(3, 1, 4, 4), None)]
    with frozen_masks(model, threshold_masks(model, 0.5)):
        recalibrate(model, batches, 5)  # 4 images, then 1: a batch of one is left out
        first = model.fc1(batches[0][0].flatten(1))  # what bn saw, with dropout off
    assert torch.allclose(model.bn.running_mean, first.mean(0), atol=1e-6)
    assert not model.training and model.bn.momentum is not None


def test_the_norm_tuples_are_torchs_norm_classes():
    """sltc names torch's norm layers by their public classes; they are every class under
    torch's private bases (the running-statistics norms, the batch norms)."""
    from torch import nn

    from sltc.layers import BATCH_NORMS, RUNNING_NORMS

    def subclasses(base) -> set:
        found = set()
        for cls in base.__subclasses__():
            found |= {cls} | subclasses(cls)
        return {c for c in found if c.__module__.startswith("torch.nn.modules") and
                not c.__name__.startswith("_")}

    assert set(BATCH_NORMS) == subclasses(nn.modules.batchnorm._BatchNorm)
    assert set(RUNNING_NORMS) == subclasses(nn.modules.batchnorm._NormBase)
