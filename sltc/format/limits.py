"""What sltc reads and allocates at most: every loader checks these before it reads or
allocates (``docs/format.md`` section 5 lists them). Numpy-free, torch-free."""

from __future__ import annotations

import math
import os
import resource
import stat
from pathlib import Path

from .errors import SltcError

MAX_WEIGHTS = 1 << 28  # weights of one network (ViT-B has 86M); 1 GiB of float32
MAX_TICKET_BYTES = 1 << 28  # a ticket: at most a bit per weight plus statistics
MAX_HEADER_BYTES = 1 << 24  # a ticket's header JSON
MAX_SKELETON_BYTES = 1 << 26  # a decoded skeleton
MAX_CSR_BYTES = 1 << 32  # a CSR export (stored values: 8 bytes per kept weight)
MAX_MANIFEST_BYTES = 1 << 24  # a CSR export's manifest JSON
MAX_ONNX_BYTES = 1 << 31  # protobuf's own limit on one file
MAX_CHECKPOINT_BYTES = 1 << 34
MAX_DATA_BYTES = 1 << 32  # one IDX file, inflated
MAX_CIFAR_RECORDS = 50_000  # images in one CIFAR batch file (CIFAR-100's train.bin)
MAX_METRICS_BYTES = 1 << 28  # a run's metrics.jsonl (a few hundred bytes per epoch)
MAX_METRICS_LINE = 1 << 12  # one epoch's line of it (about 360 bytes), at most 32 values
MAX_EPOCHS = 100_000  # epochs of one run
MAX_SIDE = 8192  # an input dimension: an image side or a channel count
MAX_IMAGES = 1 << 24  # images of one split
MAX_SYNTHETIC_PIXELS = 1 << 26  # above Fashion-MNIST's 4.7e7; its test set: 2**24 at most
MAX_IMAGE_SIDE = 2048  # an image folder's resized side: 12 MiB an RGB image, 50 MiB as float32
MAX_BATCH = 1 << 16  # images of one training batch
MAX_WORKERS = 16  # DataLoader worker processes
# a graph (a ticket's skeleton, an ONNX file), checked whole before it runs (format.md section 2.6)
MAX_GRAPH_NODES = 1 << 14  # nodes (the registry's swin, 3 stages of 2 blocks: 1,515)
MAX_GRAPH_VALUES = 1 << 16  # inputs and outputs of all nodes (check: 0.5 ms a node, 34 us each)
MAX_NODE_VALUES = 1 << 10  # inputs, and outputs, of one node
MAX_RANK = 8  # dimensions of one value
MAX_VALUE_ELEMENTS = MAX_WEIGHTS  # one value (an initializer, an activation) at batch 1
MEMORY_ENV = "SLTC_MEMORY"  # a larger bound for a model you trust, e.g. SLTC_MEMORY=4GiB
DEFAULT_MEMORY = 1 << 30  # the fuzz and attack suites' limit: a file from anyone
UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def memory_limit(raw: str | None) -> int:
    """The bytes one command may hold: ``DEFAULT_MEMORY``, or ``raw`` (``SLTC_MEMORY``: a
    number of bytes, or of KiB, MiB, GiB or TiB, at least the default); a one-line
    ``SltcError`` for anything else."""
    if raw is None:
        return DEFAULT_MEMORY
    text = raw.strip().lower().replace(" ", "")
    digits = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(digits):]
    try:
        value = int(float(digits) * UNITS[unit])
    except (KeyError, ValueError, OverflowError):
        value = -1
    if not DEFAULT_MEMORY <= value <= 1 << 50:
        raise SltcError(f"{MEMORY_ENV}={raw[:40]!r}: give the memory one command may hold, at "
                        "least 1GiB (e.g. SLTC_MEMORY=4GiB), or unset it for the 1 GiB bound")
    return value


def _memory_from_environment() -> int:
    try:
        return memory_limit(os.environ.get(MEMORY_ENV))
    except SltcError:
        return DEFAULT_MEMORY  # said by the CLI (check_environment) before any work


def check_environment() -> None:
    """What sltc reads from the environment, checked: a bad value is a one-line error."""
    memory_limit(os.environ.get(MEMORY_ENV))


MEMORY = _memory_from_environment()  # what one command holds at most
BASELINE = 1 << 28  # of it, the interpreter and libraries (numpy, onnx, onnxruntime, scipy)
MAX_GRAPH_BYTES = MEMORY - BASELINE  # alive at once, any batch: values, scratch, weight copies
MAX_GRAPH_WORK = 1 << 30  # element visits, multiply-adds / 64 and 1,024 a node, per image


def number_in(value, low: float = -math.inf, high: float = math.inf) -> bool:
    """Whether ``value`` (as read from JSON) is a finite number, not a bool, in
    ``[low, high]``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value) and low <= value <= high


def read_limited(path: str | Path, limit: int, what: str, error=SltcError) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; anything else (a directory,
    a FIFO, a device, a larger file) is ``error`` before a byte is read."""
    path = Path(path)
    size = regular_size(path, limit, what, error)
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise error(f"{path}: cannot read {what} ({e.strerror})") from None
    if len(data) != size:
        raise error(f"{path}: the {what} changed while it was read; try again")
    return data


def regular_size(path: str | Path, limit: int, what: str, error=SltcError) -> int:
    """The size of ``path`` after checking it is a regular file of at most ``limit`` bytes."""
    size = require_regular(path, what, error)
    if size > limit:
        raise error(f"{path}: {size} bytes is larger than any {what} ({limit} at most); "
                    "pass the right file")
    return size


def require_regular(path: str | Path, what: str, error=SltcError) -> int:
    """The size of ``path``, a regular file (not a directory, FIFO or device)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: no such file; pass a {what} file") from None
    except OSError as e:
        raise error(f"{path}: cannot read {what} ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: not a regular file; pass a {what} file")
    return st.st_size


def available_memory() -> int | None:
    """Bytes this process may still allocate: the least of the system's available memory
    (``MemAvailable``), the address-space limit (``ulimit -v``) less what the process has
    mapped, and its cgroup's ``memory.max`` less what the cgroup uses; None where Linux
    says none of them."""
    found = [_meminfo("/proc/meminfo", "MemAvailable")]
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    mapped = _meminfo("/proc/self/status", "VmSize")
    if soft != resource.RLIM_INFINITY and mapped is not None:
        found.append(soft - mapped)
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    known = [max(0, n) for n in found if n is not None]
    return min(known) if known else None


def _meminfo(path: str, key: str) -> int | None:
    """A ``KEY: N kB`` line of a /proc file, in bytes."""
    try:
        with open(path) as f:
            line = next((line for line in f if line.startswith(f"{key}:")), None)
        return int(line.split()[1]) * 1024 if line else None
    except (OSError, ValueError, IndexError):
        return None


def check_memory(need: int, what: str, fix: str) -> None:
    """Refuse, before allocating them, ``need`` bytes that this process cannot have
    (``available_memory``): a ``ConfigError`` saying ``what`` needs them and ``fix``."""
    from .errors import ConfigError

    available = available_memory()
    if available is not None and need > available:
        raise ConfigError(f"{what} needs about {need / 2**30:.1f} GiB of memory, and this "
                          f"process may use {available / 2**30:.1f} GiB more; {fix}")
