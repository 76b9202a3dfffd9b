"""Plain PyTorch models in a registry; ``sltc.layers.gate`` swaps gated layers in.

Layers carry ``bias=False`` and BatchNorm is non-affine, as in edge-popup: a
ticket is then the seed, the masks and the BN running statistics. Every model
starts with ``Normalize``, so it takes pixels scaled to [0, 1].
"""

from __future__ import annotations

import importlib
import os
import sys
from collections import OrderedDict

import torch
from torch import nn

from .errors import ConfigError
from .layers import gate
from .registry import Registry

MODELS: Registry = Registry("architecture")
PYTHON_PREFIX = "python:"  # model.arch: python:package.module:factory, a user's own network


class Normalize(nn.Module):
    """(x - mean) / std with the training-set statistics, inside the model."""

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean, self.std = float(mean), float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _dense_block(layers: list, name: str, n_in: int, n_out: int, batchnorm: bool) -> None:
    layers.append((name, nn.Linear(n_in, n_out, bias=False)))
    if batchnorm:
        layers.append((f"bn_{name}", nn.BatchNorm1d(n_out, affine=False)))
    layers.append((f"relu_{name}", nn.ReLU()))


def _classifier(layers: list, n_in: int, widths: list[int], classes: int, bn: bool) -> None:
    sizes = [n_in, *widths]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
        _dense_block(layers, f"fc{i}", a, b, bn)
    layers.append((f"fc{len(sizes)}", nn.Linear(sizes[-1], classes, bias=False)))


@MODELS.register("mlp")
def mlp(cfg, input_shape, classes, normalize) -> nn.Sequential:
    """784-W1-...-Wk-10; LeNet-300-100 is ``widths: [300, 100]``."""
    layers: list = [("normalize", normalize), ("flatten", nn.Flatten())]
    in_features = input_shape[0] * input_shape[1] * input_shape[2]
    _classifier(layers, in_features, list(cfg.widths), classes, cfg.batchnorm)
    return nn.Sequential(OrderedDict(layers))


def _conv_net(channels: list[int], cfg, input_shape, classes, normalize) -> nn.Sequential:
    """edge-popup's Conv-k: pairs of 3x3 convs, each pair followed by a 2x2 max-pool."""
    layers: list = [("normalize", normalize)]
    c_in, size = input_shape[0], input_shape[1]
    for i, c_out in enumerate(channels, start=1):
        layers.append((f"conv{i}", nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)))
        if cfg.batchnorm:
            layers.append((f"bn_conv{i}", nn.BatchNorm2d(c_out, affine=False)))
        layers.append((f"relu_conv{i}", nn.ReLU()))
        if i % 2 == 0:
            layers.append((f"pool{i // 2}", nn.MaxPool2d(2)))
            size //= 2
        c_in = c_out
    layers.append(("flatten", nn.Flatten()))
    _classifier(layers, c_in * size * size, [256, 256], classes, cfg.batchnorm)
    return nn.Sequential(OrderedDict(layers))


@MODELS.register("conv2")
def conv2(cfg, input_shape, classes, normalize):
    return _conv_net([64, 64], cfg, input_shape, classes, normalize)


@MODELS.register("conv4")
def conv4(cfg, input_shape, classes, normalize):
    return _conv_net([64, 64, 128, 128], cfg, input_shape, classes, normalize)


@MODELS.register("conv6")
def conv6(cfg, input_shape, classes, normalize):
    return _conv_net([64, 64, 128, 128, 256, 256], cfg, input_shape, classes, normalize)


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
    """The gated model: a plain model with gated layers swapped in and every tensor set."""
    return gate(create_model(config.model, input_shape, classes, mean, std), config)
