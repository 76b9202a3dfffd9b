"""The gate-training engine: train gates over frozen random weights, then freeze.

``discover(config, out_dir)`` leaves a run directory with ``config.yaml``,
``metrics.jsonl``, ``checkpoint.safetensors``, ``ticket.slt`` and ``summary.json``.
Each epoch reseeds the data order and the gate noise from ``(seed, epoch)``, so a
run resumed from its last checkpoint ends with the same mask as one never stopped.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import budget, distributed, rundir
from .checkpoint import load_checkpoint, save_checkpoint
from .config_yaml import load_config
from .controller import LAMBDA_RANGE, Controller, mean_lambda
from .data import load_dataset
from .distributed import World
from .evaluate import accuracy, resolve_device
from .format.config_record import THRESHOLD_START
from .format.errors import BatchError, ConfigError, NetworkError, NonFiniteLoss, SltcError, TrainingError
from .format.limits import number_in
from .format.outputs import CHECKPOINT, CONFIG, METRICS, SUMMARY, TICKET, atomic_write_json
from .format.records import sparsity_of
from .format.seeding import random_words
from .freeze import (
    FREEZE_TOLERANCE,
    as_ticket,
    batch_norms,
    freeze,
    freeze_rule,
    sparsity,
    threshold_masks,
)
from .layers import STATISTICS, gated_layers
from .loaders import Data, data_for
from .models import build_model, user_module
from .progress import QUIET, Progress
from .rebuild import ticket_from_model
from .usercode import check_first_batch, users_code

log = logging.getLogger(__name__)
WARN_GAP = 0.02  # warn when freezing moves the sparsity or costs accuracy by more than this
EXPLODED = 10.0  # warn when a step's task loss exceeds this many times its early mean
EARLY_STEPS = 20


def expected_kept(layers) -> torch.Tensor:
    """The expected number of the weights of ``layers`` kept (sum of P(z > 0))."""
    return sum(m.gate.expected_open().sum() * m.weights_per_gate for m in layers)


def _epoch_seed(seed: int, epoch: int) -> int:
    w = random_words(seed, f"train/noise/epoch{epoch}", 2).astype(np.uint64)
    return int(w[0] | (w[1] << np.uint64(32))) & (2**63 - 1)


def _make_optimizer(config, model):
    params = [p for p in model.parameters() if p.requires_grad]
    t = config.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)


def base_lr(train, total: int) -> float:
    """``train.lr``, raised in a run of ``total`` steps to ``train.budget_lr / sqrt(total)``
    where that is larger."""
    if train.budget_lr is None:
        return train.lr
    return max(train.lr, train.budget_lr / math.sqrt(total))


def _lr(config, step: int, total: int) -> float:
    lr = base_lr(config.train, total)
    if config.train.schedule == "constant":
        return lr
    return lr * 0.5 * (1.0 + math.cos(math.pi * step / total))


def check_threads(threads: int | None) -> None:
    """``train.threads`` within the CPUs this process may use: more only wait on each other
    (on two cores, 4,096 threads took 15.6 s for two steps of examples/synthetic.yaml, the
    default 0.27 s for its 32), and where the system will not start them OpenMP ends the
    process."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        os.cpu_count() or 1
    if threads is not None and threads > usable:
        raise ConfigError(f"train.threads {threads} is more than the {usable} CPUs this process "
                          f"may use; set at most {usable}, or null for torch's default")


class Trainer:
    """One run: its gated model, data, optimizer and the lambda controller (one rank's view
    of it under torchrun)."""

    def __init__(self, config, model, data: Data, device: torch.device, world: World = World(),
                 user_module: str | None = None):
        self.config, self.data, self.device, self.world = config, data, device, world
        self.user_module = user_module  # the network is the user's: what it raises is theirs
        if not any(m.gate is not None for m in gated_layers(model)):
            raise NetworkError("the network has no nn.Linear or nn.Conv2d layer that sltc gates "
                               "(a lone classifier stays ungated at neuron granularity, and "
                               "gates.gate_first and gates.gate_last may leave layers out); "
                               "add one, or change those settings")
        t = config.train
        check_threads(t.threads)
        convs = any(len(m.weight_shape) == 4 for m in gated_layers(model))
        self.channels_last = t.channels_last if t.channels_last is not None else (
            device.type == "cuda" and convs)
        self.model = model.to(device, memory_format=torch.channels_last) \
            if self.channels_last else model.to(device)
        self.bf16 = t.precision == "bf16" or (t.precision == "auto" and device.type == "cuda")
        self.forward = torch.compile(self.model) if t.compile else self.model
        self.optimizer = _make_optimizer(config, self.model)
        self.progress: Progress = QUIET
        self.warnings: dict[str, str] = {}  # kind -> message, each said once
        self.early_losses: list[float] = []
        self.gated = [m for m in gated_layers(self.model) if m.gate is not None]  # per step
        self.uses_l0 = any(m.gate.uses_l0 for m in self.gated)
        g = config.gates
        self.projected = self.uses_l0 and g.budget == "projection" and \
            g.target_sparsity is not None
        l0_layers = [m for m in self.gated if m.gate.uses_l0]
        self.budget_groups = [[m] for m in l0_layers] if g.scope == "layer" else [l0_layers]
        self.l0_total = sum(m.numel for m in l0_layers)
        self.controllers = [Controller(g, m[0].name if len(m) == 1 else "")
                            for m in self.budget_groups]
        self.last_frozen: list[torch.Tensor] | None = None  # the search statistics' reference
        self.natural_sparsity = float("nan")  # the threshold rule's before the hold, last step
        self.held_steps, self.held_shift = 0, 0.0  # this epoch: steps the hold moved the gates
        self.path: dict = {}  # this epoch: the sparsity after the run's first step, at the deadline
        self.gate_clock = GateClock(self.gated, enabled=not t.compile)

    @classmethod
    def from_config(cls, config, device: torch.device, world: World = World()) -> Trainer:
        """The run a config describes: its dataset and the registry's (or a factory's)
        network; a factory's network is checked against the first batch."""
        dataset = load_dataset(config.data, config.seed)
        config, model = build_model(config, dataset.input_shape, dataset.classes, dataset.mean,
                                    dataset.std)
        module = user_module(config.model.arch)
        trainer = cls(config, model, data_for(config, dataset, device, world), device, world,
                      module)
        if module is not None:
            check_first_batch(trainer.model, *next(iter(trainer.data.train)), module)
        return trainer

    @functools.cached_property
    def steps_per_epoch(self) -> int:
        """The loader's length, or for a user's loader without one, its batches counted in
        one pass (progress without a total); at most ``train.max_steps``."""
        cap = self.config.train.max_steps or 10**12
        try:
            return min(len(self.data.train), cap)
        except TypeError:
            with self.progress.task("counting the training batches") as task:
                return self.data.train.count(cap, task.advance)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.train.epochs

    @property
    def lam(self) -> float:
        """The L0 term's weight (the groups' geometric mean under ``gates.scope: layer``)."""
        return mean_lambda(self.controllers)

    @staticmethod
    def _sparsity(layers, threshold: float) -> float:
        kept = sum(m.gate.open_count(threshold) * m.weights_per_gate for m in layers)
        return sparsity_of(int(kept), sum(m.numel for m in layers))

    def current_sparsity(self) -> float:
        """The threshold rule's sparsity, counted on the gates (cheap enough for every step)."""
        return self._sparsity(self.gated, self.config.gates.threshold)

    def _control(self, current: float, step: int) -> None:
        """Each group's controller towards the (ramped) ``gates.target_sparsity``
        (``sltc.controller``); ``current``: the sparsity over all groups."""
        g = self.config.gates
        if g.target_sparsity is None or not self.uses_l0 or g.lambda_ == 0 or self.projected:
            return
        target = g.ramped((step + 1) / self.total_steps)
        for c, group in zip(self.controllers, self.budget_groups, strict=True):
            here = current if len(self.controllers) == 1 else \
                self._sparsity(group, g.threshold)
            c.update(here, target, self.total_steps)
            where = f" in layer {c.name}" if c.name else ""
            if c.at_bound > 0:
                self.warn("lambda_high", f"lambda reached its upper bound {LAMBDA_RANGE[1]:g} at "
                          f"step {step + 1}{where}: the L0 term pushes as hard as it can and "
                          f"the sparsity is still {here:.3f} against a target of {target:.3f}; "
                          "try more epochs, a larger train.lr or a lower "
                          "gates.target_sparsity")
            elif c.at_bound < 0:
                self.warn("lambda_low", f"lambda reached its lower bound {LAMBDA_RANGE[0]:g} at "
                          f"step {step + 1}{where}: the gates close even without the L0 term "
                          f"(sparsity {here:.3f}, target {target:.3f}); try a lower train.lr "
                          "or a higher gates.mu_init")

    def warn(self, kind: str, message: str) -> None:
        """Say ``message`` once per run (rank 0) and keep it for the summary."""
        if kind not in self.warnings:
            self.warnings[kind] = message
            if self.world.main:
                log.warning("warning: %s", message)

    def _watch_loss(self, task_loss: float, where: str) -> None:
        """Warn when the task loss explodes, before it reaches the NaN stop."""
        if len(self.early_losses) < EARLY_STEPS:
            self.early_losses.append(task_loss)
            return
        early = float(np.mean(self.early_losses))
        if task_loss > EXPLODED * early:
            self.warn("loss", f"the task loss jumped to {task_loss:.3g} at {where}, "
                      f"{task_loss / early:.0f}x its early mean {early:.3g}: training is "
                      "diverging; try a lower train.lr or gates.lambda")

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(task + lambda * L0, L0, task): the network under bf16 autocast where asked, the
        gates' L0 term and the losses in float32. Under ``gates.scope: layer`` each layer's
        part of the L0 term has its own lambda."""
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else \
            contextlib.nullcontext()
        with amp:
            logits = self.forward(x)
        try:
            task = F.cross_entropy(logits.float(), y)
        except IndexError:  # a label past the outputs, in a later batch of a user's loader
            raise BatchError(f"a label runs to {int(y.max())} but the network gives "
                             f"{logits.shape[1]} outputs; labels are class indices in "
                             f"[0, {logits.shape[1]})") from None
        if not self.uses_l0:
            return task, torch.zeros((), device=x.device), task
        parts = [expected_kept(group) / self.l0_total for group in self.budget_groups]
        l0 = sum(parts)  # the expected density of all gated weights
        if self.projected:  # the budget replaces the penalty: l0 is only reported
            return task, l0.detach(), task
        return task + sum(c.lam * part for c, part in zip(self.controllers, parts,
                                                            strict=True)), l0, task

    def users_code(self, what: str):
        """``usercode.users_code`` for a user's network; sltc's own run as they are."""
        if self.user_module is None:
            return contextlib.nullcontext()
        return users_code(f"the network ({self.user_module}) {what}")

    def _step(self, x: torch.Tensor, y: torch.Tensor, where: str) -> tuple[float, float, float]:
        """One optimiser step: (loss, L0 term, task loss). Under torchrun, each rank's loss
        weighted by its share of the global batch and the gate gradients summed over the
        ranks."""
        with self.users_code(f"at {where}"):
            loss, l0, task = self._loss(x, y)
        world = self.world
        if world.size > 1:
            counts = torch.tensor([float(len(y)), float(not torch.isfinite(loss))])
            world.sum_([counts])
            if counts[1] > 0:
                loss = torch.tensor(float("nan"))
            else:
                share = len(y) / counts[0].item()
                loss, task = loss * share, task * share
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"loss became {loss.item()} at {where}; start again with a "
                                "lower train.lr or gates.lambda")
        self.optimizer.zero_grad(set_to_none=True)
        with self.users_code(f"in the backward pass at {where}"):
            loss.backward()
        if world.size > 1:
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            flat = torch.cat([g.reshape(-1) for g in grads])  # one all-reduce for them all
            stats = torch.stack([v.detach().float().cpu() for v in (loss, l0, task)])
            world.sum_([flat, stats])
            for g, reduced in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
                g.copy_(reduced.view_as(g))
            return stats[0].item(), stats[1].item() / world.size, stats[2].item()
        return loss.item(), l0.item(), task.item()

    def _after_step(self, step: int) -> float:
        """The gates' own work after the optimiser's step: their ranges, the budget, the
        controller (on the sparsity the gates reached themselves, ``natural_sparsity``),
        and past ``gates.deadline`` the hold. Returns the threshold rule's sparsity."""
        for layer in self.gated:
            layer.gate.project()
        g = self.config.gates
        progress = (step + 1) / self.total_steps
        if self.projected:
            budget.project(self.budget_groups, 1.0 - g.ramped(progress))
        current = self.natural_sparsity = self.current_sparsity()
        self._control(current, step)
        if step == 0:
            self.path["first_sparsity"] = current
        if self.holds(progress) and not self.holds(step / self.total_steps):
            self.path.update(deadline_sparsity=current, deadline_step=step + 1)
        if self.holds(progress):
            target = g.ramped(progress)
            shifts = [budget.hold(group, 1.0 - target, g.threshold)
                      for group in self.budget_groups]
            if any(shifts):
                self.held_steps += 1
                self.held_shift += max(abs(c) for c in shifts)
                current = self.current_sparsity()
        return current

    def holds(self, progress: float) -> bool:
        """Whether the threshold rule is held on the target at ``progress`` (the fraction of
        the run done): past ``gates.deadline``, for gate methods with a target."""
        g = self.config.gates
        return self.uses_l0 and g.target_sparsity is not None and g.lambda_ != 0 and \
            progress > g.deadline

    def frozen_gates(self) -> list[torch.Tensor]:
        """Every gated layer's threshold-rule mask, gate-shaped."""
        return [m.gate.frozen(self.config.gates.threshold) for m in self.gated]

    def search_stats(self) -> dict:
        """Whether the run still searches: ``flip_rate``, the fraction of gated weights whose
        threshold-rule mask changed since the last call (the run's start, for the first);
        ``live_fraction``, the fraction whose gate still learns (``Gate.live``)."""
        frozen = self.frozen_gates()
        total = sum(m.numel for m in self.gated)
        flips = sum(int(torch.count_nonzero(a != b)) * m.weights_per_gate
                    for a, b, m in zip(frozen, self.last_frozen or frozen, self.gated,
                                       strict=True))
        live = sum(int(torch.count_nonzero(m.gate.live())) * m.weights_per_gate
                   for m in self.gated)
        self.last_frozen = frozen
        return {"flip_rate": flips / total, "live_fraction": live / total}

    def train_epoch(self, epoch: int, on_step=lambda **stats: None) -> dict:
        """One epoch; ``on_step(images=..., loss=..., ...)`` after every step."""
        self.model.train()
        torch.manual_seed(_epoch_seed(self.config.seed, epoch))  # the same gate noise on every rank
        if self.last_frozen is None:
            self.last_frozen = self.frozen_gates()
        self.gate_clock.reset()
        self.held_steps, self.held_shift, self.path = 0, 0.0, {}
        totals = np.zeros(4)
        batches = self.data.train.epoch(self.config.seed, epoch, self.world)
        for i, (x, y) in zip(range(self.steps_per_epoch), batches, strict=False):
            step = epoch * self.steps_per_epoch + i
            for group in self.optimizer.param_groups:
                group["lr"] = _lr(self.config, step, self.total_steps)
            for layer in self.gated:
                layer.gate.at(step / self.total_steps)
            where = f"epoch {epoch + 1}, step {i + 1}"
            loss, l0, task = self._step(x, y, where)
            self._watch_loss(task, where)
            self.optimizer.step()
            with self.gate_clock.timed():
                current = self._after_step(step)
            totals += (loss, l0, task, 1)
            on_step(images=len(y) * self.world.size, loss=totals[0] / totals[3],
                    sparsity=current, **{"lambda": self.lam})
        self.world.broadcast_([b for n, b in self.model.named_buffers() if n.endswith(STATISTICS)])
        return {"train_loss": totals[0] / totals[3], "task_loss": totals[2] / totals[3],
                "l0": totals[1] / totals[3], **self.search_stats(),
                "gate_seconds": self.gate_clock.seconds,
                "natural_sparsity": self.natural_sparsity, "held_steps": self.held_steps,
                "held_shift": self.held_shift, **self.path}

    @contextlib.contextmanager
    def as_ticket(self, masks):
        """The model as the ticket of ``masks`` would run (see ``freeze.as_ticket``)."""
        images = self.config.gates.recalibrate if batch_norms(self.model) else 0
        progress = self.progress if images else QUIET
        with progress.task("BatchNorm statistics", -(-images // self.config.data.batch_size)) \
                as task:
            ticket = as_ticket(self.model, masks, self.data.train, images,
                               lambda n: task.advance(images=n))
            with self.users_code("recomputing the BatchNorm statistics"):
                ticket.__enter__()
        try:
            yield
        finally:
            ticket.__exit__(None, None, None)

    def accuracy(self, batches, what: str) -> float:
        """``evaluate.accuracy`` with progress."""
        try:
            total = len(batches)
        except TypeError:  # a user's loader over an iterable dataset has no length
            total = None
        with self.progress.task(what, total) as task, self.users_code(f"on the {what}"):
            return accuracy(self.model, batches, lambda n: task.advance(images=n))

    def evaluate_val(self) -> dict:
        masks = threshold_masks(self.model, self.config.gates.threshold)
        relaxed = self.accuracy(self.data.val, "validation, relaxed gates")
        with self.as_ticket(masks):
            frozen = self.accuracy(self.data.val, "validation, frozen ticket")
        return {"sparsity": sparsity(self.model, masks), "relaxed_accuracy": relaxed,
                "frozen_accuracy": frozen}


def controller_state(controllers: list[Controller]) -> dict:
    """The controllers in a checkpoint's state: the first group's lambda and integral as
    numbers (what checkpoints always held), every group's in lists where there are more."""
    state = {"lambda": controllers[0].lam, "log_integral": controllers[0].log_integral}
    if len(controllers) > 1:
        state.update(lambdas=[c.lam for c in controllers],
                     log_integrals=[c.log_integral for c in controllers])
    return state


def restore_controllers(controllers: list[Controller], state: dict) -> None:
    lambdas = state.get("lambdas", [state["lambda"]])
    integrals = state.get("log_integrals", [state["log_integral"]])
    if not all(isinstance(v, list) and len(v) == len(controllers) and all(map(number_in, v))
               for v in (lambdas, integrals)):
        raise TrainingError("the checkpoint's lambda controllers do not match the run's "
                            "gates.scope; start a new run")
    for c, lam, integral in zip(controllers, lambdas, integrals, strict=True):
        c.lam, c.log_integral = float(lam), float(integral)


class GateClock:
    """Seconds a run spends on its gates since ``reset``: their forward passes (sampling,
    or edge-popup's top-k), timed by hooks (off under ``torch.compile``), and the work
    after each optimiser step (``timed``). Host time: on CUDA, where kernels run
    asynchronously, it counts launches, not kernels."""

    def __init__(self, gated, enabled: bool = True):
        self.seconds, self._started = 0.0, 0.0
        for m in gated if enabled else []:
            m.gate.register_forward_pre_hook(self._start)
            m.gate.register_forward_hook(self._stop)

    def reset(self) -> None:
        self.seconds = 0.0

    def _start(self, *_):
        self._started = time.perf_counter()

    def _stop(self, *_):
        self.seconds += time.perf_counter() - self._started

    @contextlib.contextmanager
    def timed(self):
        self._start()
        try:
            yield
        finally:
            self._stop()


def discover(config, out_dir: str | Path, *, resume: bool = False, device: str = "auto",
             progress: bool = True) -> dict | None:
    """Train the gates, freeze them to a ticket and evaluate it; returns the summary (None
    on torchrun's ranks other than 0)."""
    world = distributed.init(device)
    try:  # the config the run records holds its recipe: the run is built before it is claimed
        trainer = Trainer.from_config(config, resolve_device(device, world), world)
        with rundir.claim(Path(out_dir), trainer.config, resume, world.main):
            return run(trainer, Path(out_dir), resume=resume, progress=progress)
    finally:
        distributed.close(world)


def run(trainer: Trainer, out: Path, *, resume: bool = False,
        progress: bool = True) -> dict | None:
    """The training loop of a prepared run, then the ticket: what ``discover`` and the
    Python API share. Rank 0 writes the run directory and returns the summary; other
    torchrun ranks train alongside and return None. Call it inside ``rundir.claim(out, ...)``."""
    config, world = trainer.config, trainer.world
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    trainer.progress = Progress(progress and world.main)
    start, rows = 0, []
    if resume:  # checked before the run's files are touched
        state = load_checkpoint(out / CHECKPOINT, trainer.model, config,
                                trainer.optimizer)
        start = state["epoch"]
        restore_controllers(trainer.controllers, state)
    if world.main:  # the epochs so far read (the last check), then the config (a resumed
        metrics = out / METRICS  # run's larger train.epochs too) and those epochs
        rows = [r for r in rundir.read_metrics(metrics) if r["epoch"] <= start]
        rundir.write_config(out / CONFIG, config)
        rundir.write_metrics(metrics, rows)
    world.barrier()
    epochs = config.train.epochs
    for epoch in range(start, epochs):
        with trainer.progress.task(f"epoch {epoch + 1}/{epochs}", trainer.steps_per_epoch,
                                   "step", keep=True) as task:
            tic = time.perf_counter()
            row = {"epoch": epoch + 1, **trainer.train_epoch(epoch, task.advance)}
            seconds = time.perf_counter() - tic
        if world.main:
            _end_epoch(trainer, out, row, seconds, rows)
        world.barrier()
    summary = finish(trainer, out, rows) if world.main else None
    world.barrier()
    return summary


def _validates(config, epoch: int) -> bool:
    """Whether epoch ``epoch`` (1-based) ends with validation: every ``train.eval_every``
    epochs, and the last."""
    return epoch % config.train.eval_every == 0 or epoch == config.train.epochs


def _end_epoch(trainer: Trainer, out: Path, row: dict, seconds: float, rows: list) -> None:
    """Validation (where due), the metrics line and the checkpoint (rank 0)."""
    if _validates(trainer.config, row["epoch"]):
        row.update(trainer.evaluate_val())
        scores = "no validation split (find_ticket's val=, or data.val_size)" \
            if math.isnan(row["frozen_accuracy"]) else \
            f"validation accuracy {row['frozen_accuracy']:.4f} frozen, " \
            f"{row['relaxed_accuracy']:.4f} relaxed"
        trainer.progress.say(f"epoch {row['epoch']}: {scores}; sparsity {row['sparsity']:.4f}")
    row.update({"lambda": trainer.lam, "seconds": seconds})
    rows.append(row)
    rundir.append_metrics(out / METRICS, _json_safe(row))
    save_checkpoint(out / CHECKPOINT, trainer.model, trainer.config,
                    trainer.optimizer,
                    {"epoch": row["epoch"], **controller_state(trainer.controllers)})


def freeze_run(trainer: Trainer, target_sparsity: float | None = None, scope: str | None = None,
               relaxed_val: float | None = None):
    """Freeze the run's gates by ``freeze_rule`` and evaluate the ticket.

    Returns the ticket and its scores: ``relaxed_accuracy`` (deterministic gates, test set),
    ``relaxed_val_accuracy`` and ``val_accuracy`` (the gates and the ticket on the
    validation split); the ticket's test accuracy is in its meta. ``relaxed_val``: the
    gates' validation accuracy where the last epoch already measured it.
    """
    model, config, data = trainer.model, trainer.config, trainer.data
    g = config.gates
    masks = freeze(model, g.threshold, *freeze_rule(g, target_sparsity, scope),
                   g.layer_sparsity)
    relaxed = trainer.accuracy(data.test, "test set, relaxed gates")
    if relaxed_val is None:
        relaxed_val = trainer.accuracy(data.val, "validation, relaxed gates")
    with trainer.as_ticket(masks):  # the ticket stores the recalibrated statistics
        test_acc = trainer.accuracy(data.test, "test set, frozen ticket")
        val_acc = trainer.accuracy(data.val, "validation, frozen ticket")
        with trainer.users_code("exported to ONNX for the ticket's skeleton"):
            ticket = ticket_from_model(model, masks, config, data, test_acc)
    return ticket, {"relaxed_accuracy": relaxed, "relaxed_val_accuracy": relaxed_val,
                    "val_accuracy": val_acc}


def _denser_fix(gates) -> str:
    """What brings a run that ended denser than its target down to it: the threshold start
    where the run started dense (README, CRBG's start), else a harder push."""
    push = "a larger gates.lambda or more epochs"
    if gates is not None and gates.method != "edge_popup" and \
            (gates.mu_init, gates.lambda_) != THRESHOLD_START:
        mu, lam = THRESHOLD_START
        return (f"at short budgets the threshold start comes down sooner: --set "
                f"gates.mu_init={mu} --set gates.lambda={lam}; or {push}")
    return f"try {push}, or a larger train.lr"


def enough_steps(first: float, reached: float, steps: int, target: float) -> int | None:
    """About how many steps the gates need to come from sparsity ``first`` (after the first
    step) to ``target`` by themselves, at the pace at which they came to ``reached`` in
    ``steps``: the log-density error falling at the same rate. None where it did not fall."""
    def error(s):
        return math.log(max(1.0 - s, 1e-6) / max(1.0 - target, 1e-6))

    fallen = error(first) - error(reached)
    return math.ceil(steps * error(first) / fallen) if fallen > 0 else None


def _held_for_good(summary: dict) -> bool:
    """Whether the hold did what the gates would not have done by the end of the run: at
    the deadline they were past the target by more than ``WARN_GAP``, or short of it by
    more than the pace they kept would have made up in the steps left."""
    at, target = summary.get("deadline_sparsity"), summary["target_sparsity"]
    if at is None or abs(at - target) <= WARN_GAP:
        return False
    if at > target:
        return True
    need = enough_steps(summary["first_sparsity"], at, summary["deadline_step"], target)
    return need is None or need > summary["total_steps"]


def _held_message(summary: dict) -> str:
    """What the hold did, and the budget that would have spared it."""
    target, at = summary["target_sparsity"], summary["deadline_sparsity"]
    steps, total = summary["deadline_step"], summary["total_steps"]
    head = (f"the gates had come to sparsity {at:.3f} by themselves when {steps / total:.0%} of "
            f"the run was done (target {target}); sltc held the threshold rule on the target "
            "from there, so the run ended training the ticket's mask")
    if at > target:
        return f"{head}; they went past the target: try a smaller gates.lambda or train.lr"
    need = enough_steps(summary["first_sparsity"], at, steps, target)
    if need is None:
        return f"{head}; they did not come down by themselves: try a larger gates.lambda"
    budget = math.ceil(need / (steps / total))
    epochs = math.ceil(budget / summary["steps_per_epoch"])
    return (f"{head}; at their pace, about {budget:,} steps ({epochs} epoch"
            f"{'s' * (epochs != 1)} here) would let them get there by themselves in time")


def freeze_warnings(summary: dict, gates=None) -> dict[str, str]:
    """When the ticket is worse than the training looked: the freezer had to move the
    sparsity far from where the gates' threshold rule put it, the ticket misses its target,
    or it scores well below the relaxed gates on the validation split. Kind -> message;
    ``gates``: the run's gates config, for the fix of a run that ended too dense."""
    found = {}
    target, s = summary["target_sparsity"], summary["sparsity"]
    threshold_s = summary["threshold_sparsity"]
    if target is not None and _held_for_good(summary):
        found["held"] = _held_message(summary)
    if target is not None and abs(threshold_s - s) > WARN_GAP:
        denser = threshold_s < s
        fix = _denser_fix(gates) if denser else "try a smaller gates.lambda or train.lr"
        found["freeze_moved"] = (
            f"training ended {'denser' if denser else 'sparser'} than the target: the "
            f"threshold rule gives sparsity {threshold_s:.3f}, and the freezer forced "
            f"{s:.3f} by keeping the top-ranked gates; {fix}")
    if target is not None and not target - 1e-4 <= s <= target + FREEZE_TOLERANCE + 1e-4:
        why = (": at neuron granularity one unit holds many weights, and a ticket is never "
               "denser than asked" if summary["granularity"] == "neuron" else "")
        found["freeze_missed"] = (f"the ticket's sparsity {s:.4f} misses the target "
                                  f"[{target}, {target + FREEZE_TOLERANCE:.2f}]{why}")
    relaxed, frozen = summary["relaxed_val_accuracy"], summary["val_accuracy"]
    if relaxed is not None and frozen is not None and relaxed - frozen > WARN_GAP:
        found["freeze_accuracy"] = (
            f"the frozen ticket scores {frozen:.4f} on the validation split, "
            f"{100 * (relaxed - frozen):.1f} points below the relaxed gates' {relaxed:.4f}: "
            "the gates had not settled to 0 or 1; try more epochs, a larger gates.sharpen, "
            "a lower gates.target_sparsity or a different gates.lambda")
    return found


def finish(trainer: Trainer, out: Path, rows: list[dict]) -> dict:
    """Freeze the gates, write the ticket, evaluate it on the test set, write the summary."""
    config, model = trainer.config, trainer.model
    g = config.gates
    last = rows[-1].get("relaxed_accuracy") if rows else None  # the same gates, measured
    ticket, scores = freeze_run(trainer, relaxed_val=last)
    ticket.save(out / TICKET)
    model_meta = ticket.model_meta()
    s = model_meta.sparsity
    summary = _json_safe({
        "test_accuracy": model_meta.test_accuracy,
        "relaxed_accuracy": scores["relaxed_accuracy"],  # the gates on the test split
        "sparsity": s,
        "density": 1.0 - s,
        "threshold_sparsity": sparsity(model, threshold_masks(model, g.threshold)),
        "val_accuracy": scores["val_accuracy"],  # the ticket on the validation split
        "relaxed_val_accuracy": scores["relaxed_val_accuracy"],
        "epochs": len(rows),
        "seconds_per_epoch": float(np.mean([r["seconds"] for r in rows])) if rows else None,
        "train_seconds": float(sum(r["seconds"] for r in rows)),
        "gate_seconds": float(sum(r.get("gate_seconds", 0.0) for r in rows)),
        "method": g.method,
        "recipe": config.recipe.chosen,
        "granularity": g.granularity,
        "arch": config.model.arch,
        "seed": config.seed,
        "target_sparsity": g.target_sparsity,
        "ticket": str(out / TICKET),
        "ticket_bytes": (out / TICKET).stat().st_size,
        "device": str(trainer.device),
        "threads": torch.get_num_threads(),
    })
    summary.update(_path(rows), total_steps=trainer.total_steps,
                   steps_per_epoch=trainer.steps_per_epoch)
    for kind, message in freeze_warnings(summary, g).items():
        trainer.warn(kind, message)
    summary["warnings"] = list(trainer.warnings.values())
    atomic_write_json(out / SUMMARY, summary)
    return summary


def _path(rows: list[dict]) -> dict:
    """The run's way to the target from its epochs' records: the threshold rule's sparsity
    after the first step, and where the hold last began (its step and the sparsity the
    gates had reached by themselves), None where it never did."""
    first = next((r["first_sparsity"] for r in rows if "first_sparsity" in r), None)
    held = next((r for r in reversed(rows) if "deadline_sparsity" in r), {})
    return {"first_sparsity": first, "deadline_sparsity": held.get("deadline_sparsity"),
            "deadline_step": held.get("deadline_step"),
            "held_steps": sum(r.get("held_steps", 0) for r in rows)}


def _json_safe(row: dict) -> dict:
    """NaN (an accuracy over no examples: a run without validation data) as null."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


def load_run(run_dir: str | Path, device: str = "auto") -> Trainer:
    """A finished or interrupted run, restored from its directory."""
    run = Path(run_dir)
    if not (run / CHECKPOINT).exists():
        raise SltcError(f"{run}: no checkpoint.safetensors; pass a directory made by discover")
    config = load_config(run / CONFIG)
    trainer = Trainer.from_config(config, resolve_device(device))
    load_checkpoint(run / CHECKPOINT, trainer.model, config)
    return trainer
