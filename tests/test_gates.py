"""Gate maths against closed forms, and every registered gate family through one contract."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from sltc.config import from_dict
from sltc.gates import (
    GATES,
    HC_BETA,
    HC_GAMMA,
    HC_ZETA,
    crbg_expected_open,
    crbg_inside,
    crbg_sample,
    hard_concrete_deterministic,
    hard_concrete_expected_open,
    hard_concrete_inside,
    hard_concrete_sample,
    straight_through_topk,
    topk_mask,
)


def test_crbg_expected_open_is_normal_cdf():
    mu = torch.linspace(-2, 2, 41, dtype=torch.float64)
    assert np.allclose(crbg_expected_open(mu, 0.5).numpy(), norm.cdf(mu.numpy() / 0.5))


@pytest.mark.parametrize("reduce", ["sum", "weighted"])
def test_crbg_expected_open_gradient_is_the_normal_density(reduce):
    mu = torch.linspace(-2, 2, 41, dtype=torch.float64).reshape(41, 1).repeat(1, 3)
    mu.requires_grad_()
    weights = torch.rand(41, 3, dtype=torch.float64)
    p = crbg_expected_open(mu, 0.4)
    (p.sum() * 3.0 if reduce == "sum" else (p * weights).sum()).backward()
    outer = 3.0 if reduce == "sum" else weights.numpy()
    expected = outer * norm.pdf(mu.detach().numpy() / 0.4) / 0.4
    assert np.allclose(mu.grad.numpy(), expected, rtol=1e-12, atol=1e-15)
    assert torch.autograd.gradcheck(lambda m: crbg_expected_open(m, 0.4), (mu[:5].detach()
                                                                           .requires_grad_(),))


def test_crbg_sample_is_clamped_and_matches_its_open_probability():
    torch.manual_seed(0)
    mu = torch.full((200_000,), 0.2)
    z = crbg_sample(mu, 0.5)
    assert z.min() >= 0 and z.max() <= 1
    assert (z > 0).float().mean().item() == pytest.approx(norm.cdf(0.4), abs=0.005)


def test_crbg_gradient_flows_without_straight_through():
    mu = torch.tensor([0.3, 0.7], requires_grad=True)
    torch.manual_seed(1)
    crbg_sample(mu, 0.1).sum().backward()
    assert torch.all(mu.grad == 1.0)  # inside (0, 1) the clamp passes the gradient


@pytest.mark.parametrize("progress", [0.0, 0.5, 1.0])
def test_crbg_noise_falls_to_sigma_final(progress):
    cfg = from_dict({"gates": {"sigma": 0.5, "sigma_final": 0.1, "mu_init": 0.5}}).gates
    gate = GATES.get("crbg")((1000,), cfg, 0, "fc1", 5)
    gate.at(progress)
    std = 0.5 + (0.1 - 0.5) * progress
    torch.manual_seed(3)
    z = gate().detach()
    torch.manual_seed(3)
    eps = torch.randn(1000)
    assert torch.allclose(z, torch.clamp(0.5 + std * eps, 0, 1))
    l0 = crbg_expected_open(gate.mu.detach(), 0.5)  # the L0 term keeps sigma
    assert torch.equal(gate.expected_open().detach(), l0)


@pytest.mark.parametrize("progress", [0.25, 0.5, 0.75, 1.0])
def test_crbg_sharpen_stretches_the_mean_about_the_threshold_from_the_deadline(progress):
    cfg = from_dict({"gates": {"sharpen": 9.0, "deadline": 0.5, "sigma": 0.3}}).gates
    gate = GATES.get("crbg")((6,), cfg, 0, "fc1", 5)
    mu = torch.tensor([-0.2, 0.3, 0.48, 0.52, 0.7, 1.1])
    with torch.no_grad():
        gate.mu.copy_(mu)
    frozen = gate.frozen(cfg.threshold)
    gate.at(progress)
    stretch = 1.0 + 8.0 * max(progress - 0.5, 0.0) / 0.5
    mean = (mu - 0.5) * stretch + 0.5
    gate.eval()
    assert torch.allclose(gate().detach(), mean.clamp(0, 1))  # the relaxed gates
    gate.train()
    torch.manual_seed(2)
    z = gate()
    torch.manual_seed(2)
    assert torch.allclose(z.detach(), torch.clamp(mean + 0.3 * torch.randn(6), 0, 1))
    z.sum().backward()  # the gradient reaches mu through the stretch, where inside
    inside = (z.detach() > 0) & (z.detach() < 1)
    assert torch.allclose(gate.mu.grad, inside * stretch)
    assert torch.equal(gate.frozen(cfg.threshold), frozen)  # the ticket's rule is untouched
    assert torch.equal(gate.expected_open().detach(), crbg_expected_open(mu, 0.3))


@pytest.mark.parametrize("margin", [None, 0.0, 0.5])
def test_crbg_mu_is_kept_within_its_margin(margin):
    cfg = from_dict({"gates": {"mu_margin": margin}}).gates
    gate = GATES.get("crbg")((7,), cfg, 0, "fc1", 5)
    mu = torch.tensor([-3.0, -0.5, -0.2, 0.4, 1.2, 1.5, 3.0])
    with torch.no_grad():
        gate.mu.copy_(mu)
    gate.project()
    expected = mu if margin is None else mu.clamp(-margin, 1 + margin)
    assert torch.equal(gate.mu.detach(), expected)


def test_hard_concrete_formulas():
    la = torch.tensor([-3.0, 0.0, 3.0], dtype=torch.float64)
    expected = 1 / (1 + np.exp(-(la.numpy() - HC_BETA * math.log(-HC_GAMMA / HC_ZETA))))
    assert np.allclose(hard_concrete_expected_open(la).numpy(), expected)
    det = np.clip(1 / (1 + np.exp(-la.numpy())) * (HC_ZETA - HC_GAMMA) + HC_GAMMA, 0, 1)
    assert np.allclose(hard_concrete_deterministic(la).numpy(), det)


@pytest.mark.parametrize("density", [0.01, 0.1, 0.5, 0.9, 1.0])
def test_topk_keeps_exactly_the_largest(density):
    scores = torch.from_numpy(np.random.default_rng(0).permutation(1000).astype(np.float32))
    mask = topk_mask(scores, density)
    keep = math.ceil(density * 1000)
    assert int(mask.sum()) == keep
    assert torch.equal(mask.bool(), scores >= 1000 - keep)


def test_straight_through_passes_gradient_unchanged():
    s = torch.rand(50, requires_grad=True)
    g = torch.randn(50)
    (straight_through_topk(s, 0.2) * g).sum().backward()
    assert torch.equal(s.grad, g)


@pytest.mark.parametrize("method", GATES.names())
@pytest.mark.parametrize("granularity", ["weight", "neuron"])
def test_gate_contract(method, granularity):
    cfg = from_dict({"gates": {"method": method, "granularity": granularity,
                               "target_sparsity": 0.75}}).gates
    shape = (8, 5) if granularity == "weight" else (8,)
    g = GATES.get(method)(shape, cfg, 0, "fc1", 5)
    g.train()
    z = g().detach()
    assert z.shape == shape and float(z.min()) >= 0 and float(z.max()) <= 1
    assert g.expected_open().shape == shape and g.rank().shape == shape
    frozen = g.frozen(cfg.threshold)
    assert frozen.dtype == torch.bool and frozen.shape == shape
    if method == "edge_popup":
        assert int(frozen.sum()) == math.ceil(0.25 * frozen.numel())
    g.eval()
    assert torch.equal(g(), g())  # deterministic at eval


def test_crbg_live_is_the_chance_a_sample_lands_inside_the_clamp():
    torch.manual_seed(4)
    mu = torch.tensor([-2.0, -1.2, -1.0, 0.5, 2.0, 2.2])
    eps = torch.randn(400_000, 1)
    inside = ((mu + 0.5 * eps > 0) & (mu + 0.5 * eps < 1)).float().mean(0)
    assert torch.allclose(crbg_inside(mu, 0.5), inside, atol=0.002)
    cfg = from_dict({}).gates
    gate = GATES.get("crbg")((6,), cfg, 0, "fc1", 5)
    with torch.no_grad():
        gate.mu.copy_(mu)
    assert gate.live().tolist() == (inside > 0.01).tolist() == [False, False, True, True, True,
                                                                 False]


def test_hard_concrete_live_is_the_chance_a_sample_lands_inside():
    torch.manual_seed(5)
    la = torch.tensor([-6.0, -2.0, 0.0, 3.0, 7.0])
    z = hard_concrete_sample(la.expand(200_000, 5))
    inside = ((z > 0) & (z < 1)).float().mean(0)
    assert torch.allclose(hard_concrete_inside(la), inside, atol=0.003)


def test_crbg_st_passes_the_gradient_where_the_clamp_stops_it():
    cfg = from_dict({"gates": {"method": "crbg_st"}}).gates
    gate = GATES.get("crbg_st")((3,), cfg, 0, "fc1", 5)
    with torch.no_grad():
        gate.mu.copy_(torch.tensor([-3.0, 0.5, 4.0]))
    gate.train()
    gate().sum().backward()
    assert gate.mu.grad.tolist() == [1.0, 1.0, 1.0]  # crbg: [0, ~1, 0]
    assert gate.live().all()
    mu = torch.tensor([-3.0, 0.5, 4.0], requires_grad=True)
    torch.manual_seed(0)
    crbg_sample(mu, 0.1).sum().backward()
    assert mu.grad.tolist() == [0.0, 1.0, 0.0]


def test_spare_dead_stops_the_l0_push_on_closed_gates_the_noise_cannot_open():
    mu = torch.tensor([-3.0, -0.5, 0.5, 3.0])
    grads = []
    for spare in (False, True):
        gate = GATES.get("crbg")((4,), from_dict({"gates": {"spare_dead": spare}}).gates, 0,
                                 "fc1", 5)
        with torch.no_grad():
            gate.mu.copy_(mu)
        gate.expected_open().sum().backward()
        grads.append(gate.mu.grad)
    assert torch.all(grads[0] > 0)
    assert grads[1][0] == 0 and torch.equal(grads[1][1:], grads[0][1:])  # open ones keep it


@pytest.mark.parametrize("method", ["crbg", "hard_concrete"])
@pytest.mark.parametrize("density", [0.02, 0.1, 0.5])
def test_projection_puts_the_expected_density_on_the_budget(method, density):
    from sltc import budget

    layers = _group(method, ((3000, 1), (200, 9)))
    total = sum(m.numel for m in layers)

    def expected() -> float:
        return sum(float(m.gate.expected_open().detach().sum()) * m.weights_per_gate
                   for m in layers) / total

    before = [next(m.gate.parameters()).detach().clone() for m in layers]
    budget.project([layers], density)
    assert expected() == pytest.approx(density, rel=1e-4)
    shifts = [next(m.gate.parameters()).detach() - b for m, b in zip(layers, before, strict=True)]
    assert all(torch.allclose(s, shifts[0][:1].expand_as(s), atol=1e-5) for s in shifts)
    again = [next(m.gate.parameters()).detach().clone() for m in layers]
    budget.project([layers], 0.99)  # within the budget: nothing moves
    assert all(torch.equal(next(m.gate.parameters()).detach(), a) for m, a in zip(layers, again, strict=True))


def _group(method: str, sizes, seed: int = 6):
    """Gates of ``method`` over layers of ``(gates, weights per gate)``, random parameters."""
    cfg = from_dict({"gates": {"method": method}}).gates
    torch.manual_seed(seed)
    layers = []
    for i, (n, per_gate) in enumerate(sizes):
        gate = GATES.get(method)((n,), cfg, 0, f"l{i}", 9)
        with torch.no_grad():
            next(gate.parameters()).copy_(torch.randn(n) * 2 + 1)
        layers.append(type("L", (), {"gate": gate, "weights_per_gate": per_gate,
                                     "numel": n * per_gate})())
    return layers


@pytest.mark.parametrize("method", ["crbg", "crbg_st", "hard_concrete"])
@pytest.mark.parametrize("sizes", [((3000, 1), (500, 1)), ((300, 9), (40, 25))])
@pytest.mark.parametrize("density", [0.02, 0.1, 0.5, 0.9])
def test_the_hold_puts_the_threshold_rule_on_the_target(method, sizes, density):
    """One shift of every gate of the group: the order of the gates stays, and the threshold
    rule keeps the highest-ranked gates up to the target's count of weights (with a gate per
    weight: exactly; per unit: never more, and one more unit would pass it)."""
    from sltc import budget

    layers = _group(method, sizes)
    total = sum(m.numel for m in layers)
    want = round(density * total)
    before = [next(m.gate.parameters()).detach().clone() for m in layers]
    c = budget.hold(layers, density, 0.5)
    shifts = [next(m.gate.parameters()).detach() - b for m, b in zip(layers, before, strict=True)]
    assert all(torch.allclose(s, torch.full_like(s, c), atol=1e-5) for s in shifts)
    kept = budget.kept(layers, 0.5)
    frozen = torch.cat([m.gate.frozen(0.5) for m in layers])
    ranks = torch.cat([m.gate.rank() - m.gate.opening(0.5) for m in layers])
    per = torch.cat([torch.full((m.gate.rank().numel(),), m.weights_per_gate) for m in layers])
    assert ranks[frozen].min() > ranks[~frozen].max()  # the highest-ranked are kept
    if all(p == 1 for _, p in sizes):
        assert kept == want
    else:  # never more than the target; the next unit would pass it
        assert kept <= want < kept + int(per[~frozen][ranks[~frozen].argmax()])
    assert budget.hold(layers, density, 0.5) == 0.0  # on the target: nothing moves


def test_edge_popup_holds_each_layer_at_its_own_sparsity_through_the_freezer():
    from sltc.freeze import freeze, sparsity
    from sltc.layers import gate, gated_layers
    from sltc.models import create_model

    own = {"fc1": 0.97, "fc3": 0.5}
    cfg = from_dict({"model": {"widths": [64, 32]},
                     "gates": {"method": "edge_popup", "layer_sparsity": own}})
    model = gate(create_model(cfg.model, (1, 8, 8), 10, 0.5, 0.25), cfg)
    masks = freeze(model, 0.5, 0.9, "layer", 0.01, own)  # the trained top-k misses by ceil
    for m in gated_layers(model):
        density = float(masks[m.name].double().mean())
        assert density == pytest.approx(1 - own.get(m.name, 0.9), abs=1 / m.numel)
    expected = sum((1 - own.get(m.name, 0.9)) * m.numel for m in gated_layers(model))
    assert 1 - sparsity(model, masks) == pytest.approx(expected / sum(
        m.numel for m in gated_layers(model)), abs=1e-3)


def test_layer_sparsity_must_name_layers_of_the_network():
    from sltc.format.errors import ConfigError
    from sltc.layers import gate
    from sltc.models import create_model

    cfg = from_dict({"model": {"widths": [64, 32]},
                     "gates": {"method": "edge_popup", "layer_sparsity": {"fc9": 0.5}}})
    with pytest.raises(ConfigError, match="'fc9', not a layer of this network; name one of its "
                                          "layers: fc1"):
        gate(create_model(cfg.model, (1, 8, 8), 10, 0.5, 0.25), cfg)
