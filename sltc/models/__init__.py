"""Plain PyTorch models in a registry; ``sltc.layers.gate`` swaps gated layers in.

Layers carry ``bias=False`` and BatchNorm is non-affine, as in edge-popup: a
ticket is then the seed, the masks and the BN running statistics. Every model
starts with ``Normalize``, so it takes pixels scaled to [0, 1], and takes its input
shape and class count from the data. One file per family: ``convnets`` (mlp,
conv2/4/6), ``resnet`` (CIFAR ResNets, ResNet-18/50, Wide-ResNet), ``vit``, ``swin``.
"""

from __future__ import annotations

import importlib
import os
import sys

import torch
from torch import nn

from ..errors import ConfigError
from ..layers import gate
from ..limits import MAX_WEIGHTS
from ..registry import Registry

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


def user_factory(arch: str):
    """The factory named by ``python:package.module:factory`` (the working directory is
    searched too, as ``python -m`` does)."""
    module_name, sep, attr = arch[len(PYTHON_PREFIX):].partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"model.arch {arch!r}: expected python:package.module:factory")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
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
        model = user_factory(cfg.arch)(tuple(input_shape), classes, **cfg.kwargs)
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model.arch {cfg.arch!r} returned {type(model).__name__}, "
                              "not an nn.Module")
        return model
    return MODELS.get(cfg.arch)(cfg, tuple(input_shape), classes, Normalize(mean, std))


def build_model(config, input_shape, classes: int, mean: float, std: float) -> nn.Module:
    """The gated model: a plain model with gated layers swapped in and every tensor set.
    A registry network is first built without memory (on torch's meta device) and
    refused if it holds more than ``MAX_WEIGHTS`` numbers."""
    if not config.model.arch.startswith(PYTHON_PREFIX):
        with torch.device("meta"):
            shell = create_model(config.model, input_shape, classes, mean, std)
        size = sum(t.numel() for t in [*shell.parameters(), *shell.buffers()])
        if size > MAX_WEIGHTS:
            raise ConfigError(f"model: this {config.model.arch} holds {size:,} weights, over "
                              f"sltc's limit of {MAX_WEIGHTS:,}; choose smaller widths, depth "
                              "or dim")
    return gate(create_model(config.model, input_shape, classes, mean, std), config)


from . import convnets, resnet, swin, vit  # noqa: E402,F401  (registration)
