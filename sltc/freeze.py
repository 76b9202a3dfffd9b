"""The freezer: trained gates -> one deterministic binary mask per layer.

Rule: a weight is kept when its deterministic gate exceeds ``gates.threshold``
(CRBG: ``clamp(mu, 0, 1)``; hard concrete: the stretched sigmoid; edge-popup:
its top-k). Where that misses a target sparsity, the freezer instead keeps the
highest-ranked gates until exactly ``round(density * n)`` weights survive, per
layer or over all gated layers together; ties go to the lower flat index.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from .format.records import sparsity_of
from .layers import BATCH_NORMS, _Gated, gated_layers

SCOPES = ("layer", "global")
FREEZE_TOLERANCE = 0.01  # a run's ticket meets its gates.target_sparsity within this


def threshold_masks(model, threshold: float) -> dict[str, torch.Tensor]:
    """Weight-shaped boolean masks from the threshold rule."""
    return {
        layer.name: layer.weight_mask(None if layer.gate is None else layer.gate.frozen(threshold))
        for layer in gated_layers(model)
    }


def _keep_top(ranks: np.ndarray, weights: np.ndarray, keep: int) -> np.ndarray:
    """Boolean over gates: highest ranks first while they cover at most ``keep`` weights."""
    order = np.lexsort((np.arange(len(ranks)), -ranks))
    covered = np.cumsum(weights[order])
    chosen = np.zeros(len(ranks), dtype=bool)
    chosen[order[: int(np.searchsorted(covered, keep, side="right"))]] = True
    return chosen


def topk_masks(model, target_sparsity: float, scope: str = "layer",
               layer_sparsity: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    """Masks keeping the top-ranked gates to reach ``target_sparsity`` exactly (per layer,
    a layer named in ``layer_sparsity`` reaches its own)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    layers = [m for m in gated_layers(model) if m.gate is not None]
    masks = threshold_masks(model, 0.5)  # ungated layers: all ones
    groups = [[m] for m in layers] if scope == "layer" else [layers]
    for group in groups:
        ranks = np.concatenate([m.gate.rank().cpu().double().numpy().ravel() for m in group])
        per_gate = np.concatenate(
            [np.full(m.gate.rank().numel(), m.weights_per_gate) for m in group])
        own = (layer_sparsity or {}).get(group[0].name) if scope == "layer" else None
        keep = round((1.0 - (target_sparsity if own is None else own)) * int(per_gate.sum()))
        chosen = _keep_top(ranks, per_gate, keep)
        start = 0
        for m in group:
            n = m.gate.rank().numel()
            gate_mask = torch.from_numpy(chosen[start : start + n].reshape(m.gate.shape))
            masks[m.name] = m.weight_mask(gate_mask)
            start += n
    return masks


def sparsity(model, masks: dict[str, torch.Tensor]) -> float:
    """Pruned fraction of the weights of gated layers."""
    layers = [m for m in gated_layers(model) if m.gate is not None]
    total = sum(m.numel for m in layers)
    kept = sum(int(masks[m.name].sum()) for m in layers)
    return sparsity_of(kept, total)


def default_scope(gates) -> str:
    """The freeze rule's top-k scope when none is named, for ``discover`` and ``sltc
    freeze`` alike: the run's ``gates.scope``, else per layer for edge-popup (its training
    keeps each layer's top-k) and one global top-k over every gate for the gate methods
    (their gates compete across layers)."""
    if gates.scope is not None:
        return gates.scope
    return "layer" if gates.method == "edge_popup" else "global"


def freeze_rule(gates, target_sparsity: float | None = None,
                scope: str | None = None) -> tuple[float | None, str, float]:
    """The target sparsity, scope and tolerance a run's gates freeze by, for ``discover``
    and ``sltc freeze`` alike: with no target named, the run's own (``gates.target_sparsity``
    within ``FREEZE_TOLERANCE``); a named one exactly. The scope: ``scope``, else the
    run's default (``default_scope``)."""
    scope = scope or default_scope(gates)
    if target_sparsity is None:
        return gates.target_sparsity, scope, FREEZE_TOLERANCE
    return target_sparsity, scope, 0.0


def freeze(model, threshold: float, target_sparsity: float | None = None,
           scope: str = "layer", tolerance: float = 0.0,
           layer_sparsity: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    """The ticket's masks: the threshold rule, or top-k where it misses the target.

    The threshold mask is kept when its sparsity lies in ``[target, target + tolerance]``:
    a ticket is never denser than asked for, and never sparser by more than the tolerance.
    ``layer_sparsity`` (per layer scope: edge-popup's own per-layer targets) replaces the
    target of the layers it names, and the overall target becomes their weighted mean.
    """
    masks = threshold_masks(model, threshold)
    if target_sparsity is not None:
        overall = target_sparsity
        if layer_sparsity and scope == "layer":
            layers = [m for m in gated_layers(model) if m.gate is not None]
            overall = sum(layer_sparsity.get(m.name, target_sparsity) * m.numel
                          for m in layers) / sum(m.numel for m in layers)
        s = sparsity(model, masks)
        if s < overall or s > overall + tolerance:
            masks = topk_masks(model, target_sparsity, scope, layer_sparsity)
    return masks


def batch_norms(model) -> list[nn.Module]:
    """The BatchNorm layers whose running statistics a ticket stores."""
    return [m for m in model.modules()
            if isinstance(m, BATCH_NORMS) and m.track_running_stats]


@torch.no_grad()
def recalibrate(model, batches, images: int, on_batch=lambda n: None) -> None:
    """BatchNorm running statistics recomputed for the network as it runs now (a ticket's
    binary masks): passes over the first ``images`` of ``batches`` with the BatchNorm
    layers in train mode and everything else in eval mode (no dropout), cumulative average
    (``momentum=None``), no gradient. The statistics a run records were gathered under
    noisy relaxed gates and do not fit the binary mask."""
    norms = batch_norms(model)
    if not norms or images <= 0:
        return
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    seen = 0
    for x, _ in batches:
        used = min(len(x), images - seen)
        if used < 2:  # a batch of one has no variance
            break
        model(x[:used])
        seen += used
        on_batch(used)
        if seen >= images:
            break
    model.eval()
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum


@contextlib.contextmanager
def as_ticket(model, masks: dict[str, torch.Tensor], batches, images: int,
              on_batch=lambda n: None) -> Iterator[None]:
    """Inside, ``model`` is the ticket: ``masks`` in place of its gates and its BatchNorm
    statistics recalibrated on ``images`` images of ``batches``; on exit the gates and the
    training statistics come back."""
    saved = [(b, b.clone()) for m in batch_norms(model) for b in m.buffers(recurse=False)]
    try:
        with frozen_masks(model, masks):
            recalibrate(model, batches, images, on_batch)
            yield
    finally:
        for buffer, value in saved:  # what recalibrate changed
            buffer.copy_(value)


@contextlib.contextmanager
def frozen_masks(model, masks: dict[str, torch.Tensor]) -> Iterator[None]:
    """Run ``model`` with binary masks in place of its gates."""
    layers: list[_Gated] = gated_layers(model)
    try:
        for m in layers:
            m.fixed_mask = masks[m.name].to(m.weight.device, m.weight.dtype)
        yield
    finally:
        for m in layers:
            m.fixed_mask = None
