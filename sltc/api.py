"""``sltc.find_ticket``: a ticket for a user's own ``nn.Module`` and torch ``DataLoader``s.

The same run as ``sltc discover`` (same config object, controller, freezer and run
directory), with the network and the data given in Python instead of by name.
"""

from __future__ import annotations

import sys
from pathlib import Path

from torch import nn

from . import config as config_mod
from .discover import Trainer, run
from .evaluate import resolve_device
from .format.errors import ConfigError
from .format.outputs import TICKET
from .format.ticket import Ticket
from .layers import gate
from .loaders import Data, LoaderBatches
from .models import check_size, with_recipe
from .rundir import claim
from .usercode import check_first_batch, first_batch


def _config(config) -> config_mod.RunConfig:
    if config is None:
        config = config_mod.from_dict({}, "find_ticket")
    elif isinstance(config, dict):
        config = config_mod.from_dict(config, "find_ticket")
    elif not isinstance(config, config_mod.RunConfig):
        raise ConfigError("config: pass a dict, an sltc.config.RunConfig or None")
    config_mod.check_applicable(config, "find_ticket")
    return config


def _recorded(config, model) -> config_mod.RunConfig:
    """The config the ticket records: the network's class as ``python:module:Class`` (a
    record of how it was built: the ticket's graph is what runs) and ``data.name: loaders``
    (the data came from Python)."""
    arch = config.model.arch
    if not arch.startswith("python:"):
        kind = type(model)
        arch = f"python:{_module_name(kind.__module__)}:{kind.__qualname__}"
    data = config.data.model_copy(update={"name": "loaders"})
    return config.model_copy(update={"model": config.model.model_copy(update={"arch": arch}),
                                     "data": data})


def _module_name(module: str) -> str:
    """``__main__`` as the importable name of the script that runs, where it lies below the
    working directory (``examples/custom_model.py`` -> ``examples.custom_model``)."""
    path = getattr(sys.modules.get(module), "__file__", None)
    if module != "__main__" or path is None:
        return module
    try:
        relative = Path(path).resolve().relative_to(Path.cwd())
    except ValueError:
        return module
    return ".".join(relative.with_suffix("").parts)


def find_ticket(model: nn.Module, train, test, config=None, *, val=None,
                out: str | Path = "runs/latest", device: str = "auto",
                progress: bool = True) -> tuple[dict, Ticket]:
    """Gate ``model`` in place, train its gates on ``train``, freeze a ticket, score it on
    ``test``; ``val`` (optional) is scored every epoch. Loaders yield ``(x, y)``: float
    inputs as the model takes them (uint8 images are scaled to [0, 1]) and class indices;
    any iterable that can be read again works (a ``DataLoader``, a list, an object whose
    ``__iter__`` yields batches), one without ``len()`` counted once per run.
    Writes ``out`` as ``sltc discover`` does; returns the summary and the ticket.

    Before the first step the first batch of each loader and the network are checked
    together: anything that does not fit is one ``sltc.BatchError`` (a ``ValueError``)
    saying what was expected and what was found. A network sltc cannot gate (nn.LSTM,
    nn.MultiheadAttention, no nn.Linear or nn.Conv2d) is an ``sltc.NetworkError``; a bad
    ``config`` a ``ConfigError``; all three are ``sltc.SltcError``.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model: expected an nn.Module, got {type(model).__name__}")
    config = _config(config)
    dev = resolve_device(device)
    recorded = _recorded(config, model)
    module = type(model).__module__
    check_size(model, recorded.model.arch)
    with claim(Path(out), recorded, resume=False):  # before the model is touched
        x, y = first_batch(train, "train")
        for name, loader in (("val", val), ("test", test)):
            if loader is not None:
                first_batch(loader, name, like=x)
        train_batches = LoaderBatches(train, dev, config.data.augment)
        recorded = with_recipe(recorded, model, x.shape[1:], module)  # their network's family
        gate(model, recorded).to(dev)
        first, labels = next(iter(LoaderBatches([(x, y)], dev)))
        classes = check_first_batch(model, first, labels, module)
        data = Data(train_batches, LoaderBatches(val if val is not None else [], dev),
                    LoaderBatches(test, dev), tuple(first.shape[1:]), classes, 0.0, 1.0)
        trainer = Trainer(recorded, model, data, dev, user_module=module)
        summary = run(trainer, Path(out), progress=progress)
    return summary, Ticket.load(Path(out) / TICKET)
