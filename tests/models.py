"""Networks for tests, reached from configs as ``model.arch: python:tests.models:<name>``."""

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


class Mixed(nn.Module):
    """A strided conv with bias, a grouped dilated conv, BatchNorm and a residual add, then
    tokens with a class token, position embeddings, LayerNorm, attention and a GELU MLP."""

    def __init__(self, input_shape, classes, width=16, heads=2):
        super().__init__()
        c, h, w = input_shape
        self.stem = nn.Conv2d(c, width, 3, stride=2, padding=1, bias=True)
        self.grouped = nn.Conv2d(width, width, 3, padding=2, dilation=2, groups=4, bias=False)
        self.bn = nn.BatchNorm2d(width, affine=False)
        self.pool = nn.AvgPool2d(2)
        tokens = (h // 4) * (w // 4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens + 1, width))
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
        t = t + self.attn(self.norm1(t))
        t = t + self.mlp(self.norm2(t))
        return self.head(t[:, 0])


def mixed(input_shape, classes, width=16, heads=2):
    return Mixed(input_shape, classes, width, heads)
