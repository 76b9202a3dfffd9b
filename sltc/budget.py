"""The density budget: gate parameters shifted so that their expected density is at most a
target (``gates.budget: projection``, after ProbMask's projection onto its budget).

One shift ``c`` per group of layers (all gated layers, or each layer alone), the smallest
that brings ``sum_i w_i P_i(open | theta_i + c)`` down to ``density * sum_i w_i``; a group
already within its budget is left alone. The expected density is monotone in ``c``, so
the shift is found by regula falsi (Illinois) on a bracket, in a handful of passes.
"""

from __future__ import annotations

import torch

TOLERANCE = 1e-5  # relative error in the kept count
MAX_PASSES = 60


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
