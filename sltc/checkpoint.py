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


def save_checkpoint(path: Path, model, optimizer, state: dict) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, slots in opt["state"].items():
        for key, value in slots.items():
            tensors[f"optim.{idx}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    meta = {"state": json.dumps(state), "param_groups": json.dumps(opt["param_groups"])}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_checkpoint(path: Path, model, optimizer=None) -> dict:
    """Restore ``model`` (and ``optimizer``) in place; returns the saved state dict."""
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        state = json.loads(meta["state"])
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        raise TrainingError(f"{path}: unreadable checkpoint ({e}); start a new run") from None
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(model_state)
    except RuntimeError:
        raise TrainingError(f"{path}: checkpoint does not match the model in config.yaml") from None
    if optimizer is not None:
        slots: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, idx, name = key.split(".", 2)
                slots.setdefault(int(idx), {})[name] = value
        groups = json.loads(meta["param_groups"])
        optimizer.load_state_dict({"state": slots, "param_groups": groups})
    return state
