"""The lambda controller: PI control of log(lambda) towards a target sparsity.

One controller steers the L0 term of one group of gated layers: all of them (the default,
``gates.scope: global``) or one layer (``gates.scope: layer``, every layer held to the
target as edge-popup's top-k holds it). The error is log(density / target density), so
a controller is as strong at 98% sparsity as at 90%. The integral term accumulates the
error; the proportional term lowers lambda as the sparsity nears the target, so that it
does not overshoot: gates pushed well below zero get no task gradient through the clamp
and hardly come back.
"""

from __future__ import annotations

import math

import numpy as np

LAMBDA_RANGE = (1e-4, 1e4)


class Controller:
    """lambda of one group; ``update`` after every step with the group's threshold-rule
    sparsity, the (ramped) target and the run's length in steps. ``at_bound``: -1 or 1 when
    lambda sits at the low or high end of ``LAMBDA_RANGE``, else 0."""

    def __init__(self, gates, name: str = ""):
        self.gates, self.name = gates, name
        self.lam = gates.lambda_
        self.log_integral = 0.0  # the integral term, in log(lambda)

    def update(self, current: float, target: float, total_steps: int) -> None:
        g = self.gates
        error = math.log(max(1.0 - current, 1e-6) / max(1.0 - target, 1e-6))  # too dense: > 0
        low, high = (math.log(v / g.lambda_) for v in LAMBDA_RANGE)
        self.log_integral = float(np.clip(
            self.log_integral + g.controller_gain / total_steps * error, low, high))
        self.lam = float(np.clip(g.lambda_ * math.exp(g.controller_kp * error + self.log_integral),
                                 *LAMBDA_RANGE))

    @property
    def at_bound(self) -> int:
        return 1 if self.lam >= LAMBDA_RANGE[1] else -1 if self.lam <= LAMBDA_RANGE[0] else 0


def mean_lambda(controllers: list[Controller]) -> float:
    """One number for the metrics: the geometric mean of the groups' lambdas."""
    return float(math.exp(sum(math.log(c.lam) for c in controllers) / len(controllers))) \
        if all(c.lam > 0 for c in controllers) else controllers[0].lam
