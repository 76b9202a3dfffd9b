"""A run directory: the files ``discover`` writes, its lock, and its metrics lines.

One ``discover`` at a time holds a directory: an advisory ``flock`` on the directory
itself, which the system releases when the process ends however it ends (a kill leaves no
stale lock, and no lock file).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from .format.errors import SltcError
from .format.limits import MAX_EPOCHS, MAX_METRICS_BYTES, MAX_METRICS_LINE, number_in, regular_size
from .format.outputs import CHECKPOINT, CONFIG, METRICS, RUN_FILES, TICKET, atomic_write_text, check_output

MAX_METRIC = 3.4e38  # float32's largest: every value of a metrics line is within it
MAX_METRIC_VALUES = 32  # of one line (12 today): what read_metrics keeps stays small
def own_files(run: Path, ticket: bool = True) -> list[Path]:
    """The run's files, which no other command writes over (``outputs.check_output``); its
    ticket too unless ``ticket`` is false (``freeze`` writes it)."""
    return [Path(run) / name for name in RUN_FILES if ticket or name != TICKET]


@contextlib.contextmanager
def locked(out: Path):
    """Create ``out`` if needed and hold its lock; a directory another process holds, or a
    path that is not a directory, is a ``SltcError``."""
    if out.exists() and not out.is_dir():
        raise SltcError(f"--out {out} is a file; name a directory for the run")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise SltcError(f"cannot use {out} as the run directory ({e.strerror}); choose a "
                        "writable place with --out") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SltcError(f"{out} is in use by another sltc discover; wait for it to end "
                            "or choose another --out") from None
        yield
    except BaseException:
        if created:  # a run that failed before writing anything leaves no folder behind
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    finally:
        os.close(handle)


def previous_run(out: Path) -> list[str]:
    """The run files ``out`` already holds; none for what a run stopped before its first
    epoch ended leaves (its config.yaml and an empty metrics.jsonl), which may be rerun."""
    found = [name for name in RUN_FILES if (out / name).exists()]
    metrics = out / METRICS
    if found == [CONFIG, METRICS] and metrics.is_file() and \
            metrics.stat().st_size == 0:
        return []
    return found


def read_metrics(path: Path) -> list[dict]:
    """The epochs of a ``metrics.jsonl`` in order, the last line of each epoch kept: a
    missing file has none, and a line a kill cut short (or any line that is not an epoch's
    record, ``epoch_row``) is skipped. Read a line at a time, so memory stays bounded by
    the number of epochs whatever the file holds."""
    if not path.exists():
        return []
    regular_size(path, MAX_METRICS_BYTES, "metrics file")
    rows: dict[int, dict] = {}
    try:
        with path.open("rb") as f:
            for line in f:
                row = epoch_row(line)
                if row is not None:
                    rows[row["epoch"]] = row
    except OSError as e:
        raise SltcError(f"{path}: cannot read the metrics file ({e.strerror})") from None
    return [rows[epoch] for epoch in sorted(rows)]


def epoch_row(line: bytes) -> dict | None:
    """One line of ``metrics.jsonl`` as an epoch's record: a JSON object of at most
    ``MAX_METRIC_VALUES`` values whose ``epoch`` is an integer in [1, MAX_EPOCHS] and whose
    other values are null or numbers within float32's range (a loss, an accuracy, lambda,
    seconds); None for anything else."""
    if len(line) > MAX_METRICS_LINE or b"[" in line or line.count(b"{") != 1:
        return None  # a record is one flat object: lists and nested ones go unparsed
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(row, dict) or len(row) > MAX_METRIC_VALUES or \
            type(row.get("epoch")) is not int or not 1 <= row["epoch"] <= MAX_EPOCHS:
        return None
    if not all(v is None or number_in(v, -MAX_METRIC, MAX_METRIC) for v in row.values()):
        return None
    return row


def check_resume(out: Path, config) -> None:
    """A resumed run keeps its config; only ``train.epochs`` may grow, to continue a
    finished run (the learning-rate schedule then stretches over the new total)."""
    from . import config as config_mod  # pydantic and yaml: only a resumed run needs them
    from .config_yaml import load_config

    saved = load_config(out / CONFIG)
    key = config_mod.run_difference(saved.to_dict(), config.to_dict())
    if key is not None:
        raise SltcError(f"--resume: {key} differs from {out}/config.yaml; a resumed run keeps "
                        "its config (only a larger train.epochs continues it)")
    if config.train.epochs < saved.train.epochs:
        raise SltcError(f"--resume: train.epochs {config.train.epochs} is below the run's "
                        f"{saved.train.epochs}; a run can only be continued")


def check_out(out: Path, config, resume: bool) -> None:
    """Whether ``out`` suits a fresh run (no run files) or a resumed one (a checkpoint and
    the same config)."""
    ckpt = out / CHECKPOINT
    if resume:
        if not ckpt.exists():
            raise SltcError(f"--resume: {ckpt} not found; run without --resume to start")
        check_resume(out, config)
        return
    found = previous_run(out)
    if found:
        raise SltcError(f"{out} already holds a run ({', '.join(found)}); pass --resume to "
                        "continue it, or choose another --out")


def check_place(out: Path, config) -> None:
    """``out`` may hold a run: it lies outside the dataset's folders, and its run files are
    new or regular files (``outputs.check_output``)."""
    from .data import dataset_files

    for name in RUN_FILES:
        check_output(out / name, dataset_files(config.data), owned=own_files(out))


@contextlib.contextmanager
def claim(out: Path, config, resume: bool, main: bool = True):
    """Hold the run directory ``out``: lock it and check it, before any work (the main
    process only: torchrun's other ranks pass ``main=False`` and claim nothing)."""
    if not main:
        yield
        return
    check_place(out, config)
    with locked(out):
        check_out(out, config, resume)
        yield


def write_config(path: Path, config) -> None:
    """The run's ``config.yaml``: every key, the recipe's filled in."""
    from .config_yaml import config_yaml

    atomic_write_text(path, config_yaml(config))


def write_metrics(path: Path, rows: list[dict]) -> None:
    """``metrics.jsonl`` holding exactly ``rows`` (a resumed run's epochs so far: a line a
    kill cut short, or an epoch past the checkpoint, dropped; none for a fresh run)."""
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def append_metrics(path: Path, row: dict) -> None:
    """An epoch's record as the next line of ``metrics.jsonl``."""
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
