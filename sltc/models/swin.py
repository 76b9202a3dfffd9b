"""Swin Transformer (Liu et al. 2021): windowed attention with a relative position bias,
shifted windows in every other block, patch merging between stages. Feature maps whose
side is not a multiple of the window are zero-padded, as in the reference code, so any
input size works. The bias tables are drawn from the portable generator (std 0.02); the
relative position index and the shifted-window masks are constants of the architecture."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import register
from .vit import Attention, Mlp, patches


def window_partition(x, w: int):
    """(B, H, W, C) -> (B * windows, w * w, C)."""
    _, h, wd, c = x.shape
    return x.view(-1, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)


def window_reverse(windows, w: int, h: int, wd: int):
    """(B * windows, w * w, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    return windows.view(-1, h // w, wd // w, w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, h, wd, c)


def relative_index(w: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (w - 1)
    return rel[..., 0] * (2 * w - 1) + rel[..., 1]


def shift_mask(h: int, wd: int, w: int, s: int) -> torch.Tensor:
    """-100 between tokens that a cyclic shift by ``s`` brought into one window."""
    img = torch.zeros(1, h, wd, 1)
    spans = (slice(0, -w), slice(-w, -s), slice(-s, None))
    for region, (a, b) in enumerate((a, b) for a in spans for b in spans):
        img[:, a, b, :] = region
    windows = window_partition(img, w).squeeze(-1)
    diff = windows[:, None, :] - windows[:, :, None]
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


class SwinBlock(nn.Module):
    drawn_by_name = ("relative_position_bias_table",)  # N(0, 0.02) from (seed, name)

    def __init__(self, dim: int, heads: int, resolution: tuple[int, int], window: int,
                 shifted: bool):
        super().__init__()
        h, wd = resolution
        self.window = min(window, h, wd)
        self.shift = self.window // 2 if shifted and min(h, wd) > window else 0
        self.resolution = resolution
        self.padded = tuple(math.ceil(v / self.window) * self.window for v in resolution)
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * self.window - 1) ** 2,
                                                                     heads))
        self.register_buffer("relative_position_index", relative_index(self.window),
                             persistent=False)
        mask = shift_mask(*self.padded, self.window, self.shift) if self.shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def bias(self) -> torch.Tensor:
        n = self.window * self.window
        table = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = table.view(n, n, -1).permute(2, 0, 1)[None]  # (1, heads, n, n)
        return bias if self.attn_mask is None else bias + self.attn_mask[:, None]

    def forward(self, x):
        (h, wd), (hp, wp), w, s = self.resolution, self.padded, self.window, self.shift
        c = x.shape[-1]
        y = self.norm1(x).view(-1, h, wd, c)
        if (hp, wp) != (h, wd):
            y = F.pad(y, (0, 0, 0, wp - wd, 0, hp - h))
        if s:
            y = torch.roll(y, (-s, -s), dims=(1, 2))
        y = window_reverse(self.attn(window_partition(y, w), self.bias()), w, hp, wp)
        if s:
            y = torch.roll(y, (s, s), dims=(1, 2))
        x = x + y[:, :h, :wd, :].reshape(-1, h * wd, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbouring tokens concatenated (4C), normalised, projected to 2C."""

    def __init__(self, dim: int, resolution: tuple[int, int]):
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x):
        h, wd = self.resolution
        x = x.view(-1, h, wd, x.shape[-1])
        if h % 2 or wd % 2:
            x = F.pad(x, (0, 0, 0, wd % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.flatten(1, 2)))


class Swin(nn.Module):
    def __init__(self, input_shape, classes: int, normalize: nn.Module, patch: int, dim: int,
                 depths: tuple[int, ...], heads: int, window: int):
        super().__init__()
        res = patches(input_shape, patch)
        self.normalize = normalize
        self.patch_embed = nn.Conv2d(input_shape[0], dim, patch, patch, bias=False)
        self.patch_norm = nn.LayerNorm(dim)
        stages = []
        for i, depth in enumerate(depths):
            stage = [SwinBlock(dim, heads, res, window, j % 2 == 1) for j in range(depth)]
            if i < len(depths) - 1:
                stage.append(PatchMerging(dim, res))
                res, dim, heads = tuple(math.ceil(v / 2) for v in res), 2 * dim, 2 * heads
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes, bias=False)

    def forward(self, x):
        x = self.patch_embed(self.normalize(x)).flatten(2).transpose(1, 2)
        return self.head(self.norm(self.stages(self.patch_norm(x))).mean(1))


PRESETS = {  # Swin-T's widths and depths; patch 2 and window 4 for 32x32 images
    "swin": dict(patch=2, dim=48, depths=(2, 2, 2), heads=3, window=4),
    "swin_tiny": dict(patch=2, dim=96, depths=(2, 2, 6, 2), heads=3, window=4),
}


def _swin(preset: str):
    def build(cfg, input_shape, classes, normalize):
        p = PRESETS[preset]
        return Swin(input_shape, classes, normalize, cfg.patch or p["patch"], cfg.dim or p["dim"],
                    p["depths"], cfg.heads or p["heads"], cfg.window or p["window"])

    build.__doc__ = f"Swin, defaults {PRESETS[preset]}; model.patch/dim/heads/window override."
    return build


for _name in PRESETS:
    register(_name, "patch", "dim", "heads", "window")(_swin(_name))
