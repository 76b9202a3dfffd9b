"""A ticket's layer graph with its weights materialised, in numpy.

``materialise`` turns a ticket (or a CSR export's manifest) into a list of ops
carrying their arrays; ``compact`` removes pruned units and channels; ``run``
executes ops with a pluggable kernel for ``linear`` / ``conv2d``. Numpy only.
"""

from __future__ import annotations

import numpy as np

from sltc.errors import SltcError


def materialise(graph: list[dict], weight, extras: dict) -> list[dict]:
    """The graph's ops with each layer's masked weight (``weight(name)``) and BatchNorm
    statistics (from ``extras``) attached; for a ticket and a CSR export alike."""
    ops = []
    for op in graph:
        op = dict(op)
        if op["op"] in ("linear", "conv2d"):
            op["weight"] = weight(op["name"])
        elif op["op"] == "batchnorm":
            op["mean"] = extras[f"{op['name']}.running_mean"]
            op["var"] = extras[f"{op['name']}.running_var"]
        ops.append(op)
    return ops


def _expand_flat(keep: np.ndarray, shape: tuple) -> np.ndarray:
    """Channel indices -> indices into the flattened (C*H*W) vector."""
    per = int(np.prod(shape[1:]))
    return (keep[:, None] * per + np.arange(per)[None, :]).ravel()


def compact(ops: list[dict], input_shape) -> list[dict]:
    """Drop units / channels whose rows are all zero; outputs are unchanged."""
    if any(op["op"] == "batchnorm" for op in ops):
        raise SltcError("--compact needs a graph without BatchNorm (a pruned unit's BN output "
                        "is not zero); export without --compact")
    shape, keep = tuple(input_shape), np.arange(input_shape[0])
    last = max(i for i, op in enumerate(ops) if op["op"] in ("linear", "conv2d"))
    out = []
    for i, op in enumerate(ops):
        op = dict(op)
        if op["op"] == "flatten":
            keep, shape = _expand_flat(keep, shape), (int(np.prod(shape)),)
        elif op["op"] == "maxpool":
            k = op["kernel"]
            shape = (shape[0], shape[1] // k, shape[2] // k)
        elif op["op"] in ("linear", "conv2d"):
            w = op["weight"][:, keep]
            rows = np.arange(w.shape[0]) if i == last else np.flatnonzero(
                np.abs(w.reshape(w.shape[0], -1)).sum(1))
            if len(rows) == 0:
                rows = np.arange(1)  # keep one (all-zero) unit so the graph stays valid
            op["weight"], keep = np.ascontiguousarray(w[rows]), rows
            shape = (w.shape[0], *shape[1:]) if op["op"] == "conv2d" else (w.shape[0],)
        out.append(op)
    return out


def fold_normalize(ops: list[dict]) -> list[dict]:
    """Fold a leading ``normalize`` into the first layer when it is linear:
    ``W((x - m) / s) = (W / s) x - (m / s) W 1``. The layer then reads the raw input, whose
    zeros (black pixels) the ``csr`` engine skips. Adds a ``bias``; engine-internal.
    """
    kinds = [op["op"] for op in ops]
    first = next((i for i, k in enumerate(kinds) if k in ("linear", "conv2d")), None)
    if kinds[:1] != ["normalize"] or first is None or kinds[first] != "linear" \
            or set(kinds[1:first]) - {"flatten"}:
        return ops
    mean, std = float(ops[0]["mean"]), float(ops[0]["std"])
    layer = dict(ops[first])
    w = layer["weight"].astype(np.float64)
    layer["weight"] = (w / std).astype(np.float32)
    layer["bias"] = (-mean / std * w.sum(axis=1)).astype(np.float32)
    return ops[1:first] + [layer] + ops[first + 1:]


def im2col(x: np.ndarray, k: int, padding: int) -> np.ndarray:
    """(N, C, H, W) -> (N*H'*W', C*k*k) patches for a stride-1 convolution."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho, wo = h + 2 * padding - k + 1, w + 2 * padding - k + 1
    s = xp.strides
    patches = np.lib.stride_tricks.as_strided(
        xp, (n, ho, wo, c, k, k), (s[0], s[2], s[3], s[1], s[2], s[3]), writeable=False)
    return patches.reshape(n * ho * wo, c * k * k), (n, ho, wo)


def run(ops: list[dict], x: np.ndarray, matmul) -> np.ndarray:
    """Execute the graph; ``matmul(op, a)`` returns ``a @ W.T`` for the op's 2-D weight."""
    x = np.asarray(x, dtype=np.float32)
    for op in ops:
        kind = op["op"]
        if kind == "normalize":
            x = (x - np.float32(op["mean"])) / np.float32(op["std"])
        elif kind == "flatten":
            x = x.reshape(len(x), -1)
        elif kind == "linear":
            x = matmul(op, x)
            if "bias" in op:
                x = x + op["bias"]
        elif kind == "conv2d":
            cols, (n, ho, wo) = im2col(x, op["weight"].shape[-1], op["padding"])
            x = matmul(op, cols).reshape(n, ho, wo, -1).transpose(0, 3, 1, 2)
        elif kind == "batchnorm":
            shape = (1, -1) + (1,) * (x.ndim - 2)
            x = (x - op["mean"].reshape(shape)) / np.sqrt(op["var"].reshape(shape) + np.float32(op["eps"]))
        elif kind == "relu":
            x = np.maximum(x, np.float32(0))
        elif kind == "maxpool":
            k = op["kernel"]
            n, c, h, w = x.shape
            x = x[:, :, : h // k * k, : w // k * k].reshape(n, c, h // k, k, w // k, k).max((3, 5))
        else:
            raise SltcError(f"unknown graph op {kind!r}; upgrade sltc")
        x = np.ascontiguousarray(x, dtype=np.float32)
    return x
