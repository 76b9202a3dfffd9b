"""A conv net written as a user writes one, for ``model.arch: python:examples.user_convnet:net``.

    sltc discover examples/user-convnet-fashion.yaml --out runs/user-convnet

Plain PyTorch, nothing of sltc: three stages of two 3x3 convolutions (with bias) each
followed by affine BatchNorm and ReLU, max pooling between stages, global average pooling
and one linear classifier. sltc reads its family off its forward pass (a conv net: no
residual sums, no attention) and trains it with the conv recipe; it is in no registry and
in no recipe's tuning, so it is the held-out network of docs/results.md's budget sweep.
"""

from torch import nn


def _stage(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]


def net(input_shape, classes, widths=(32, 64, 128)):
    layers, c = [], input_shape[0]
    for i, w in enumerate(widths):
        layers += _stage(c, w) + ([nn.MaxPool2d(2)] if i < len(widths) - 1 else [])
        c = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes))
