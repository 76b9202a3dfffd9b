"""The edge-popup family: LeNet-style MLPs and Conv-2/4/6."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from . import register


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


@register("mlp", "widths", "batchnorm")
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


@register("conv2", "batchnorm")
def conv2(cfg, input_shape, classes, normalize):
    return _conv_net([64, 64], cfg, input_shape, classes, normalize)


@register("conv4", "batchnorm")
def conv4(cfg, input_shape, classes, normalize):
    return _conv_net([64, 64, 128, 128], cfg, input_shape, classes, normalize)


@register("conv6", "batchnorm")
def conv6(cfg, input_shape, classes, normalize):
    return _conv_net([64, 64, 128, 128, 256, 256], cfg, input_shape, classes, normalize)
