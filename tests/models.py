"""Networks for tests, reached from configs as ``model.arch: python:tests.models:<name>``."""

import math

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention written with nn.Linear, as a user would."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


def sincos(tokens: int, width: int) -> torch.Tensor:
    """Fixed sine-cosine position embeddings, ``(1, tokens, width)``."""
    pos = torch.arange(tokens, dtype=torch.float32)[:, None]
    freq = 10000.0 ** (-torch.arange(0, width, 2, dtype=torch.float32) / width)
    return torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], dim=1)[None]


class Mixed(nn.Module):
    """A strided conv with bias, a grouped dilated conv, BatchNorm and a residual add, then
    tokens with a class token, sine-cosine position embeddings (scaled by 0.1), LayerNorm, attention scaled
    by a layer scale (0.5 at init) and a GELU MLP. The position embeddings and the layer
    scale are the network's own values: a ticket keeps them."""

    def __init__(self, input_shape, classes, width=16, heads=2):
        super().__init__()
        c, h, w = input_shape
        self.stem = nn.Conv2d(c, width, 3, stride=2, padding=1, bias=True)
        self.grouped = nn.Conv2d(width, width, 3, padding=2, dilation=2, groups=4, bias=False)
        self.bn = nn.BatchNorm2d(width, affine=False)
        self.pool = nn.AvgPool2d(2)
        tokens = (h // 4) * (w // 4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(0.1 * sincos(tokens + 1, width))  # near the tokens' size
        self.gamma = nn.Parameter(torch.full((width,), 0.5))  # a layer scale
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = self.pool(x + self.bn(self.grouped(x)))
        t = x.flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1) + self.pos_embed
        t = t + self.gamma * self.attn(self.norm1(t))
        t = t + self.mlp(self.norm2(t))
        return self.head(t[:, 0])


def mixed(input_shape, classes, width=16, heads=2):
    return Mixed(input_shape, classes, width, heads)


class Idle(nn.Module):
    """An MLP with a layer its forward never calls."""

    def __init__(self, input_shape, classes):
        super().__init__()
        self.fc = nn.Linear(math.prod(input_shape), 32)
        self.spare = nn.Linear(32, 32)  # never called
        self.head = nn.Linear(32, classes)

    def forward(self, x):
        return self.head(F.relu(self.fc(x.flatten(1))))


class ConvNet(nn.Module):
    """A plain conv net as a user writes it: convs with bias, affine BatchNorm, max pooling,
    global average pooling and one linear classifier."""

    def __init__(self, input_shape, classes, width=8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2), nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def convnet(input_shape, classes, width=8):
    return ConvNet(input_shape, classes, width)
