"""What a command writes: a new or regular file, never one it reads, a run's own file or a
dataset's (``check_output``), and whole or not at all (``atomic_write``: a temp file beside
the target, then ``os.replace``).

The temp file is ``.NAME.PID.RANDOM.tmp``; one that a killed process left behind is
removed by the next write of the same file.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import SltcError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output(path: str | Path, inputs: Iterable[str | Path], owned: Iterable[str | Path] = ()
                 ) -> None:
    """Refuse to write ``path`` where it would replace anything but a new or regular file
    (``require_replaceable``), one of ``inputs`` (the files and folders a command reads or
    must keep: the same path once links resolve, the same file under another name (a hard
    link), or a file inside an input folder: a dataset's), or a file of a run directory
    (``run_file``) other than those in ``owned``, the run files this command writes
    (``freeze``: its run's ticket)."""
    target = _resolved(path)
    require_replaceable(path)
    written = _identity(target)
    for source in inputs:
        source = Path(source)
        resolved = _resolved(source)
        same = resolved == target or (written is not None and written == _identity(resolved))
        inside = resolved.is_dir() and target.is_relative_to(resolved)
        if same and Path(path) == source:
            raise SltcError(f"cannot write {path}: this command reads or must keep that file; "
                            "choose another output path")
        if same or inside:
            what = f"it is {source} under another name" if same else f"it lies inside {source}"
            raise SltcError(f"cannot write {path}: {what}, which this command reads or must "
                            "keep; choose another output path")
    run = run_file(target)
    if run is not None and target not in {_resolved(p) for p in owned}:
        raise SltcError(f"cannot write {path}: it is the {target.name} of the run in {run}, "
                        "which only sltc discover (and freeze, for the ticket) writes; choose "
                        "another output path")


# what discover writes in a run directory (sltc.rundir), each file's name spelled once
CONFIG, METRICS, CHECKPOINT, TICKET, SUMMARY = RUN_FILES = (
    "config.yaml", "metrics.jsonl", "checkpoint.safetensors", "ticket.slt", "summary.json")


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` is a run directory: ``discover`` writes its config and its
    metrics (or, later, a checkpoint) before the first epoch."""
    return (folder / CONFIG).is_file() and any(
        (folder / name).exists() for name in (METRICS, CHECKPOINT))


def run_file(path: Path) -> Path | None:
    """The run directory of which ``path`` is one of the files (``RUN_FILES``), or None: no
    command but the one that owns it writes there."""
    path = Path(path)
    return path.parent if path.name in RUN_FILES and holds_run(path.parent) else None


KINDS = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
         stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory"}


def require_replaceable(path: str | Path) -> None:
    """``path`` is new or a regular file (once links resolve): never a device, FIFO, socket
    or directory, which a write would replace with a file, nor below a file."""
    above = next((p for p in Path(path).parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise SltcError(f"cannot write {path}: {above} is a file, not a folder; choose "
                        "another path")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise SltcError(f"cannot write {path} ({e.strerror}); choose another output path") \
            from None
    if not stat.S_ISREG(mode):
        what = KINDS.get(stat.S_IFMT(mode), "not a regular file")
        fix = "name the file to write" if stat.S_ISDIR(mode) else "choose another output path"
        raise SltcError(f"cannot write {path}: it is {what}, not a regular file; {fix}")


def _resolved(path: str | Path) -> Path:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop
        raise SltcError(f"{path}: cannot follow its links ({e}); pass a plain path") from None


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file: two names of one file share it."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)``, then rename onto ``path``; no partial file on failure.
    A path that names a directory, a device, a FIFO or a socket, or a place that cannot be
    written, is a ``SltcError``."""
    path = Path(path)
    require_replaceable(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(path)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise SltcError(f"cannot write {path} ({e.strerror}); choose a writable place") from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def temp_dir(path: Path):
    """A folder beside ``path`` for staging files that belong with it, named like the temp
    files (so a killed process's folder is removed as they are); removed on exit."""
    staged = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        yield staged
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _temp_prefix(path: Path) -> str:
    """``.NAME.PID.``: whose temp files these are, and which process wrote them."""
    return f".{path.name}.{os.getpid()}."


def _remove_stale(path: Path) -> None:
    """Delete the temp files and folders of earlier writes of ``path`` whose process has
    ended."""
    prefix = f".{path.name}."
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = tmp.name[len(prefix):].split(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
