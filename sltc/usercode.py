"""A user's own code: their network's module, factory and forward, and the loaders they
hand to ``sltc.find_ticket``.

What their code raises is reported as theirs, in one line naming the module, the
exception and where it was raised (``NetworkError``), never as a bug in sltc. Their first
batch is checked against their network before the first step (``check_first_batch``,
``BatchError``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sysconfig
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path

import torch

from .format.errors import BatchError, NetworkError, SltcError

MESSAGE_CHARS = 300  # of the user's exception, in the one line
PROBE_IMAGES = 2  # images of the first batch the network runs on before training
_OURS = tuple(str(Path(f).parent) + os.sep for f in (torch.__file__, __file__))  # their packages
_LIBRARIES = tuple(p + os.sep for p in {sysconfig.get_path(k) for k in ("stdlib", "purelib",
                                                                        "platlib")} if p)


def described(e: BaseException) -> str:
    """``Type: message (file:line)``, one line: where is the innermost frame outside sltc,
    torch and Python's import machinery (the line of the user's code that raised)."""
    text = e.msg if isinstance(e, SyntaxError) and e.msg else str(e)
    text = " ".join(text.split(" Hint: ")[0].split())  # torch's hints run long
    text = text[:MESSAGE_CHARS] + ("..." if len(text) > MESSAGE_CHARS else "")
    place = _where(e)
    return f"{type(e).__name__}: {text}" + (f" ({place})" if place else "")


def _where(e: BaseException) -> str | None:
    if isinstance(e, SyntaxError) and e.filename:
        return f"{_shown(e.filename)}:{e.lineno}"
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if not f.filename.startswith(("<", *_OURS))]
    frames = [f for f in frames if not f.filename.startswith(_LIBRARIES)] or frames
    return f"{_shown(frames[-1].filename)}:{frames[-1].lineno}" if frames else None


def _shown(filename: str) -> str:
    try:
        return str(Path(filename).resolve().relative_to(Path.cwd()))
    except ValueError:
        return filename


@contextlib.contextmanager
def users_code(what: str, error: type[SltcError] = NetworkError, fix: str = ""):
    """Whatever the user's code raises inside (sltc's own errors and Ctrl-C aside), an
    ``Exception``, ``SystemExit`` or any other ``BaseException``, as one ``error`` line:
    ``what raised Type: message (file:line); fix``. A process their code forked does not
    go on past it: a child that comes back into sltc ends there, and a child left running
    is stopped (``_own_process``)."""
    with _own_process():
        try:
            yield
        except (SltcError, KeyboardInterrupt):
            raise
        except BaseException as e:  # noqa: BLE001 - whatever the user's code raises is theirs
            raise error(f"{what} raised {described(e)}" + (f"; {fix}" if fix else "")) \
                from None


@contextlib.contextmanager
def _own_process():
    """Around the user's code: a process it forked that returns here ends at once (it would
    go on running sltc beside this one), and one it left running is killed and reaped."""
    pid, before = os.getpid(), _children()
    try:
        yield
    finally:
        if os.getpid() != pid:
            os._exit(0)
        for child in _children() - before:
            with contextlib.suppress(OSError):
                os.kill(child, signal.SIGKILL)
                os.waitpid(child, 0)


def _children() -> set[int]:
    """The processes this thread has started and not yet reaped (Linux's /proc; none
    elsewhere)."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/children") as f:
            return {int(pid) for pid in f.read().split()}
    except OSError:
        return set()


def _shape(t) -> str:
    return " x ".join(map(str, t.shape))


def _kind(value) -> str:
    """What ``value`` is, as a message says it: ``a float32 tensor of shape 64 x 1``."""
    if isinstance(value, torch.Tensor):
        what = f"{str(value.dtype).removeprefix('torch.')} tensor of shape {_shape(value)}"
    elif isinstance(value, (tuple, list)):
        what = f"{type(value).__name__} of {len(value)}"
    else:
        what = type(value).__name__
    return f"{'an' if what[0] in 'aeio' else 'a'} {what}"


def first_batch(loader, name: str, like: torch.Tensor | None = None):
    """The first ``(x, y)`` of a user's loader, checked: a loader sltc can read once per
    epoch (not a one-shot iterator), pairs of tensors, ``x`` float or uint8 images of
    ``like``'s shape (the training batch's, for ``val`` and ``test``), ``y`` one integer
    label per image. Anything else is a ``BatchError`` saying what it got."""
    try:
        batches = iter(loader)
    except TypeError:
        raise BatchError(f"{name}: expected a DataLoader or another iterable of (x, y) "
                         f"batches, got {_kind(loader)}") from None
    if batches is loader:
        raise BatchError(f"{name}: {_kind(loader)} can be read only once, and sltc reads its "
                         "loaders again (every epoch, and to score the ticket); pass a "
                         "DataLoader, a list of batches, or an object whose __iter__ yields "
                         "them")
    with users_code(f"{name}: the loader", BatchError):
        batch = next(batches, None)
    if batch is None:
        raise BatchError(f"{name}: the loader yields no batch; pass one with data")
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise BatchError(f"{name}: expected (x, y) batches, got {_kind(batch)}")
    x, y = batch
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or not (
            x.is_floating_point() or x.dtype == torch.uint8) or len(x) == 0:
        raise BatchError(f"{name}: expected x as float or uint8 images of shape (N, ...), got "
                         f"{_kind(x)}")
    if like is not None and x.shape[1:] != like.shape[1:]:
        raise BatchError(f"{name}: the images are {_shape(x[0])} but the training images "
                         f"{_shape(like[0])}; give every loader the same image shape")
    if not isinstance(y, torch.Tensor) or y.dtype == torch.bool or y.is_floating_point() or \
            y.is_complex() or y.shape != x.shape[:1]:
        raise BatchError(f"{name}: expected y as one integer class index per image (shape "
                         f"{len(x)}), got {_kind(y)}")
    return x, y


def running(module: str, sample: torch.Tensor):
    """Around the user's network running on ``sample``: what it raises is a ``BatchError``."""
    return users_code(f"the network ({module}) on a batch of {_shape(sample)}", BatchError,
                      f"make its input fit images of {_shape(sample[0])}")


def check_first_batch(model, x: torch.Tensor, y: torch.Tensor, module: str) -> int:
    """The network against its first batch, before the first step: its forward and
    backward run on ``PROBE_IMAGES`` images (eval mode: no statistics change), it returns
    ``(N, classes)`` logits, and the batch's labels lie in ``[0, classes)``. Returns
    ``classes``; anything else is a ``BatchError`` naming the user's module."""
    sample = x[:PROBE_IMAGES]
    model.eval()
    with running(module, sample), _calls(model) as called:
        logits = model(sample)
    _check_called(called, module)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or \
            len(logits) != len(sample) or not logits.is_floating_point():
        raise BatchError(f"the network ({module}) returns {_kind(logits)} for a batch of "
                         f"{_shape(sample)}; return one float tensor of logits, "
                         f"{len(sample)} x classes, from forward")
    if logits.requires_grad:
        with users_code(f"the backward pass through the network ({module})", BatchError,
                        "write forward without in-place operations on the tensors autograd "
                        "keeps (y = y * 2, not y.mul_(2))"):
            logits.float().sum().backward()
    for p in model.parameters():
        p.grad = None
    classes = logits.shape[1]
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= classes:
        raise BatchError(f"the first batch's labels run from {low} to {high} but the network "
                         f"({module}) gives {classes} outputs; labels are class indices in "
                         f"[0, {classes})")
    return classes


@contextlib.contextmanager
def _calls(model) -> Iterator[dict]:
    """Inside, ``called`` maps each gated layer's name to whether forward has called it."""
    from .layers import gated_layers

    layers = gated_layers(model)
    called = dict.fromkeys((m.name for m in layers), False)
    hooks = [m.register_forward_pre_hook(lambda m, _: called.__setitem__(m.name, True))
             for m in layers]
    try:
        yield called
    finally:
        for hook in hooks:
            hook.remove()


def _check_called(called: dict, module: str) -> None:
    """Refuse a gated layer the forward pass never calls: it would hold weights counted in
    the sparsity, pruned to zero, that compute nothing."""
    idle = [name for name, was in called.items() if not was]
    if idle:
        shown = ", ".join(map(repr, idle[:5])) + (", ..." if len(idle) > 5 else "")
        raise NetworkError(f"the network ({module}) never calls {shown} in forward; sltc gates "
                           f"every nn.Linear and nn.Conv2d, and one never called would be "
                           f"pruned and counted in the sparsity: delete it from the network, "
                           f"or call it")
