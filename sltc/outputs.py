"""What a command writes: never over a file it reads (``check_output``), and whole or not
at all (``atomic_write``: a temp file beside the target, then ``os.replace``).

The temp file is ``.NAME.PID.RANDOM.tmp``; one that a killed process left behind is
removed by the next write of the same file.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import SltcError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output(path: str | Path, inputs: Iterable[str | Path]) -> None:
    """Refuse to write ``path`` where it would replace one of ``inputs``, the files a
    command reads or must keep: the same path once links resolve, the same file under
    another name (a hard link), or a file inside an input folder (an image folder's tree)."""
    target = _resolved(path)
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
    A path that names a directory, or a place that cannot be written, is a ``SltcError``."""
    path = Path(path)
    if path.is_dir():
        raise SltcError(f"{path} is a directory; name the file to write")
    above = next((p for p in path.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise SltcError(f"cannot write {path}: {above} is a file, not a folder; choose "
                        "another path")
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
