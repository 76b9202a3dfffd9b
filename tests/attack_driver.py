"""Many ``sltc`` command lines in one process, each through ``sltc.cli.main`` as the
``sltc`` script runs it, with what each left behind: exit code, stdout, stderr, seconds, the
process's peak RSS so far (its own VmHWM and its children's, e.g. bench workers), whether the
mark module was imported and whether a watched file was read (its access time moved).

    python -m tests.attack_driver CASES.json RESULTS.jsonl

CASES.json: ``{"cases": [{"name": ..., "args": [...], "env": {...}}], "watch": [paths],
"mark": path, "timeout": seconds}``; a case's ``env`` (optional) sets variables for it alone
(null: unset). One JSON line per case goes to RESULTS.jsonl as it ends, after a
``{"start": name}`` line, so a case that hangs past ``timeout`` (the process is then ended by
faulthandler's watchdog, which needs no GIL) is named by the last ``start``.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import resource
import sys
import tempfile
import time


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(hwm, children) * 1024


def _run(args: list[str]) -> tuple[int, str, str]:
    """``sltc ARGS`` in this process: its exit code, stdout and stderr (fd-level, so that
    logging, rich and C libraries are caught alike)."""
    from sltc.cli import main

    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.argv = ["sltc", *args]
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
        out.seek(0)
        err.seek(0)
        return code, out.read().decode(errors="replace"), err.read().decode(errors="replace")


@contextlib.contextmanager
def _environment(changes: dict):
    """``os.environ`` with ``changes`` (a None value unsets), as it was afterwards."""
    saved = dict(os.environ)
    for key, value in changes.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main() -> None:
    spec = json.loads(open(sys.argv[1]).read())
    watch = {p: os.stat(p).st_atime_ns for p in spec["watch"]}
    with open(sys.argv[2], "a") as results:
        for case in spec["cases"]:
            results.write(json.dumps({"start": case["name"]}) + "\n")
            results.flush()
            faulthandler.dump_traceback_later(spec["timeout"], exit=True, file=results)
            tic = time.perf_counter()
            with _environment(case.get("env", {})):
                code, out, err = _run(case["args"])
            seconds = time.perf_counter() - tic
            faulthandler.cancel_dump_traceback_later()
            read = [p for p, atime in watch.items() if os.stat(p).st_atime_ns != atime]
            results.write(json.dumps({
                "name": case["name"], "code": code, "stdout": out[-2000:], "stderr": err[-4000:],
                "seconds": seconds, "peak_rss": _peak_rss(),
                "imported": os.path.exists(spec["mark"]), "read": read}) + "\n")
            results.flush()


if __name__ == "__main__":
    main()
