"""Vision transformers: ViT (Dosovitskiy et al. 2021) with a class token, learned position
embeddings and pre-norm blocks. LayerNorm stays at its init (scale 1, shift 0); the class
token and position embeddings are drawn from the portable generator (std 0.02)."""

from __future__ import annotations

import torch
from torch import nn

from sltc.format.errors import ConfigError

from . import register


class Attention(nn.Module):
    """Multi-head self-attention over ``(batch, tokens, dim)``, written with nn.Linear."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"model.dim {dim} is not divisible by model.heads {heads}")
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x, bias=None):
        """``bias``: (G, heads, n, n) added to the scores of each group of G sequences
        (Swin's relative position bias and shifted-window mask)."""
        _, n, c = x.shape
        h = self.heads
        q, k, v = self.qkv(x).reshape(-1, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
        attn = q @ k.transpose(-2, -1) * self.scale
        if bias is not None:
            attn = (attn.view(-1, bias.shape[0], h, n, n) + bias).view(-1, h, n, n)
        return self.proj((attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(-1, n, c))


class Mlp(nn.Sequential):
    def __init__(self, dim: int, ratio: int = 4):
        super().__init__(nn.Linear(dim, ratio * dim, bias=False), nn.GELU(),
                         nn.Linear(ratio * dim, dim, bias=False))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def patches(input_shape, patch: int) -> tuple[int, int]:
    """Tokens per side; the patch must tile the image."""
    _, h, w = input_shape
    if h % patch or w % patch:
        raise ConfigError(f"model.patch {patch} does not tile {h}x{w} images; choose a divisor")
    return h // patch, w // patch


class ViT(nn.Module):
    drawn_by_name = ("cls_token", "pos_embed")  # N(0, 0.02) from (seed, name), as ViT's init

    def __init__(self, input_shape, classes: int, normalize: nn.Module, patch: int, dim: int,
                 depth: int, heads: int):
        super().__init__()
        gh, gw = patches(input_shape, patch)
        self.normalize = normalize
        self.patch_embed = nn.Conv2d(input_shape[0], dim, patch, patch, bias=False)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, gh * gw + 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes, bias=False)

    def forward(self, x):
        x = self.patch_embed(self.normalize(x)).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


PRESETS = {"vit": dict(patch=4, dim=192, depth=6, heads=3),
           "vit_tiny": dict(patch=4, dim=192, depth=12, heads=3)}  # ViT-Ti/4 for 32x32


def _vit(preset: str):
    def build(cfg, input_shape, classes, normalize):
        p = PRESETS[preset]
        return ViT(input_shape, classes, normalize, cfg.patch or p["patch"], cfg.dim or p["dim"],
                   cfg.depth or p["depth"], cfg.heads or p["heads"])

    build.__doc__ = f"ViT, defaults {PRESETS[preset]}; model.patch/dim/depth/heads override."
    return build


for _name in PRESETS:
    register(_name, "patch", "dim", "depth", "heads")(_vit(_name))
