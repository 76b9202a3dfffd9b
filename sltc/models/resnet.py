"""ResNets as the strong-lottery-ticket papers use them on CIFAR: 3x3 stem, no max-pool,
bias-free convs, non-affine BatchNorm, 1x1 projection shortcuts (edge-popup's code).

- ``resnet20/32/56``: three stages of basic blocks, 16-32-64 channels x ``model.width``;
- ``resnet18/50``: four stages of basic / bottleneck blocks, 64-512 channels x ``model.width``;
- ``wrn``: Wide-ResNet-``model.depth``-``model.width`` (pre-activation blocks, 16k-32k-64k).
"""

from __future__ import annotations

from torch import nn

from sltc.format.errors import ConfigError

from . import register


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)


def bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, affine=False)


def shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), bn(c_out))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, c: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(c_in, c, stride), bn(c)
        self.conv2, self.bn2 = conv3x3(c, c), bn(c)
        self.shortcut = shortcut(c_in, c, stride)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, c: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c_in, c, 1, bias=False), bn(c)
        self.conv2, self.bn2 = conv3x3(c, c, stride), bn(c)
        self.conv3, self.bn3 = nn.Conv2d(c, 4 * c, 1, bias=False), bn(4 * c)
        self.shortcut = shortcut(c_in, 4 * c, stride)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


class WideBlock(nn.Module):
    """Pre-activation: BN-ReLU-conv-BN-ReLU-conv, plus the shortcut."""

    expansion = 1

    def __init__(self, c_in: int, c: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = bn(c_in), conv3x3(c_in, c, stride)
        self.bn2, self.conv2 = bn(c), conv3x3(c, c)
        self.shortcut = nn.Identity() if stride == 1 and c_in == c else nn.Conv2d(
            c_in, c, 1, stride, bias=False)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.conv1(self.relu(self.bn1(x)))
        return self.conv2(self.relu(self.bn2(out))) + self.shortcut(x)


class ResNet(nn.Module):
    def __init__(self, block, blocks: list[int], widths: list[int], input_shape, classes: int,
                 normalize: nn.Module, pre_activation: bool = False):
        super().__init__()
        self.normalize = normalize
        self.stem = conv3x3(input_shape[0], widths[0])
        self.stem_bn = nn.Identity() if pre_activation else bn(widths[0])
        self.relu = nn.ReLU()
        layers, c_in = [], widths[0]
        for i, (n, c) in enumerate(zip(blocks, widths[1:] if pre_activation else widths,
                                       strict=True)):
            stage = []
            for j in range(n):
                stage.append(block(c_in, c, 2 if i > 0 and j == 0 else 1))
                c_in = c * block.expansion
            layers.append(nn.Sequential(*stage))
        self.layers = nn.Sequential(*layers)
        self.final_bn = bn(c_in) if pre_activation else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, classes, bias=False)

    def forward(self, x):
        x = self.relu(self.stem_bn(self.stem(self.normalize(x))))
        x = self.relu(self.final_bn(self.layers(x)))
        return self.fc(self.pool(x).flatten(1))


def _scaled(widths: list[int], multiplier: float) -> list[int]:
    return [max(1, round(w * multiplier)) for w in widths]


def _cifar_resnet(depth: int):
    def build(cfg, input_shape, classes, normalize):
        n = (depth - 2) // 6
        return ResNet(BasicBlock, [n] * 3, _scaled([16, 32, 64], cfg.width or 1.0), input_shape,
                      classes, normalize)

    build.__doc__ = f"ResNet-{depth} for CIFAR: 3 stages of {(depth - 2) // 6} basic blocks."
    return build


for _depth in (20, 32, 56):
    register(f"resnet{_depth}", "width")(_cifar_resnet(_depth))


@register("resnet18", "width")
def resnet18(cfg, input_shape, classes, normalize):
    return ResNet(BasicBlock, [2, 2, 2, 2], _scaled([64, 128, 256, 512], cfg.width or 1.0),
                  input_shape, classes, normalize)


@register("resnet50", "width")
def resnet50(cfg, input_shape, classes, normalize):
    return ResNet(Bottleneck, [3, 4, 6, 3], _scaled([64, 128, 256, 512], cfg.width or 1.0),
                  input_shape, classes, normalize)


@register("wrn", "depth", "width")
def wrn(cfg, input_shape, classes, normalize):
    """Wide-ResNet-d-k (Zagoruyko & Komodakis 2016): depth = 6n + 4, widths 16, 16k, 32k, 64k."""
    depth, k = cfg.depth or 28, cfg.width or 10
    if (depth - 4) % 6:
        raise ConfigError(f"model.depth {depth}: a Wide-ResNet has depth 6n + 4 (16, 22, 28, 40)")
    n = (depth - 4) // 6
    return ResNet(WideBlock, [n] * 3, [16, *_scaled([16, 32, 64], k)], input_shape, classes,
                  normalize, pre_activation=True)
