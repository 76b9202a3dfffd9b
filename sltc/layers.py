"""Gated layers over frozen weights regenerated from ``(seed, layer name)``.

``gate(model, config)`` swaps every ``nn.Linear`` / ``nn.Conv2d`` for its gated twin
and sets every other tensor of the model by one rule (``tensor_rule``), so that
nothing in a ticket depends on torch's RNG or on the order modules were created.
Weights and biases are non-persistent buffers: a checkpoint holds gates and
normalisation statistics only. ``to_dense`` bakes a mask back into a plain layer.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .format.errors import ConfigError, NetworkError
from .format.seeding import NORMAL_STD, generate_normal, generate_weight
from .gates import GATES, Gate

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
               nn.LazyBatchNorm1d, nn.LazyBatchNorm2d, nn.LazyBatchNorm3d)
RUNNING_NORMS = (*BATCH_NORMS, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
                 nn.LazyInstanceNorm1d, nn.LazyInstanceNorm2d, nn.LazyInstanceNorm3d)
NORMS = (*RUNNING_NORMS, nn.LayerNorm, nn.GroupNorm)
STATISTICS = ("running_mean", "running_var")
# a module's class attribute: its parameters drawn from ``(seed, qualified name)`` (sltc's
# own transformers' position embeddings); every other parameter keeps its built value
DRAWN = "drawn_by_name"


class _Gated(nn.Module):
    """Shared body of ``GatedLinear`` and ``GatedConv2d``."""

    def _setup(self, bias: bool, name: str, seed: int, init: str, gain: float, gates_cfg,
               gated: bool):
        self.name, self.seed, self.init, self.gain = name, seed, init, gain
        shape = tuple(self.weight_shape)
        w = generate_weight(seed, name, shape, init, self.fan_in, gain)
        self.register_buffer("weight", torch.from_numpy(w), persistent=False)
        # a bias starts at zero and stays there: it is a constant of the ticket
        self.register_buffer("bias", torch.zeros(shape[0]) if bias else None, persistent=False)
        self.granularity = gates_cfg.granularity if gated else None
        self.gate: Gate | None = None
        # set by `frozen_masks` for evaluation; a buffer, so that it moves with the module
        self.register_buffer("fixed_mask", None, persistent=False)
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
        """What the runtime needs to regenerate this weight (a ticket's layer entry)."""
        return {
            "name": self.name,
            "shape": list(self.weight_shape),
            "fan_in": self.fan_in,
            "init": self.init,
            "gain": self.gain,
            "granularity": self.granularity,
        }

    def _plain(self, plain: nn.Module, mask: torch.Tensor) -> nn.Module:
        plain.weight.data.copy_(self.weight * mask.to(self.weight.device))
        if self.bias is not None:
            plain.bias.data.copy_(self.bias)
        return plain.to(self.weight.device)


class GatedLinear(_Gated):
    def __init__(self, in_features, out_features, bias=False, *, name, seed, init, gain,
                 gates_cfg, gated):
        super().__init__()
        self.weight_shape = (out_features, in_features)
        self._setup(bias, name, seed, init, gain, gates_cfg, gated)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)

    @classmethod
    def from_dense(cls, layer: nn.Linear, **kw) -> GatedLinear:
        return cls(layer.in_features, layer.out_features, layer.bias is not None, **kw)

    def to_dense(self, mask: torch.Tensor) -> nn.Linear:
        out_features, in_features = self.weight_shape
        return self._plain(nn.Linear(in_features, out_features, bias=self.bias is not None), mask)


def _pair(value) -> tuple[int, int]:
    """A convolution's size argument as (height, width): one int for both, or two."""
    return (value, value) if isinstance(value, int) else tuple(value)


class GatedConv2d(_Gated):
    """Any ``nn.Conv2d`` with zero padding: stride, padding, dilation and groups kept."""

    def __init__(self, c_in, c_out, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=False, *, name, seed, init, gain, gates_cfg, gated):
        super().__init__()
        kh, kw = _pair(kernel_size)
        self.weight_shape = (c_out, c_in // groups, kh, kw)
        self.conv = dict(stride=_pair(stride), dilation=_pair(dilation), groups=groups,
                         padding=padding if isinstance(padding, str) else _pair(padding))
        self.c_in = c_in
        self._setup(bias, name, seed, init, gain, gates_cfg, gated)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.effective_weight(), self.bias, **self.conv)

    @classmethod
    def from_dense(cls, layer: nn.Conv2d, **kw) -> GatedConv2d:
        if layer.padding_mode != "zeros":
            raise ConfigError(f"layer {kw['name']}: padding_mode {layer.padding_mode!r} is not "
                              "supported; use padding_mode='zeros'")
        return cls(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                   layer.padding, layer.dilation, layer.groups, layer.bias is not None, **kw)

    def to_dense(self, mask: torch.Tensor) -> nn.Conv2d:
        c_out, _, kh, kw = self.weight_shape
        plain = nn.Conv2d(self.c_in, c_out, (kh, kw), bias=self.bias is not None, **self.conv)
        return self._plain(plain, mask)


def gated_layers(model: nn.Module) -> list[_Gated]:
    return [m for m in model.modules() if isinstance(m, _Gated)]


# --- the tensor rule -------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorRule:
    """How one tensor of a gated model gets its value.

    ``kind``: ``weight`` (a layer weight regenerated from ``(seed, layer)``, masked when
    gated), ``constant`` (``value`` everywhere: biases 0, norm scales 1, shifts 0),
    ``normal`` (a parameter its module lists in ``DRAWN``: drawn from the portable
    generator by its qualified ``name``, std ``NORMAL_STD``), ``statistic`` (a
    normalisation buffer learned during the run: stored) or ``fixed`` (any other parameter
    or buffer: the value the network was built with, a user's layer scale or a constant of
    the architecture, stored as it is).
    """

    name: str
    kind: str
    value: float | None = None


def tensor_rule(model: nn.Module) -> Iterator[tuple[TensorRule, torch.Tensor]]:
    """Every tensor of ``model`` outside the gates, with the rule that sets it."""
    for prefix, module in model.named_modules():
        if isinstance(module, Gate):
            continue
        dot = f"{prefix}." if prefix else ""
        for name, param in module.named_parameters(recurse=False):
            if isinstance(module, NORMS):
                yield TensorRule(dot + name, "constant", 1.0 if name == "weight" else 0.0), param
            elif name in getattr(module, DRAWN, ()):
                yield TensorRule(dot + name, "normal"), param
            else:
                yield TensorRule(dot + name, "fixed"), param
        for name, buf in module.named_buffers(recurse=False):
            if buf is None:
                continue
            if isinstance(module, _Gated):
                kind, value = ("weight", None) if name == "weight" else ("constant", 0.0)
                yield TensorRule(dot + name, kind, value), buf
            elif isinstance(module, NORMS) and name in STATISTICS:
                yield TensorRule(dot + name, "statistic"), buf
            else:
                yield TensorRule(dot + name, "fixed"), buf


def _apply_rule(model: nn.Module, seed: int) -> None:
    """Set every non-weight tensor by ``tensor_rule`` and freeze it."""
    with torch.no_grad():
        for rule, tensor in tensor_rule(model):
            if rule.kind == "constant":
                tensor.fill_(rule.value)
            elif rule.kind == "normal":
                values = generate_normal(seed, rule.name, tuple(tensor.shape), NORMAL_STD)
                tensor.copy_(torch.from_numpy(values))
            if isinstance(tensor, nn.Parameter):
                tensor.requires_grad_(False)
        for module in model.modules():
            if isinstance(module, RUNNING_NORMS):
                module.reset_running_stats()


UNGATEABLE = (  # layers whose weights sltc would leave ungated: each refused, and why
    (nn.MultiheadAttention, "reads its projection weights directly, so they cannot be gated; "
                            "write the attention with nn.Linear layers"),
    ((nn.RNNBase, nn.RNNCellBase), "holds its weights outside nn.Linear, so they cannot be "
                                   "gated and would train ungated; write the recurrence with "
                                   "nn.Linear layers (a step of an LSTM is two of them) or use "
                                   "convolutions"),
    ((nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d),
     "cannot be gated (sltc gates nn.Conv2d); write it with nn.Conv2d (a 1-D convolution is "
     "one over a height-1 image; upsample, then convolve)"),
    ((nn.Bilinear, nn.Embedding, nn.EmbeddingBag), "cannot be gated (sltc gates nn.Linear and "
                                                   "nn.Conv2d); write it with nn.Linear"),
)


def gate(
    model: nn.Module,
    config,
    filter_fn: Callable[[str, nn.Module], bool] | None = None,
) -> nn.Module:
    """Swap every Linear/Conv2d of ``model`` in place for a gated layer; freeze the rest.

    Each weight is regenerated from ``(config.seed, qualified name)``. Layers for
    which ``filter_fn(name, module)`` is false keep frozen weights but no gate; so
    does the classifier under neuron granularity (its units are the classes).
    Every other tensor is set by ``tensor_rule`` and frozen. A layer that holds weights
    sltc cannot gate (``UNGATEABLE``: attention, recurrent, other convolutions) is a
    ``NetworkError``, never trained ungated.
    """
    for name, module in model.named_modules():
        for kinds, why in UNGATEABLE:
            if isinstance(module, kinds):
                raise NetworkError(f"{name or 'the network'}: nn.{type(module).__name__} {why}")
    swaps = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    _check_layer_names(config.gates.layer_sparsity, [n for n, _ in swaps])
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
    _apply_rule(model, config.seed)
    return model


def _check_layer_names(layer_sparsity: dict[str, float], names: list[str]) -> None:
    """``gates.layer_sparsity`` names layers of this network (a typo would train the layer
    at the overall target, silently)."""
    unknown = sorted(set(layer_sparsity) - set(names))
    if unknown:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise ConfigError(f"gates.layer_sparsity names {', '.join(map(repr, unknown[:3]))}, not "
                          f"a layer of this network; name one of its layers: {shown}")


def to_plain(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of a gated ``model`` with plain layers holding the masked weights."""
    plain = copy.deepcopy(model)
    for layer in gated_layers(plain):
        parent_name, _, child = layer.name.rpartition(".")
        parent = plain.get_submodule(parent_name) if parent_name else plain
        setattr(parent, child, layer.to_dense(masks[layer.name]))
    return plain
