"""Gated layers over frozen weights regenerated from ``(seed, layer name)``.

The weight is a non-persistent buffer: a checkpoint holds gates and BN
statistics only. ``gate(model, ...)`` swaps every ``nn.Linear`` / ``nn.Conv2d``
for its gated twin; ``to_dense`` bakes a mask back into a plain layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .gates import GATES
from .seeding import generate_weight


class _Gated(nn.Module):
    """Shared body of ``GatedLinear`` and ``GatedConv2d``."""

    def _setup(self, name: str, seed: int, init: str, gain: float, gates_cfg, gated: bool):
        self.name, self.seed, self.init, self.gain = name, seed, init, gain
        shape = tuple(self.weight_shape)
        w = generate_weight(seed, name, shape, init, self.fan_in, gain)
        self.register_buffer("weight", torch.from_numpy(w), persistent=False)
        self.granularity = gates_cfg.granularity if gated else None
        self.gate = None
        self.fixed_mask: torch.Tensor | None = None  # set by `frozen_masks` for evaluation
        if gated:
            gate_shape = shape if self.granularity == "weight" else shape[:1]
            gate_cls = GATES.get(gates_cfg.method)
            self.gate = gate_cls(gate_shape, gates_cfg, seed, name, self.fan_in)

    @property
    def fan_in(self) -> int:
        return math.prod(self.weight_shape[1:])

    @property
    def numel(self) -> int:
        return math.prod(self.weight_shape)

    @property
    def weights_per_gate(self) -> int:
        return 1 if self.granularity == "weight" else self.fan_in

    def _expand(self, z: torch.Tensor) -> torch.Tensor:
        if self.granularity == "weight":
            return z
        return z.view(-1, *([1] * (len(self.weight_shape) - 1)))

    def effective_weight(self) -> torch.Tensor:
        if self.fixed_mask is not None:
            return self.weight * self.fixed_mask
        if self.gate is None:
            return self.weight
        return self.weight * self._expand(self.gate())

    def weight_mask(self, gate_mask: torch.Tensor | None) -> torch.Tensor:
        """A gate-shaped boolean mask expanded to the weight's shape."""
        if gate_mask is None:
            return torch.ones(self.weight_shape, dtype=torch.bool)
        return self._expand(gate_mask).expand(*self.weight_shape)

    def spec(self) -> dict:
        """What the runtime needs to regenerate this weight."""
        return {
            "name": self.name,
            "shape": list(self.weight_shape),
            "fan_in": self.fan_in,
            "init": self.init,
            "gain": self.gain,
            "granularity": self.granularity,
        }


class GatedLinear(_Gated):
    def __init__(self, in_features, out_features, *, name, seed, init, gain, gates_cfg, gated):
        super().__init__()
        self.weight_shape = (out_features, in_features)
        self._setup(name, seed, init, gain, gates_cfg, gated)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight())

    @classmethod
    def from_dense(cls, layer: nn.Linear, **kw) -> GatedLinear:
        return cls(layer.in_features, layer.out_features, **kw)

    def to_dense(self, mask: torch.Tensor) -> nn.Linear:
        out = nn.Linear(self.weight_shape[1], self.weight_shape[0], bias=False)
        out.weight.data.copy_(self.weight * mask)
        return out


class GatedConv2d(_Gated):
    def __init__(self, c_in, c_out, kernel, padding, *, name, seed, init, gain, gates_cfg, gated):
        super().__init__()
        self.weight_shape = (c_out, c_in, kernel, kernel)
        self.padding = padding
        self._setup(name, seed, init, gain, gates_cfg, gated)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.effective_weight(), padding=self.padding)

    @classmethod
    def from_dense(cls, layer: nn.Conv2d, **kw) -> GatedConv2d:
        return cls(layer.in_channels, layer.out_channels, layer.kernel_size[0],
                   layer.padding[0], **kw)

    def to_dense(self, mask: torch.Tensor) -> nn.Conv2d:
        c_out, c_in, k, _ = self.weight_shape
        out = nn.Conv2d(c_in, c_out, k, padding=self.padding, bias=False)
        out.weight.data.copy_(self.weight * mask)
        return out


def gated_layers(model: nn.Module) -> list[_Gated]:
    return [m for m in model.modules() if isinstance(m, _Gated)]


def gate(
    model: nn.Module,
    config,
    filter_fn: Callable[[str, nn.Module], bool] | None = None,
) -> nn.Module:
    """Swap every Linear/Conv2d of ``model`` in place for a gated layer.

    Each weight is regenerated from ``(config.seed, qualified name)``. Layers for
    which ``filter_fn(name, module)`` is false keep frozen weights but no gate; so
    does the classifier under neuron granularity (its units are the classes).
    """
    swaps = [(n, m) for n, m in model.named_modules() if type(m) in (nn.Linear, nn.Conv2d)]
    for i, (name, module) in enumerate(swaps):
        last = i == len(swaps) - 1
        # a neuron gate on the classifier would delete a class: it stays ungated
        gated = (i > 0 or config.gates.gate_first) and not (
            last and (not config.gates.gate_last or config.gates.granularity == "neuron"))
        if filter_fn is not None:
            gated = gated and filter_fn(name, module)
        kw = dict(name=name, seed=config.seed, init=config.model.init, gain=config.model.gain,
                  gates_cfg=config.gates, gated=gated)
        cls = GatedLinear if isinstance(module, nn.Linear) else GatedConv2d
        new = cls.from_dense(module, **kw)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
    return model
