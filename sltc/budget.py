"""The density budget: gate parameters shifted so that their expected density is at most a
target (``gates.budget: projection``, after ProbMask's projection onto its budget), and the
hold that keeps the threshold rule on the target from ``gates.deadline`` on (``hold``).

One shift ``c`` per group of layers (all gated layers, or each layer alone), the smallest
that brings ``sum_i w_i P_i(open | theta_i + c)`` down to ``density * sum_i w_i``; a group
already within its budget is left alone. The expected density is monotone in ``c``, so
the shift is found by regula falsi (Illinois) on a bracket, in a handful of passes.
"""

from __future__ import annotations

import torch

TOLERANCE = 1e-5  # relative error in the kept count
MAX_PASSES = 60
HOLD_TOLERANCE = 0.0025  # of a group's weights: how far the threshold rule may drift held


def expected_kept(layers, c: float) -> float:
    """The expected number of weights kept with every gate parameter shifted by ``c``."""
    return sum(float(m.gate.expected_open_at(c).sum(dtype=torch.float64)) * m.weights_per_gate
               for m in layers)


def shift_for(layers, density: float) -> float:
    """The shift (<= 0) that puts the group's expected density at ``density``."""
    budget = density * sum(m.numel for m in layers)
    excess = expected_kept(layers, 0.0) - budget
    if excess <= 0:
        return 0.0
    high, f_high = 0.0, excess
    low, f_low = -0.125, expected_kept(layers, -0.125) - budget
    while f_low > 0:  # widen the bracket downwards
        high, f_high = low, f_low
        low *= 2
        f_low = expected_kept(layers, low) - budget
    side = 0
    for _ in range(MAX_PASSES):
        c = (low * f_high - high * f_low) / (f_high - f_low)
        f = expected_kept(layers, c) - budget
        if abs(f) <= TOLERANCE * budget or high - low < 1e-9:
            return c
        if f > 0:
            high, f_high = c, f
            if side == 1:
                f_low /= 2
            side = 1
        else:
            low, f_low = c, f
            if side == -1:
                f_high /= 2
            side = -1
    return low  # the bracket's safe side: within the budget


def project(groups, density: float) -> None:
    """Shift each group's gates onto the budget ``density`` (a group within it stays)."""
    for layers in groups:
        c = shift_for(layers, density)
        if c:
            for m in layers:
                m.gate.shift_(c)


def kept(layers, threshold: float) -> int:
    """The weights of ``layers`` the threshold rule keeps."""
    return sum(int(m.gate.open_count(threshold)) * m.weights_per_gate for m in layers)


def hold(layers, density: float, threshold: float) -> float:
    """Shift every gate parameter of the group ``layers`` by one ``c`` so that the threshold
    rule keeps the ``density`` of its weights whose gates rank highest (within
    ``HOLD_TOLERANCE``: a group already there is left alone); returns ``c``."""
    total = sum(m.numel for m in layers)
    want = round(density * total)
    if abs(kept(layers, threshold) - want) <= HOLD_TOLERANCE * total:
        return 0.0
    # each gate's rank against its own opening: kept where positive
    ranks = torch.cat([(m.gate.rank() - m.gate.opening(threshold)).flatten() for m in layers])
    sizes = torch.cat([torch.full((m.gate.rank().numel(),), m.weights_per_gate,
                                  device=ranks.device) for m in layers])
    c = -_cut(ranks, sizes, want)
    for m in layers:
        m.gate.shift_(c)
    return c


def _cut(ranks: torch.Tensor, sizes: torch.Tensor, want: int) -> float:
    """A value between the ranks of the last gate kept and the first dropped, keeping the
    highest-ranked gates until they hold ``want`` weights."""
    if bool((sizes == 1).all()):  # a gate per weight: two order statistics, no sort
        n, k = ranks.numel(), min(max(want, 0), ranks.numel())
        if k in (0, n):
            return float(ranks.max() + 1.0) if k == 0 else float(ranks.min() - 1.0)
        last = torch.kthvalue(ranks, n - k + 1).values  # the k-th largest: kept
        first = torch.kthvalue(ranks, n - k).values  # the (k+1)-th largest: dropped
        return float(last + first) / 2.0
    order = torch.argsort(ranks, descending=True)
    k = int(torch.searchsorted(sizes[order].cumsum(0),  # never more than ``want`` weights
                               torch.tensor(want, device=ranks.device), right=True))
    if k >= order.numel():
        return float(ranks.min() - 1.0)
    if k == 0:
        return float(ranks.max() + 1.0)
    return float(ranks[order[k - 1]] + ranks[order[k]]) / 2.0
