"""Plain PyTorch models in a registry; ``sltc.layers.gate`` swaps gated layers in.

Layers carry ``bias=False`` and BatchNorm is non-affine, as in edge-popup: a
ticket is then the seed, the masks and the BN running statistics. Every model
starts with ``Normalize``, so it takes pixels scaled to [0, 1], and takes its input
shape and class count from the data. One file per family: ``convnets`` (mlp,
conv2/4/6), ``resnet`` (CIFAR ResNets, ResNet-18/50, Wide-ResNet), ``vit``, ``swin``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import reprlib
import sys

import torch
from torch import nn

from sltc.format.errors import ConfigError, SltcError
from sltc.format.limits import MAX_WEIGHTS, check_memory

from ..layers import gate
from ..registry import Registry
from ..usercode import PROBE_IMAGES, running, users_code

MODELS: Registry = Registry("architecture")
PYTHON_PREFIX = "python:"  # model.arch: python:package.module:factory, a user's own network


class Normalize(nn.Module):
    """(x - mean) / std with the training-set statistics, inside the model."""

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean, self.std = float(mean), float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def register(name: str, *reads: str):
    """Register a factory under ``name``; ``reads``: the ``model.*`` keys it uses besides
    ``arch``, ``init`` and ``gain`` (any other key set for it is a config error)."""
    def add(factory):
        factory.reads = reads
        return MODELS.register(name)(factory)

    return add


def user_module(arch: str) -> str | None:
    """The module of a ``python:package.module:factory`` network; None for the registry's."""
    return arch[len(PYTHON_PREFIX):].partition(":")[0] if arch.startswith(PYTHON_PREFIX) \
        else None


def user_factory(arch: str):
    """The factory named by ``python:package.module:factory`` (the working directory is
    searched too, as ``python -m`` does)."""
    module_name, sep, attr = arch[len(PYTHON_PREFIX):].partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"model.arch {arch!r}: expected python:package.module:factory")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    with users_code(f"model.arch {arch!r}: importing {module_name}"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is None or not f"{module_name}.".startswith(f"{e.name}."):
                raise  # their module imports one that is missing: theirs to fix
            raise ConfigError(f"model.arch {arch!r}: cannot import {module_name} ({e}); "
                              "check the module path and the working directory") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"model.arch {arch!r}: {module_name} has no callable {attr!r}")
    return factory


def create_model(cfg, input_shape, classes: int, mean: float, std: float) -> nn.Module:
    """Build the plain (ungated) model named by ``cfg.arch``.

    A user's factory is called as ``factory(input_shape, classes, **cfg.kwargs)`` and
    takes pixels in [0, 1]; registry models normalise inside.
    """
    if cfg.arch.startswith(PYTHON_PREFIX):
        factory = user_factory(cfg.arch)
        call = ", ".join([repr(tuple(input_shape)), str(classes), *(
            f"{k}={reprlib.repr(v)}" for k, v in cfg.kwargs.items())])
        with users_code(f"model.arch {cfg.arch!r}: {factory.__name__}({call})",
                        fix="fix the factory or model.kwargs"):
            model = factory(tuple(input_shape), classes, **cfg.kwargs)
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model.arch {cfg.arch!r} returned {type(model).__name__}, "
                              "not an nn.Module")
        return model
    return MODELS.get(cfg.arch)(cfg, tuple(input_shape), classes, Normalize(mean, std))


def build_model(config, input_shape, classes: int, mean: float, std: float,
                training: bool = True):
    """``(config, model)``: the run's config with its recipe filled in (``sltc.recipes``,
    the family read off the network) and the gated model, every tensor set. The network is
    first built without memory (on torch's meta device) and refused if it holds more than
    ``MAX_WEIGHTS`` numbers or more than this process's memory holds for its run
    (``training``) or for the network alone; a user's factory that cannot build there is
    counted once built, and read once built, before it is gated."""
    arch = config.model.arch
    try:
        with torch.device("meta"):
            shell = create_model(config.model, input_shape, classes, mean, std)
    except SltcError:
        if not arch.startswith(PYTHON_PREFIX):
            raise
        shell = None  # their factory needs real tensors: count it once built
    if shell is not None:
        check_size(shell, arch, training)
    model = create_model(config.model, input_shape, classes, mean, std)
    if shell is None:
        check_size(model, arch, training)
    module = user_module(arch)  # their network runs on real tensors, as it will in training
    config = with_recipe(config, model if module or shell is None else shell, input_shape,
                         module)
    return config, gate(model, config)


def with_recipe(config, model: nn.Module, input_shape, module: str | None = None):
    """``config`` with the recipe of ``model``'s family filled in (``recipes.resolve``): the
    family read off a forward pass of two blank images on ``model``'s device. ``module``:
    the user's module where the network is theirs (what it raises is a ``BatchError``)."""
    from .. import recipes

    if config.recipe.chosen is not None:
        return config
    device = next(iter([*model.parameters(), *model.buffers()]), torch.empty(0)).device
    x = torch.zeros(PROBE_IMAGES, *input_shape, device=device)
    with running(module, x) if module else contextlib.nullcontext():
        family, reason = recipes.family_of(model, x)
    return recipes.resolve(config, family, reason)


TRAINING_BYTES = 52  # a weight's share of a run's memory (measured: 51.8, see check_size)


def check_size(model: nn.Module, arch: str, training: bool = True) -> None:
    """Refuse a network of more than ``MAX_WEIGHTS`` numbers (parameters and buffers), or
    one whose run would need more memory than this process may have: ``TRAINING_BYTES``
    a weight (the weight, its gate and their gradients, the optimizer's state, the masked
    copies of freezing: the peak RSS of ``sltc discover examples/synthetic.yaml --set
    model.widths=[W,W] --set train.epochs=1 --set train.max_steps=2 --set
    gates.recalibrate=0`` at W = 4000 less that at W = 1000, over the weights between them),
    4 to rebuild a ticket's network."""
    size = sum(t.numel() for t in [*model.parameters(), *model.buffers()])
    fix = "make the network smaller" if arch.startswith(PYTHON_PREFIX) else \
        "choose smaller widths, depth or dim"
    if size > MAX_WEIGHTS:
        raise ConfigError(f"model: this {arch} holds {size:,} weights, over sltc's limit of "
                          f"{MAX_WEIGHTS:,}; {fix}")
    check_memory(size * (TRAINING_BYTES if training else 4),
                 f"model: {'training' if training else 'building'} this {arch} of {size:,} "
                 "weights", fix)


from . import convnets, resnet, swin, vit  # noqa: E402,F401  (registration)
