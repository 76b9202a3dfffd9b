"""Recipes: the family read off a network's forward pass, and the keys filled by method and
family (sltc.recipes), for registry networks, python: factories and find_ticket alike."""

import json

import pytest
import torch
import yaml

import sltc
from sltc.config import RecipeConfig, from_dict
from sltc.data import synthetic_split
from sltc.format.ticket import Ticket
from sltc.models import MODELS, create_model, with_recipe
from sltc.recipes import FAMILIES, RECIPES, family_of
from tests.helpers import discover_here, last_json, sltc_here
from tests.models import ConvNet, Idle, mixed

REGISTRY = {"mlp": "mlp", "conv2": "conv", "conv4": "conv", "conv6": "conv",
            **{a: "residual" for a in ("resnet20", "resnet32", "resnet56", "resnet18",
                                        "resnet50", "wrn")},
            **{a: "transformer" for a in ("vit", "vit_tiny", "swin", "swin_tiny")}}


def _shell(data: dict, shape=(3, 32, 32)):
    cfg = from_dict(data)
    with torch.device("meta"):
        return cfg, create_model(cfg.model, shape, 10, 0.5, 0.25)


@pytest.mark.parametrize("arch", sorted(MODELS.names()))
def test_every_registry_network_has_its_family(arch):
    """Read off one forward pass on torch's meta device: no weights are drawn."""
    _, model = _shell({"model": {"arch": arch}})
    family, reason = family_of(model, torch.zeros(2, 3, 32, 32, device="meta"))
    assert family == REGISTRY[arch], reason


@pytest.mark.parametrize("net, family", [(ConvNet((1, 12, 12), 10), "conv"),
                                         (Idle((1, 12, 12), 10), "mlp"),
                                         (mixed((1, 12, 12), 10), "transformer")])
def test_users_networks_are_read_the_same_way(net, family):
    net.train()
    assert family_of(net, torch.zeros(2, 1, 12, 12))[0] == family
    assert net.training  # the probe leaves the mode as it found it


def test_every_method_and_family_has_a_recipe_that_validates():
    from sltc.gates import GATES

    assert set(RecipeConfig.model_fields["family"].annotation.__args__) == \
        {"auto", "none", *FAMILIES}
    for method in GATES.names():
        for family in FAMILIES:
            values = RECIPES[method, family].values
            data = {"gates": {"method": method}}
            for key, value in values.items():
                section, name = key.split(".")
                data.setdefault(section, {})[name] = value
            from_dict(data)  # every value within its key's range


def _resolved(data: dict):
    cfg, shell = _shell(data)
    return with_recipe(cfg, shell, (3, 32, 32))


@pytest.mark.parametrize("data, lr, margin, sigma_final, optimizer", [
    ({}, 0.02, None, None, "adam"),  # the MLP: CRBG's defaults, spelled out
    ({"model": {"arch": "conv4"}}, 0.05, 0.25, 0.1, "adam"),
    ({"model": {"arch": "resnet20"}, "train": {"lr": 0.01}}, 0.01, 0.25, 0.1, "adam"),  # given
    ({"model": {"arch": "wrn"}, "gates": {"mu_margin": None}}, 0.05, None, 0.1, "adam"),
    ({"model": {"arch": "vit"}}, 0.05, 0.25, 0.1, "adam"),
    ({"model": {"arch": "swin_tiny"}, "gates": {"method": "crbg_st"}}, 0.05, 0.25, 0.1, "adam"),
    ({"model": {"arch": "conv4"}, "recipe": {"family": "none"}}, 0.02, None, None, "adam"),
    ({"model": {"arch": "mlp"}, "recipe": {"family": "transformer"}}, 0.05, 0.25, 0.1, "adam"),
])
def test_the_recipe_fills_what_the_config_leaves_out(data, lr, margin, sigma_final, optimizer):
    cfg = _resolved(data)
    assert (cfg.train.lr, cfg.gates.mu_margin, cfg.gates.sigma_final, cfg.train.optimizer) == \
        (lr, margin, sigma_final, optimizer)
    given = {f"{s}.{k}" for s, keys in data.items() if s != "recipe" for k in keys}
    assert not given & set(cfg.recipe.filled)  # a key the user set is never filled
    assert cfg.recipe.chosen.startswith(cfg.gates.method + "/") and cfg.recipe.reason
    again = from_dict(cfg.to_dict())  # the recorded config: used as it is
    assert again == cfg and with_recipe(again, _shell(data)[1], (3, 32, 32)) == again


def test_each_method_gets_its_own_recipe():
    """A config that sets only the method gets that method's optimiser keys, not CRBG's."""
    for method in ("edge_popup", "hard_concrete", "crbg"):
        cfg = _resolved({"model": {"arch": "resnet20"}, "gates": {"method": method}})
        want = RECIPES[method, "residual"].values
        assert {k: getattr(getattr(cfg, k.split(".")[0]), k.split(".")[1])
                for k in want} == want
        assert cfg.recipe.chosen == f"{method}/residual"
        assert "skip connections" in cfg.recipe.reason and RECIPES[method, "residual"].why \
            in cfg.recipe.reason


def test_another_optimizer_keeps_the_recipes_rates_out():
    """The recipe's rate was tuned for its own optimiser: with SGD chosen, CRBG's Adam rate
    is not filled in (the schema's default stays), and neither is its weight decay."""
    cfg = _resolved({"model": {"arch": "conv4"}, "train": {"optimizer": "sgd"}})
    assert cfg.train.optimizer == "sgd" and cfg.train.lr == 0.02
    assert {"train.lr", "train.weight_decay", "train.optimizer"}.isdisjoint(cfg.recipe.filled)
    assert {"gates.mu_margin", "gates.sigma_final"} <= set(cfg.recipe.filled)


def test_a_short_run_gets_the_budget_rate_unless_the_user_sets_the_rate():
    """The deep recipe's ``train.budget_lr`` raises a short run's rate to budget_lr /
    sqrt(steps), never below ``train.lr``; a user who sets ``train.lr`` gets that rate at
    every length (the budget rate is not filled), as does the MLP recipe."""
    from sltc.discover import _lr, base_lr

    cfg = _resolved({"model": {"arch": "vit"}})
    assert "train.budget_lr" in cfg.recipe.filled
    budget = cfg.train.budget_lr
    assert base_lr(cfg.train, 100) == pytest.approx(budget / 10)
    assert base_lr(cfg.train, 10_000) == cfg.train.lr < budget / 10
    assert _lr(cfg, 0, 100) == base_lr(cfg.train, 100)  # the cosine starts there
    assert _lr(cfg, 50, 100) == pytest.approx(base_lr(cfg.train, 100) / 2)
    for data in ({"model": {"arch": "vit"}, "train": {"lr": 0.01}}, {}):
        mine = _resolved(data)
        assert mine.train.budget_lr is None and "train.budget_lr" not in mine.recipe.filled
        assert base_lr(mine.train, 100) == mine.train.lr
    sgd = _resolved({"model": {"arch": "conv4"}, "train": {"optimizer": "sgd"}})
    assert sgd.train.budget_lr is None  # an Adam rule, left out with Adam's rate


def test_a_python_conv_net_gets_the_conv_recipe_through_discover(tmp_path):
    """A user's conv net (``python:`` factory) gets the conv recipe; ``config.yaml`` records
    it, why, and what it filled; the example's own ``train.lr`` stays."""
    summary = discover_here("examples/synthetic.yaml", "--out", tmp_path / "run",
                            "--set", "model.arch=python:tests.models:convnet",
                            "--set", "model.widths=null", "--set", "train.epochs=1",
                            "--set", "train.max_steps=3")
    recorded = yaml.safe_load((tmp_path / "run/config.yaml").read_text())
    assert recorded["recipe"]["chosen"] == "crbg/conv" == summary["recipe"]
    assert "2 nn.Conv2d and 1 nn.Linear" in recorded["recipe"]["reason"]
    assert recorded["gates"]["mu_margin"] == 0.25 and recorded["gates"]["sigma_final"] == 0.1
    assert recorded["train"]["lr"] == 0.05 and "train.lr" not in recorded["recipe"]["filled"]


def test_a_config_that_sets_only_the_method_records_its_recipe(tmp_path):
    config = tmp_path / "ep.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"arch": "mlp", "widths": [32]}, "gates": {"method": "edge_popup"},
        "data": {"name": "synthetic", "synthetic_size": 256, "val_size": 64},
        "train": {"epochs": 1, "max_steps": 2}}))
    discover_here(config, "--out", tmp_path / "run")
    recorded = yaml.safe_load((tmp_path / "run/config.yaml").read_text())
    want = RECIPES["edge_popup", "mlp"]
    assert recorded["recipe"]["chosen"] == "edge_popup/mlp"
    assert want.why in recorded["recipe"]["reason"] and "only" in recorded["recipe"]["reason"]
    for key, value in want.values.items():
        section, name = key.split(".")
        assert recorded[section][name] == value, key
    assert sorted(recorded["recipe"]["filled"]) == sorted(want.values)
    ticket_config = Ticket.load(tmp_path / "run/ticket.slt").meta["config"]
    assert ticket_config["recipe"] == recorded["recipe"]


def test_find_ticket_reads_the_users_network(tmp_path):
    train = synthetic_split(1, "train", 128)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(
        torch.from_numpy(train.images), torch.from_numpy(train.labels)), batch_size=32)
    summary, ticket = sltc.find_ticket(ConvNet((1, 28, 28), 10), loader, loader,
                                       {"train": {"epochs": 1, "max_steps": 2}},
                                       out=tmp_path / "run", progress=False)
    assert summary["recipe"] == "crbg/conv"
    assert ticket.meta["config"]["train"]["lr"] == 0.05
    assert json.loads((tmp_path / "run/summary.json").read_text())["recipe"] == "crbg/conv"


def test_config_lists_every_recipe():
    rows = last_json(sltc_here("config", "--recipes", "--json", check=True))
    assert {(r["method"], r["family"]): r["values"] for r in rows} == \
        {k: r.values for k, r in RECIPES.items()}
    assert all(r["why"] for r in rows)


def test_the_baselines_recipes_are_their_grids_winners():
    """Edge-popup's and hard concrete's recipes are the winners their grids recorded
    (benchmarks/out/baselines.json), family by family."""
    import json

    from tests.helpers import ROOT

    grid = json.loads((ROOT / "benchmarks/out/baselines.json").read_text())
    assert {(w["method"], w["family"]) for w in grid["winners"]} == \
        {(m, f) for m, f in RECIPES if m in ("edge_popup", "hard_concrete")}
    for w in grid["winners"]:
        name, wd = w["recipe"].removesuffix(" wd"), 1e-4 if w["recipe"].endswith(" wd") else 0.0
        optimizer, lr = name.split()
        want = {"train.optimizer": optimizer, "train.lr": float(lr), "train.weight_decay": wd}
        if optimizer == "sgd":
            want["train.momentum"] = 0.9
        assert RECIPES[w["method"], w["family"]].values == want, w
