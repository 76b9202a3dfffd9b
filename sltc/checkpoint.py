"""Checkpoints in safetensors: gate parameters, BN statistics, optimizer state.

No pickle anywhere. Frozen weights are not stored: they come from the seed.
Scalars (epoch, lambda, optimizer hyperparameters) go in the JSON metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .errors import TrainingError
from .io import atomic_write
from .limits import MAX_CHECKPOINT_BYTES, number_in, regular_size


def save_checkpoint(path: Path, model, optimizer, state: dict) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, slots in opt["state"].items():
        for key, value in slots.items():
            tensors[f"optim.{idx}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    meta = {"state": json.dumps(state), "param_groups": json.dumps(opt["param_groups"])}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


STATE_KEYS = ("epoch", "lambda", "log_integral")


def load_checkpoint(path: Path, model, optimizer=None) -> dict:
    """Restore ``model`` (and ``optimizer``) in place; returns the saved state dict. A file
    that does not hold exactly this model's tensors and a state of the right shapes is a
    ``TrainingError`` before anything is restored."""
    regular_size(path, MAX_CHECKPOINT_BYTES, "checkpoint", TrainingError)
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        state, groups = json.loads(meta["state"]), json.loads(meta["param_groups"])
    except (SafetensorError, OSError, KeyError, ValueError, RecursionError) as e:
        raise TrainingError(f"{path}: unreadable checkpoint ({e}); start a new run") from None
    if not isinstance(state, dict) or not all(number_in(state.get(k)) for k in STATE_KEYS) or \
            type(state["epoch"]) is not int or state["epoch"] < 0:
        raise TrainingError(f"{path}: the checkpoint's state lacks {', '.join(STATE_KEYS)}; "
                            "start a new run")
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(model_state)
    except RuntimeError:
        raise TrainingError(f"{path}: checkpoint does not match the model in config.yaml") from None
    if optimizer is not None:
        _load_optimizer(path, optimizer, tensors, groups)
    return state


def _load_optimizer(path: Path, optimizer, tensors: dict, groups) -> None:
    """The optimizer's slots, each checked against the shape of its parameter."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    slots: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            slots.setdefault(int(idx) if idx.isdigit() else -1, {})[name] = value
    for idx, slot in slots.items():
        if not 0 <= idx < len(params) or any(
                v.dim() and v.shape != params[idx].shape for v in slot.values()):
            raise TrainingError(f"{path}: the optimizer state does not match the model's gates; "
                                "start a new run")
    try:
        optimizer.load_state_dict({"state": slots, "param_groups": groups})
    except (ValueError, KeyError, TypeError) as e:
        raise TrainingError(f"{path}: the optimizer state does not load ({e}); start a new "
                            "run") from None
