"""Gate families: pure gate maths plus small modules that hold gate parameters.

Each family answers five questions about its gates:
``forward()`` the (sampled, in training) gate values; ``expected_open()`` the
differentiable probability that each gate is non-zero; ``rank()`` a score whose
order says which gates matter most; ``frozen(threshold)`` the binary mask; ``live()``
which gates still learn (their parameter gets task gradient on more than
``LIVE_PROBABILITY`` of the steps).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .format.seeding import uniform01
from .registry import Registry

GATES: Registry[type[Gate]] = Registry("gate method")

# Hard-concrete constants (Louizos et al. 2018).
HC_GAMMA, HC_ZETA, HC_BETA = -0.1, 1.1, 2.0 / 3.0
# A gate is live when its parameter gets task gradient on more than this fraction of steps.
LIVE_PROBABILITY = 0.01


# --- pure functions -------------------------------------------------------------------------


class _NoisyClamp(torch.autograd.Function):
    """clamp(mu + sigma * eps, 0, 1) in the noise's own buffer (one pass for the sum); the
    gradient passes where 0 <= z <= 1."""

    @staticmethod
    def forward(ctx, mu, sigma):
        z = torch.randn_like(mu)
        torch.add(mu, z, alpha=sigma, out=z)
        ctx.save_for_backward((z >= 0) & (z <= 1))
        return z.clamp_(0.0, 1.0)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None


class _NoisyClampThrough(torch.autograd.Function):
    """clamp(mu + sigma * eps, 0, 1) whose gradient reaches mu wherever the sample lands
    (straight-through the clamp: ``crbg_st``, not CRBG)."""

    @staticmethod
    def forward(ctx, mu, sigma):
        z = torch.randn_like(mu)
        return torch.add(mu, z, alpha=sigma, out=z).clamp_(0.0, 1.0)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def crbg_sample(mu: torch.Tensor, sigma: float, through: bool = False) -> torch.Tensor:
    """z = clamp(mu + sigma * eps, 0, 1), eps ~ N(0, 1): no straight-through (``through``:
    the gradient passes the clamp everywhere)."""
    op = _NoisyClampThrough if through else _NoisyClamp
    return op.apply(mu, float(sigma))


def normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return torch.special.ndtr(x)


class _ExpectedOpen(torch.autograd.Function):
    """Phi(mu / sigma) with its gradient written out, phi(mu / sigma) / sigma: one pass each
    way instead of autograd's five through ``erf``, whose backward also multiplies by the
    broadcast gradient of a sum element by element."""

    @staticmethod
    def forward(ctx, mu, sigma):
        ctx.save_for_backward(mu)
        ctx.sigma = sigma
        return torch.special.ndtr(mu / sigma)

    @staticmethod
    def backward(ctx, grad):
        (mu,) = ctx.saved_tensors
        s = ctx.sigma
        density = torch.mul(mu, mu).mul_(-0.5 / (s * s)).exp_().mul_(1.0 / (s * math.sqrt(2 * math.pi)))
        if grad.dim() and not any(grad.stride()):  # the broadcast gradient of a sum: a scalar
            grad = grad.as_strided((), ())
        return density.mul_(grad), None


def crbg_expected_open(mu: torch.Tensor, sigma: float) -> torch.Tensor:
    """P(z > 0) = Phi(mu / sigma), the expected L0 of each gate."""
    return _ExpectedOpen.apply(mu, sigma)


def crbg_inside(mu: torch.Tensor, sigma: float) -> torch.Tensor:
    """P(0 < mu + sigma * eps < 1): how often the clamp passes a gate's task gradient."""
    return normal_cdf((1.0 - mu) / sigma) - normal_cdf(-mu / sigma)


def hard_concrete_sample(log_alpha: torch.Tensor) -> torch.Tensor:
    u = torch.rand_like(log_alpha).clamp(1e-6, 1 - 1e-6)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / HC_BETA)
    return torch.clamp(s * (HC_ZETA - HC_GAMMA) + HC_GAMMA, 0.0, 1.0)


def hard_concrete_expected_open(log_alpha: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(log_alpha - HC_BETA * math.log(-HC_GAMMA / HC_ZETA))


def hard_concrete_inside(log_alpha: torch.Tensor) -> torch.Tensor:
    """P(0 < z < 1): the stretched sample lies inside when s is in (-gamma, 1 - gamma) / (zeta
    - gamma), i.e. when the logistic noise lies within a window set by log_alpha."""
    span = HC_ZETA - HC_GAMMA
    low, high = (HC_BETA * math.log(s / (1.0 - s)) for s in (-HC_GAMMA / span, (1 - HC_GAMMA) / span))
    return torch.sigmoid(high - log_alpha) - torch.sigmoid(low - log_alpha)


def hard_concrete_deterministic(log_alpha: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.sigmoid(log_alpha) * (HC_ZETA - HC_GAMMA) + HC_GAMMA, 0.0, 1.0)


def topk_mask(scores: torch.Tensor, density: float) -> torch.Tensor:
    """1 for the ``ceil(density * n)`` largest scores, via ``kthvalue`` (no full sort)."""
    flat = scores.detach().flatten()
    keep = min(flat.numel(), max(1, math.ceil(density * flat.numel())))
    if keep == flat.numel():
        return torch.ones_like(scores)
    threshold = torch.kthvalue(flat, flat.numel() - keep).values
    return (scores > threshold).to(scores.dtype)


def straight_through_topk(scores: torch.Tensor, density: float) -> torch.Tensor:
    """edge-popup: binary top-k forward, identity gradient to the scores."""
    return topk_mask(scores, density) + scores - scores.detach()


# --- modules --------------------------------------------------------------------------------


class Gate(nn.Module):
    """Base class: one gate per entry of ``shape``; ``weight`` entries per gate."""

    def __init__(self, shape: tuple[int, ...], cfg, seed: int, name: str, fan_in: int):
        super().__init__()
        self.shape = shape
        self.cfg = cfg
        self.seed, self.name = seed, name

    def _uniform(self, low: float, high: float) -> torch.Tensor:
        n = math.prod(self.shape)
        u = uniform01(self.seed, f"{self.name}#gate", n).reshape(self.shape)
        return torch.from_numpy((low + (high - low) * u).astype(np.float32))

    def expected_open(self) -> torch.Tensor:
        raise NotImplementedError

    def at(self, progress: float) -> None:
        """Told the fraction of the run done before each training step; most gates ignore it."""

    def project(self) -> None:
        """Called after every optimiser step: bring the parameters back into their range."""

    def open_count(self, threshold: float) -> torch.Tensor:
        """How many gates the threshold rule keeps (a 0-d tensor)."""
        return torch.count_nonzero(self.frozen(threshold))

    def live(self) -> torch.Tensor:
        """Boolean per gate: its parameter gets task gradient on more than
        ``LIVE_PROBABILITY`` of the steps."""
        return torch.ones(self.shape, dtype=torch.bool, device=self.rank().device)

    def shift_(self, c: float) -> None:
        """Add ``c`` to the gate parameters (the density budget's projection)."""
        raise NotImplementedError

    def expected_open_at(self, c: float) -> torch.Tensor:
        """``expected_open()`` with the parameters shifted by ``c``, without gradient."""
        raise NotImplementedError

    def rank(self) -> torch.Tensor:
        raise NotImplementedError

    def opening(self, threshold: float) -> float:
        """The value of ``rank()`` above which the threshold rule keeps a gate (what
        ``budget.hold`` shifts the parameters against)."""
        raise NotImplementedError

    def frozen(self, threshold: float) -> torch.Tensor:
        raise NotImplementedError


@GATES.register("crbg")
class CRBGate(Gate):
    """Continuously relaxed Bernoulli gate (Tsayag & Lindenbaum 2026), STG-style."""

    uses_l0 = True

    def __init__(self, shape, cfg, seed, name, fan_in):
        super().__init__(shape, cfg, seed, name, fan_in)
        self.mu = nn.Parameter(torch.full(shape, float(cfg.mu_init)))
        self.noise = cfg.sigma  # the samples' std (``gates.sigma_final`` anneals it)
        self.stretch = 1.0  # the mean's stretch about the threshold (``gates.sharpen``)

    def at(self, progress: float) -> None:
        cfg = self.cfg
        if cfg.sigma_final is not None:
            self.noise = cfg.sigma + (cfg.sigma_final - cfg.sigma) * progress
        if cfg.sharpen is not None and progress > cfg.deadline:
            self.stretch = 1.0 + (cfg.sharpen - 1.0) * (progress - cfg.deadline) / \
                (1.0 - cfg.deadline)

    def mean(self) -> torch.Tensor:
        """The samples' mean: ``mu``, stretched about the threshold once ``gates.sharpen``
        applies, so that every gate but those near the threshold is 0 or 1."""
        if self.stretch == 1.0:
            return self.mu
        t = self.cfg.threshold
        return (self.mu - t) * self.stretch + t

    @torch.no_grad()
    def project(self) -> None:
        if self.cfg.mu_margin is not None:
            self.mu.clamp_(-self.cfg.mu_margin, 1.0 + self.cfg.mu_margin)

    through = False  # the gradient stops where the clamp does: no straight-through

    def forward(self) -> torch.Tensor:
        if self.training:
            return crbg_sample(self.mean(), self.noise, self.through)
        return torch.clamp(self.mean(), 0.0, 1.0)

    def expected_open(self) -> torch.Tensor:
        p = crbg_expected_open(self.mu, self.cfg.sigma)
        if self.cfg.spare_dead:  # closed gates the noise no longer opens keep their mu
            return torch.where(self._dead(), p.detach(), p)
        return p

    def _dead(self) -> torch.Tensor:
        return (self.mu.detach() < 0) & ~self.live()

    def live(self) -> torch.Tensor:
        if self.through:
            return super().live()
        return crbg_inside(self.mean().detach(), self.noise) > LIVE_PROBABILITY

    @torch.no_grad()
    def shift_(self, c: float) -> None:
        self.mu.add_(c)

    @torch.no_grad()
    def expected_open_at(self, c: float) -> torch.Tensor:
        return crbg_expected_open(self.mu + c, self.cfg.sigma)

    def open_count(self, threshold: float) -> torch.Tensor:
        return torch.count_nonzero(self.mu.detach() > threshold)

    def rank(self) -> torch.Tensor:
        return self.mu.detach()

    def opening(self, threshold: float) -> float:
        return threshold  # clamp(mu, 0, 1) > threshold in [0, 1): mu > threshold

    def frozen(self, threshold: float) -> torch.Tensor:
        return torch.clamp(self.mu.detach(), 0.0, 1.0) > threshold


@GATES.register("crbg_st")
class CRBGateThrough(CRBGate):
    """CRBG's gate and L0 term with a straight-through gradient across the clamp: every
    ``mu`` learns on every step, as edge-popup's scores do. A separate method, not CRBG."""

    through = True


@GATES.register("hard_concrete")
class HardConcreteGate(Gate):
    """L0 hard-concrete gate (Louizos, Welling, Kingma 2018); drop rate 0.5 at init."""

    uses_l0 = True

    def __init__(self, shape, cfg, seed, name, fan_in):
        super().__init__(shape, cfg, seed, name, fan_in)
        self.log_alpha = nn.Parameter(self._uniform(-0.01, 0.01))

    def forward(self) -> torch.Tensor:
        if self.training:
            return hard_concrete_sample(self.log_alpha)
        return hard_concrete_deterministic(self.log_alpha)

    def expected_open(self) -> torch.Tensor:
        return hard_concrete_expected_open(self.log_alpha)

    def rank(self) -> torch.Tensor:
        return self.log_alpha.detach()

    def opening(self, threshold: float) -> float:
        s = (threshold - HC_GAMMA) / (HC_ZETA - HC_GAMMA)  # sigmoid(log_alpha) above this
        return math.log(s / (1.0 - s))

    def frozen(self, threshold: float) -> torch.Tensor:
        return hard_concrete_deterministic(self.log_alpha.detach()) > threshold

    def live(self) -> torch.Tensor:
        return hard_concrete_inside(self.log_alpha.detach()) > LIVE_PROBABILITY

    @torch.no_grad()
    def shift_(self, c: float) -> None:
        self.log_alpha.add_(c)

    @torch.no_grad()
    def expected_open_at(self, c: float) -> torch.Tensor:
        return hard_concrete_expected_open(self.log_alpha + c)


@GATES.register("edge_popup")
class EdgePopupGate(Gate):
    """edge-popup (Ramanujan et al. 2020): top-k |scores| per layer, straight-through."""

    uses_l0 = False

    def __init__(self, shape, cfg, seed, name, fan_in):
        super().__init__(shape, cfg, seed, name, fan_in)
        bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt(5)) bound
        self.scores = nn.Parameter(self._uniform(-bound, bound))
        self.density = 1.0 - cfg.layer_sparsity.get(name, cfg.target_sparsity)

    def forward(self) -> torch.Tensor:
        return straight_through_topk(self.scores.abs(), self.density)

    def expected_open(self) -> torch.Tensor:
        return topk_mask(self.scores.abs(), self.density)

    def rank(self) -> torch.Tensor:
        return self.scores.detach().abs()

    def frozen(self, threshold: float) -> torch.Tensor:
        return topk_mask(self.scores.detach().abs(), self.density) > 0
