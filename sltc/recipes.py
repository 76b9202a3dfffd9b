"""Recipes: the training keys a config leaves out, filled by gate method and network family.

A network's family is what its forward pass computes, read off one pass over two images
(``family_of``): ``transformer`` where it multiplies two activations (attention),
``residual`` where it adds two activations of one shape (skip connections) and has
convolutions, ``conv`` where it has convolutions, ``mlp`` where it has linear layers
only. Registry networks, ``python:`` factories and the modules given to
``sltc.find_ticket`` are all read the same way. ``recipe.family`` in a config names the
family instead (``none``: no recipe, the schema's defaults).

Each method and family has one ``Recipe``, chosen on the validation split
(docs/results.md says where). ``resolve`` fills its keys where the user's config leaves
them out: a key the user set always wins, and where the user chose another optimizer than
the recipe's, the recipe's learning rate, momentum and weight decay (tuned for its own
optimizer) are left out too; a recipe's ``train.budget_lr`` (a short run's rate) fills in
only where ``train.lr`` is left out too. The resolved config records what was filled and why
(``recipe.chosen``, ``recipe.reason``, ``recipe.filled``); a config that already records
a choice (a run's ``config.yaml``, a ticket's) is never resolved again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

FAMILIES = ("mlp", "conv", "residual", "transformer")
OPTIMIZER_KEYS = ("train.lr", "train.budget_lr", "train.momentum",
                  "train.weight_decay")  # tuned per optimizer
TIED = {"train.budget_lr": "lr"}  # a key filled only where the user left this one out too


@dataclass(frozen=True)
class Recipe:
    values: dict[str, Any]  # dotted config key -> value
    why: str  # the measurement that chose it


def _adam(lr: float, weight_decay: float = 0.0) -> dict[str, Any]:
    return {"train.optimizer": "adam", "train.lr": lr, "train.weight_decay": weight_decay}


def _sgd(lr: float, weight_decay: float) -> dict[str, Any]:
    return {"train.optimizer": "sgd", "train.lr": lr, "train.momentum": 0.9,
            "train.weight_decay": weight_decay}


_CRBG_MLP = Recipe({**_adam(0.02), "gates.mu_margin": None, "gates.sigma_final": None},
                   "LeNet-300-100: the band and lr 0.05 lose 0.8-2.0 points at 90% "
                   "(docs/results.md sections 1 and 10)")
_CRBG_DEEP = Recipe({**_adam(0.05), "train.budget_lr": 2.0, "gates.mu_margin": 0.25,
                     "gates.sigma_final": 0.1},
                    "Conv-4, ResNet-20 and the ViT: +2.1 to +9.2 points of validation "
                    "accuracy at 90% (docs/results.md section 10); budget_lr 2 (lr 0.2 at "
                    "100 steps): +0.4 to +12.4 points at 100 steps (section 14)")
_EDGE_POPUP_TRANSFORMER = Recipe(_sgd(0.1, 0.0), "the ViT: the best mean rank of 8 recipes "
                                                 "on validation at 100 steps, one epoch and "
                                                 "five (the paper's SGD 0.1, without weight "
                                                 "decay); Adam 0.1 is 3.0 points better at "
                                                 "five epochs (docs/results.md section 12)")
_EDGE_POPUP_RESIDUAL = Recipe(_adam(0.02, 1e-4), "ResNet-20 at 100 steps: the best of 8 recipes "
                                                 "on validation, 0.7508 against 0.7250 for the "
                                                 "paper's SGD 0.1 (docs/results.md section 12)")
_EDGE_POPUP_CONV = Recipe(_adam(0.02, 1e-4), "Conv-4: the best mean rank of 8 recipes on "
                                             "validation at 100 steps, one epoch and two, "
                                             "+3.1 points over the paper's SGD 0.1 at 100 "
                                             "steps (docs/results.md section 12)")
_EDGE_POPUP_MLP = Recipe(_adam(0.02, 1e-4), "LeNet-300-100: the best mean rank of 8 recipes on "
                                            "validation at 100 steps, one epoch and 60 "
                                            "(+19 points over the paper's SGD 0.1 at 100 "
                                            "steps, 1.4 under it at 60 epochs; "
                                            "docs/results.md section 12)")
_HARD_CONCRETE = Recipe(_adam(0.1), "LeNet-300-100, Conv-4 and ResNet-20: the best mean rank "
                                    "of 8 recipes on validation at 100 steps and one epoch "
                                    "(docs/results.md section 16)")
_HARD_CONCRETE_TRANSFORMER = Recipe(_sgd(0.1, 0.0), "the ViT: the best mean rank of 8 recipes "
                                                    "on validation at 100 steps and one epoch, "
                                                    "though none trains it there (0.15-0.23; "
                                                    "docs/results.md section 16)")
RECIPES: dict[tuple[str, str], Recipe] = {
    **{(m, "mlp"): _CRBG_MLP for m in ("crbg", "crbg_st")},
    **{(m, f): _CRBG_DEEP for m in ("crbg", "crbg_st") for f in FAMILIES[1:]},
    ("edge_popup", "mlp"): _EDGE_POPUP_MLP,
    ("edge_popup", "conv"): _EDGE_POPUP_CONV,
    ("edge_popup", "residual"): _EDGE_POPUP_RESIDUAL,
    ("edge_popup", "transformer"): _EDGE_POPUP_TRANSFORMER,
    **{("hard_concrete", f): _HARD_CONCRETE for f in FAMILIES[:3]},
    ("hard_concrete", "transformer"): _HARD_CONCRETE_TRANSFORMER,
}


def recipe_table() -> list[dict]:
    """Every recipe: method, family, the values it fills and what chose them."""
    return [{"method": m, "family": f, "values": r.values, "why": r.why}
            for (m, f), r in RECIPES.items()]


# --- the family, read off one forward pass -----------------------------------------------------

_PRODUCTS = {torch.matmul, torch.bmm, torch.baddbmm, torch.einsum, F.scaled_dot_product_attention,
             torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.__rmatmul__,
             torch.Tensor.bmm}
_SUMS = {torch.add, torch.Tensor.add, torch.Tensor.add_, torch.Tensor.__add__,
         torch.Tensor.__radd__, torch.Tensor.__iadd__}


class _Trace(TorchFunctionMode):
    """Follows the tensors computed from the input (``derived``), and counts the products
    and the same-shape sums of two of them."""

    def __init__(self, x: torch.Tensor):
        super().__init__()
        self.derived, self.kept = {id(x)}, [x]  # kept: ids stay unique while tracing
        self.products = self.sums = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = [a for a in _tensors((args, kwargs)) if id(a) in self.derived]
        if len(inputs) >= 2 and func in _PRODUCTS:
            self.products += 1
        if len(inputs) >= 2 and func in _SUMS and inputs[0].shape == inputs[1].shape:
            self.sums += 1
        if inputs:
            for t in _tensors(out):
                self.derived.add(id(t))
                self.kept.append(t)
        return out


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def family_of(model: nn.Module, x: torch.Tensor) -> tuple[str, str]:
    """(family, reason): what ``model`` computes on ``x`` (a batch of a few images, on the
    model's device; torch's meta device is enough), in eval mode and without gradient."""
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    linears = sum(isinstance(m, nn.Linear) for m in model.modules())
    training = model.training
    model.eval()
    try:
        with torch.no_grad(), _Trace(x) as trace:
            model(x)
    finally:
        model.train(training)
    layers = f"{convs} nn.Conv2d and {linears} nn.Linear"
    if trace.products:
        return "transformer", f"{layers}; its forward multiplies two activations " \
                              f"{trace.products} times (attention)"
    if convs and trace.sums:
        return "residual", f"{layers}; its forward adds two activations {trace.sums} times " \
                           "(skip connections)"
    if convs:
        return "conv", f"{layers}; no product or sum of two activations"
    return "mlp", f"{layers} only"


# --- filling the config ------------------------------------------------------------------------

def _set_keys(section) -> set[str]:
    """The keys of a config section the user gave, by their names in a file."""
    fields = type(section).model_fields
    return {fields[k].alias or k for k in section.model_fields_set}


def resolve(config, family: str, reason: str):
    """``config`` with the recipe of its method and ``family`` filled in where it leaves a
    key out, and the choice recorded in ``config.recipe``. A config that records a choice
    already is returned as it is."""
    if config.recipe.chosen is not None:
        return config
    if config.recipe.family != "auto":
        family, reason = config.recipe.family, "recipe.family in the config"
    method = config.gates.method
    recipe = RECIPES.get((method, family)) if family != "none" else None
    filled, updates = [], {}
    for key, value in (recipe.values if recipe else {}).items():
        section, name = key.split(".")
        given = _set_keys(getattr(config, section))
        if name in given or TIED.get(key) in given or _other_optimizer(config, recipe, key):
            continue
        updates.setdefault(section, {})[name] = value
        filled.append(key)
    sections = {s: _updated(getattr(config, s), v) for s, v in updates.items()}
    chosen = f"{method}/{family}"
    why = f"{reason}; {recipe.why}" if recipe else reason
    record = config.recipe.model_copy(update={"chosen": chosen, "reason": why, "filled": filled})
    return config.model_copy(update={**sections, "recipe": record})


def _other_optimizer(config, recipe: Recipe, key: str) -> bool:
    """Whether ``key`` is one of the recipe's optimizer settings and the user chose another
    optimizer than the recipe's."""
    ours = recipe.values.get("train.optimizer")
    return key in OPTIMIZER_KEYS and "optimizer" in _set_keys(config.train) and \
        config.train.optimizer != ours


def _updated(section, values: dict):
    """``section`` with ``values`` set by their names in a file (``lambda`` for ``lambda_``)."""
    names = {f.alias or k: k for k, f in type(section).model_fields.items()}
    return section.model_copy(update={names[k]: v for k, v in values.items()})
