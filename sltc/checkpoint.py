"""Checkpoints in safetensors: gate parameters, BN statistics, optimizer state.

No pickle anywhere. Frozen weights are not stored: they come from the seed.
Scalars (epoch, lambda, optimizer hyperparameters) go in the JSON metadata.
"""

from __future__ import annotations

import json
import reprlib
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .config import run_difference
from .format.errors import TrainingError
from .format.limits import MAX_CHECKPOINT_BYTES, number_in, regular_size
from .format.outputs import atomic_write
from .layers import gated_layers


def save_checkpoint(path: Path, model, config, optimizer, state: dict) -> None:
    """The run's gates, statistics and optimizer, with the config and layer table they
    belong to (``run``: read back by ``load_checkpoint`` to refuse another run's file)."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, slots in opt["state"].items():
        for key, value in slots.items():
            tensors[f"optim.{idx}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    meta = {"state": json.dumps(state), "param_groups": json.dumps(opt["param_groups"]),
            "run": json.dumps({"config": config.to_dict(), "layers": layer_table(model)})}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


STATE_KEYS = ("epoch", "lambda", "log_integral")


def layer_table(model) -> list[dict]:
    """The gated layers as a ticket lists them: name, shape, fan_in, init, gain, granularity."""
    return [m.spec() for m in gated_layers(model)]


def load_checkpoint(path: Path, model, config, optimizer=None) -> dict:
    """Restore ``model`` (and ``optimizer``) in place; returns the saved state dict. A file
    of another run (seed, config or layer table unlike ``config`` and ``model``'s), or one
    that does not hold exactly this model's tensors and a state of the right shapes, is a
    ``TrainingError`` before anything is restored."""
    regular_size(path, MAX_CHECKPOINT_BYTES, "checkpoint", TrainingError)
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        state, groups = json.loads(meta["state"]), json.loads(meta["param_groups"])
        run = json.loads(meta.get("run", "null"))  # null: written before sltc recorded it
    except (SafetensorError, OSError, KeyError, ValueError, RecursionError) as e:
        raise TrainingError(f"{path}: unreadable checkpoint ({e}); start a new run") from None
    if not isinstance(state, dict) or not all(number_in(state.get(k)) for k in STATE_KEYS) or \
            type(state["epoch"]) is not int or state["epoch"] < 0:
        raise TrainingError(f"{path}: the checkpoint's state lacks {', '.join(STATE_KEYS)}; "
                            "start a new run")
    if run is not None:
        _check_run(path, run, config.to_dict(), layer_table(model))
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(model_state)
    except RuntimeError:
        raise TrainingError(f"{path}: checkpoint does not match the model in config.yaml") from None
    if optimizer is not None:
        _load_optimizer(path, optimizer, tensors, groups)
    return state


def _check_run(path: Path, run, config: dict, layers: list[dict]) -> None:
    """The checkpoint's recorded seed, config and layer table against the run's."""
    saved = run.get("config") if isinstance(run, dict) else None
    saved_layers = run.get("layers") if isinstance(run, dict) else None
    if not isinstance(saved, dict) or not isinstance(saved_layers, list):
        raise TrainingError(f"{path}: the checkpoint's run record is damaged; start a new run")
    if saved.get("seed") != config["seed"]:
        found = f"it has seed {_short(saved.get('seed'))}, config.yaml {config['seed']}"
    elif (key := run_difference(saved, config)) is not None:
        found = (f"its {key} is {_short(_at(saved, key))}, config.yaml's "
                 f"{_short(_at(config, key))}")
    elif saved_layers != layers:
        theirs = {e.get("name") if isinstance(e, dict) else None: e for e in saved_layers}
        name = next((e["name"] for e in layers if theirs.get(e["name"]) != e),
                    next(iter(theirs), None))
        found = f"its layer {_short(name)} is not the one config.yaml's network builds"
    else:
        return
    raise TrainingError(f"{path}: the checkpoint belongs to another run ({found}); pass the "
                        "run directory it was written in, or start a new run")


def _at(config: dict, key: str):
    for part in key.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def _short(value) -> str:
    return reprlib.repr(value)


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
