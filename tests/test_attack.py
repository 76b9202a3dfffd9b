"""Attacks through files: tickets, CSR exports and ONNX files whose checksums and structure
are valid but whose content is hostile (``tests/attack_files.py`` builds them).

Each case is one ``sltc`` command line on one file, run through every command and engine, and
held to the fuzz suite's contract (``tests/cli_contract.py``): exit 2 with one line, no
traceback, peak RSS under 1 GiB, within 60 s, every file of the user's unchanged. Besides, no
module may be imported and no other file read because of what a file says: the user's folder
(the working directory) holds a module that leaves a mark file when imported, and files whose
access times show a read. The cases of one class run in one process
(``tests/attack_driver.py``, the CLI's own ``main`` for each): a peak RSS under the limit over
all of them is under it for each.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from sltc.format import check as graph_check
from tests import attack_files as af
from tests.cli_contract import MEMORY_LIMIT, TIMEOUT, Result, assert_user_error, snapshot
from tests.helpers import ROOT

pytest.importorskip("onnxruntime")

ENGINES = ("dense", "csr", "ort", "openvino")
ZEN = "Beautiful is better than ugly"  # what importing the standard library's `this` prints


# --- the user's folder and the files in it ----------------------------------------------------

@pytest.fixture()
def user(tmp_path):
    """The working directory: a module that marks its import, a secret, notes, a FIFO."""
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / f"{af.MARK_MODULE}.py").write_text(
        "import os, pathlib\n"
        "pathlib.Path(os.environ['SLTC_ATTACK_MARK']).write_text(__name__)\n"
        "def build(*args, **kwargs):\n    raise SystemExit('a ticket ran user code')\n")
    (home / "secret.bin").write_bytes(af.SECRET)
    (home / "notes.txt").write_text("mine\n")
    os.mkfifo(home / "models" / "pipe.bin")
    for name in ("secret.bin", "notes.txt"):
        _age(home / name)
    return home


def _age(path: Path) -> None:
    """An access time before the change time: relatime then records the next read."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_mtime_ns - 10**12, st.st_mtime_ns))


def _reads_show(folder: Path) -> bool:
    """Whether this file system records reads in access times (noatime does not)."""
    probe = folder / "probe"
    probe.write_text("x")
    _age(probe)
    before = os.stat(probe).st_atime_ns
    probe.read_text()
    return os.stat(probe).st_atime_ns != before


def _onnx_file(good: Path, dest: Path, graph: onnx.ModelProto) -> Path:
    """``graph`` as an ONNX export with the valid export's ``sltc.*`` metadata (so that
    validate finds the test set) and no recorded accuracy."""
    props = {p.key: p.value for p in onnx.load(str(good / "model.onnx")).metadata_props}
    onnx.helper.set_model_props(graph, {**props, "sltc.test_accuracy": "None"})
    return af.write_onnx(dest, graph)


def _commands(kind: str, path: Path, user: Path, bench: bool) -> dict[str, list]:
    """Every command and engine that reads a file of ``kind``."""
    runs = {f"validate --engine {e}": ["validate", path, "--engine", e] for e in ENGINES}
    if kind == "ticket":
        out = user / "out"
        runs.update({
            "inspect": ["inspect", path], "eval": ["eval", path],
            "export onnx": ["export", path, "-f", "onnx", "-o", f"{out}.onnx"],
            "export onnx --compact": ["export", path, "-f", "onnx", "--compact", "-o",
                                      f"{out}.c.onnx"],
            "export csr": ["export", path, "-f", "csr", "-o", f"{out}.csr.safetensors"],
            "export ticket": ["export", path, "-f", "ticket", "-o", f"{out}.slt"]})
    if bench:
        runs["bench"] = ["bench", path, *[a for e in ENGINES for a in ("--engine", e)],
                         "--batch", "1,2", "--warmup", "1", "--repeat", "1"]
    return runs


def _files(good: Path, user: Path, name: str, graph: onnx.ModelProto, kinds, arch=None):
    paths = {}
    if "ticket" in kinds:
        paths["ticket"] = af.write_ticket(good / "model.slt", user / "models" / f"{name}.slt",
                                          graph, arch)
    if "csr" in kinds:
        paths["csr"] = af.write_csr(good / "model.csr.safetensors",
                                    user / "models" / f"{name}.csr.safetensors", graph)
    if "onnx" in kinds:
        paths["onnx"] = _onnx_file(good, user / "models" / f"{name}.onnx", graph)
    return paths


def attack(good: Path, user: Path, graphs: dict, kinds=("ticket", "csr", "onnx"),
           bench=(), arch=None, expect: int = 2, match: dict | None = None) -> dict:
    """Every graph of ``graphs`` (name -> model) written as each of ``kinds``, through every
    command; ``bench``: the graphs also run through ``sltc bench`` (a process per engine, so
    one per class). Checks each case against the contract; returns the results by case."""
    for old in user.glob("out*"):  # a previous call's exports
        old.unlink()
    cases = {}
    for name, graph in graphs.items():
        for kind, path in _files(good, user, name, graph, kinds, arch).items():
            for command, args in _commands(kind, path, user, name in bench).items():
                cases[f"{name} {kind}: {command}"] = [str(a) for a in args]
    results = drive(user, cases)
    failures = []
    for case, result in results.items():
        try:
            check(result, expect)
            name = case.split(" ", 1)[0]
            needle = next((v for k, v in (match or {}).items() if name.startswith(k)), None)
            assert needle is None or needle.lower() in result.stderr.lower(), result.stderr
        except AssertionError as e:
            failures.append(f"{case}: {e}")
    assert not failures, f"{len(failures)} of {len(results)} cases:\n" + "\n".join(failures)
    assert expect == 0 or not list(user.glob("out*")), "a refused export left a file"
    return results


# --- running the cases -------------------------------------------------------------------------

class Outcome(Result):
    imported: bool
    read: list


def drive(user: Path, cases: dict[str, list], env: dict | None = None) -> dict[str, Outcome]:
    """Run ``cases`` (name -> sltc arguments) in one process in ``user``; the user's files
    must come out as they went in. ``env``: case name -> the environment variables set (a
    None value: unset) for that case alone."""
    mark = user.parent / "imported"
    watched = [user / "secret.bin", user / "notes.txt"] if _reads_show(user.parent) else []
    spec = user.parent / "cases.json"
    spec.write_text(json.dumps({"cases": [{"name": k, "args": v, "env": (env or {}).get(k, {})}
                                          for k, v in cases.items()],
                                "watch": [str(p) for p in watched], "mark": str(mark),
                                "timeout": TIMEOUT}))
    out = user.parent / "results.jsonl"
    out.unlink(missing_ok=True)
    before = snapshot(user)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT),
           "SLTC_ATTACK_MARK": str(mark)}
    proc = subprocess.run([sys.executable, "-m", "tests.attack_driver", spec, out], cwd=user,
                          env=env, capture_output=True, text=True,
                          timeout=TIMEOUT + 30 * len(cases))
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.startswith("{")]
    finished = {r["name"]: r for r in rows if "name" in r}
    started = [r["start"] for r in rows if "start" in r]
    assert proc.returncode == 0 and len(finished) == len(cases), (
        f"the driver stopped in case {started[-1] if started else None!r} "
        f"(exit {proc.returncode}): {proc.stderr[-2000:]}{out.read_text()[-2000:]}")
    after = snapshot(user)
    assert {path: after.get(path) for path in before} == before, "a file of the user's changed"
    results = {}
    for name, r in finished.items():
        result = Outcome(r["code"], r["stdout"], r["stderr"], r["peak_rss"], r["seconds"])
        result.imported, result.read = r["imported"], r["read"]
        results[name] = result
    return results


def check(result: Outcome, expect: int) -> None:
    """The fuzz suite's contract (exit ``expect``: 2, or 0 for a file that must work), and
    nothing imported or read on the file's say-so."""
    assert not result.imported, "a module named by the file was imported"
    assert ZEN not in result.stdout, "a standard-library module named by the file was imported"
    assert not result.read, f"read {result.read}"
    if expect == 2:
        assert_user_error(result)
    else:
        assert result.code == expect and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert result.peak_rss < MEMORY_LIMIT and result.seconds < TIMEOUT


# --- the classes -------------------------------------------------------------------------------

def test_control_flow(good, user):
    attack(good, user, {"loop-forever": af.loop_forever(), "loop-input": af.loop_from_input(),
                        "if": af.if_branch(), "scan": af.scan()}, bench={"loop-forever"},
           match={"loop-forever": "Loop", "if": "If", "scan": "Scan"})


BOMBS = {"expand": af.expand, "constant-of-shape": af.constant_of_shape, "tile": af.tile,
         "pad": af.pad, "resize": af.resize, "range": af.range_, "reshape": af.reshape,
         "sparse-initializer": af.sparse_initializer, "sparse-constant": af.sparse_constant,
         "batch-threshold": af.batch_threshold, "batch-squared": af.batch_squared,
         "work": af.work, "many-bytes": af.many_bytes}


def test_shape_and_size_bombs(good, user):
    attack(good, user, {name: build() for name, build in BOMBS.items()},
           bench={"expand", "batch-threshold"},
           match={"work": "units of work", "many-bytes": "bytes", "batch-squared": "batch",
                  "batch-threshold": "batch"})


def test_foreign_ops_and_domains(good, user):
    attack(good, user, {"selu": af.selu(), "nonzero": af.nonzero(),
                        "custom-domain": af.custom_domain(), "function": af.local_function(),
                        "opset-9": af.old_opset(), "string": af.string_cast(),
                        "integer-division": af.integer_division_by_zero()},
           bench={"selu"}, match={"selu": "Selu", "custom-domain": "com.microsoft",
                                  "opset-9": "opset", "integer-division": "divisor"})


def test_external_data_in_a_skeleton(good, user):
    """External data is refused in skeletons, wherever it points."""
    attack(good, user, {
        "cwd-constant": af.external_constant("secret.bin"),
        "cwd-initializer": af.external_initializer("secret.bin"),
        "beside": af.external_initializer("../secret.bin"),
        "absolute": af.external_initializer(str(user / "secret.bin")),
        "etc": af.external_constant("/etc/hostname")}, kinds=("ticket", "csr"),
        bench={"cwd-constant"}, match={"cwd": "external data", "absolute": "external data"})


def test_external_data_of_onnx_files(good, user):
    """Only beside the file, inside its folder, of the declared length; never a FIFO."""
    models = user / "models"
    (models / "short.bin").write_bytes(b"\0" * 16)
    (models / "link.bin").symlink_to(user / "secret.bin")
    attack(good, user, {
        "dotdot": af.external_initializer("../secret.bin"),
        "absolute": af.external_initializer(str(user / "secret.bin")),
        "symlink-out": af.external_initializer("link.bin"),
        "fifo": af.external_initializer("pipe.bin"),
        "short-file": af.external_initializer("short.bin"),
        "past-the-end": af.external_initializer("short.bin", length=None, offset=64),
        "wrong-length": af.external_initializer("short.bin", length=8),
        "missing": af.external_initializer("nothing.bin")}, kinds=("onnx",),
        bench={"symlink-out"}, match={"dotdot": "folder", "absolute": "folder",
                                      "symlink-out": "folder", "fifo": "regular"})


def test_external_data_beside_an_onnx_file_is_read(good, user):
    """The one place external data may live: a regular file in the model's folder."""
    from sltc.runtime.loader import load

    (user / "models" / "weights.bin").write_bytes(np.arange(8, dtype=np.float32).tobytes())
    graph = af.external_initializer("weights.bin")
    attack(good, user, {"beside": graph}, kinds=("onnx",), bench={"beside"}, expect=0)
    logits = load(user / "models" / "beside.onnx").graph.run(np.zeros((1, 1, 28, 28),
                                                                      np.float32))
    assert np.array_equal(logits, np.full((1, 10), 28, np.float32))  # 0 + ... + 7, read


def test_imports_named_in_a_config(good, user):
    """A ticket naming a module (beside the user, or in the standard library) imports it
    under no command; the graph is the network."""
    for arch in (f"python:{af.MARK_MODULE}:build", "python:this:build"):
        attack(good, user, {"valid": onnx.load(str(good / "model.onnx"))}, kinds=("ticket",),
               bench={"valid"}, arch=arch, expect=0)
        attack(good, user, {"hostile": af.loop_forever()}, kinds=("ticket",), arch=arch)


def test_interface_mismatches(good, user):
    """The graph's input and output against the ticket's meta (CSR: its manifest) and, for
    every file, against what the graph computes."""
    attack(good, user, {"input-784": af.input_784(), "five-classes": af.five_classes()},
           kinds=("ticket", "csr"), match={"input-784": "input", "five-classes": "classes"})
    attack(good, user, {"declared-ten-computes-five": af.declared_ten_computes_five(),
                        "unread-input": af.unread_input(), "double-input": af.double_input(),
                        "rank3-output": af.rank3_output(), "fixed-batch": af.fixed_batch()},
           bench={"fixed-batch"}, match={"unread-input": "never read", "fixed-batch": "batch"})
    attack(good, user, {"flat-input": af.input_784()}, kinds=("onnx",), match={"flat": "784"})


def test_bounds_that_did_not_hold(good, user):
    """What passed the old bounds and then ran past 1 GiB or 60 s: two 0.75 GiB values alive
    at once, an integer product's 2**28-element output (numpy holds it in float64), 64
    integer products of 4096 cubed, 65,000 tiny nodes, 64 nodes of 1,024 inputs each."""
    attack(good, user, {"two-alive": af.values_alive(3 << 26),
                        "integer-output": af.integer_product(1 << 20),
                        "integer-work": af.integer_products(64, 4096),
                        "65k-nodes": af.many_nodes(65_000), "wide-sums": af.wide_sums(64)},
           bench={"two-alive"}, match={"two-alive": "bytes at once",
                                       "integer-output": "bytes at once",
                                       "integer-work": "units of work", "65k": "nodes",
                                       "wide": "inputs and outputs together"})


def _accepts(engine: str = "dense"):
    """Whether a skeleton passes every graph rule and ``engine``'s bytes at batch 1."""
    from sltc.format.errors import GraphError

    def accepted(graph) -> bool:
        try:
            graph_check.check_model(graph, (1, 28, 28), 10).batch(1, engine)
        except GraphError:
            return False
        return True

    return accepted


LARGEST = {  # kind -> (builder, engines whose bound it probes, most to try, what binds it)
    "values": (af.values_alive, ENGINES, 1 << 30, "bytes at once"),
    "weights": (af.weights_handed, (*ENGINES, "export"), 1 << 30, "bytes at once"),
    "integer": (af.integer_product, ENGINES, 1 << 30, "bytes at once"),
    "pools": (af.pools, ("dense",), 64, "units of work"),
    "node values": (af.wide_sums, ("dense",), 1 << 10, "inputs and outputs together"),
}


def largest_accepted() -> dict:
    """(kind, engine) -> (size, graph) of the largest graph of that kind each bound accepts
    (the largest chain of nodes: as many as the node bound takes); one size more is
    refused by that bound."""
    from sltc.format.errors import GraphError
    from sltc.format.limits import MAX_GRAPH_NODES

    found = {}
    for kind, (build, engines, most, binds) in LARGEST.items():
        for engine in engines:
            size, graph = af.largest(build, _accepts(engine), 1, most)
            with pytest.raises(GraphError, match=binds):
                graph_check.check_model(build(size + 1), (1, 28, 28), 10).batch(1, engine)
            found[kind, engine] = size, graph
    chain = MAX_GRAPH_NODES - len(af.many_nodes(0).graph.node)
    with pytest.raises(GraphError, match="nodes"):
        graph_check.check_model(af.many_nodes(chain + 1))
    found["nodes", "dense"] = chain, af.many_nodes(chain)
    return found


def test_each_bound_is_the_one_that_binds():
    """One size past the largest accepted graph of each kind is refused by that kind's
    bound (bytes at once in each engine, work, nodes, node values); the largest is within
    them all (the node chain's check, 7 s, is left to the slow test that runs it)."""
    from sltc.format.limits import MAX_GRAPH_BYTES, MAX_GRAPH_WORK

    for (kind, engine), (size, graph) in largest_accepted().items():
        if kind != "nodes":
            bounds = graph_check.check_model(graph, (1, 28, 28), 10)
            assert bounds.held(1, engine) <= MAX_GRAPH_BYTES and bounds.work <= MAX_GRAPH_WORK
        assert size > 1, (kind, engine)


@pytest.mark.slow
def test_the_largest_accepted_graphs_keep_the_promise(good, tmp_path):
    """The largest graph of each kind that the bounds accept, run in the command and
    engine whose bound it reaches (bench at validate's batch; the ONNX export with its
    parity check; validate and bench over the largest synthetic test set a file may name):
    each ends within 60 s and 1 GiB, measured in a process of its own."""
    from sltc.runtime.loader import load
    from tests.cli_contract import run_clis

    cases = {}
    for (kind, engine), (size, graph) in largest_accepted().items():
        path = af.write_ticket(good / "model.slt", tmp_path / f"{kind}-{engine}.slt", graph)
        if engine == "export":
            cases[f"{kind} {size}: export"] = ["export", path, "-f", "onnx", "-o",
                                               tmp_path / f"{kind}.onnx"]
            continue
        runs = ENGINES if kind in ("pools", "nodes", "node values") else (engine,)
        for e in runs:
            batch = load(path).graph.bounds.batch_for(1000, e)
            cases[f"{kind} {size}: bench {e} at {batch}"] = [
                "bench", path, "--engine", e, "--batch", batch, "--warmup", 0, "--repeat", 1]
    data = tmp_path / "data.slt"
    shutil.copy(good / "model.slt", data)
    _record_data(data, {"synthetic_size": (1 << 26) // 784})  # the config's largest
    for e in ("dense", "ort"):
        cases[f"data: validate {e}"] = ["validate", data, "--engine", e, "--tolerance", 1]
    cases["data: bench --inputs test"] = ["bench", data, "--engine", "dense", "--inputs", "test",
                                          "--batch", 1, "--warmup", 0, "--repeat", 1]
    results = dict(zip(cases, run_clis([(args, tmp_path) for args in cases.values()]),
                       strict=True))
    for case, result in results.items():
        print(f"{case}: exit {result.code}, {result.seconds:.1f} s, "
              f"{result.peak_rss / 2**20:.0f} MiB")
    for case, result in results.items():
        assert "Traceback" not in result.stderr, (case, result.stderr[-2000:])
        assert result.code == 0 or len(result.stderr.strip().splitlines()) == 1, (case,
                                                                                 result.stderr)
        assert result.peak_rss < MEMORY_LIMIT and result.seconds < TIMEOUT, case


def test_a_recorded_synthetic_set_is_bounded(good, user):
    """A file's meta naming a synthetic set of 2**30 pixels (its test set 2**28) is refused
    on load, before one is made: 2**26 is the config's own bound."""
    ticket = user / "models" / "huge-data.slt"
    shutil.copy(good / "model.slt", ticket)
    _record_data(ticket, {"synthetic_size": (1 << 30) // 784 + 1})
    cases = {f"validate {e}": ["validate", ticket, "--engine", e] for e in ("dense", "ort")}
    cases["bench --inputs test"] = ["bench", ticket, "--engine", "dense", "--inputs", "test",
                                    "--batch", "1", "--repeat", "1"]
    for case, result in drive(user, {k: [str(a) for a in v] for k, v in cases.items()}).items():
        assert "synthetic_size" in _one_line(result, 2), case


def test_zero_points_are_per_tensor(good, user):
    """ONNX takes one zero point for ConvInteger's input (and onnxruntime for MatMulInteger's
    first): one per channel is refused, not run by the numpy engine alone."""
    attack(good, user, {"conv-integer": af.conv_integer_channel_zero_point()},
           match={"conv-integer": "one element"})


def test_node_count_bombs(good, user):
    attack(good, user, {"200k-nodes": af.many_nodes(), "100k-inputs": af.wide_node()},
           bench={"200k-nodes"}, match={"200k": "nodes", "100k": "inputs"})


def test_failures_at_run_time_name_the_node(good, user):
    """A graph that passes every check and fails inside numpy or onnxruntime (an index past
    the end): one line naming the node, from every command that runs it."""
    graph = af.gather_out_of_range()
    paths = _files(good, user, "gather", graph, ("ticket", "csr", "onnx"))
    cases = {f"{kind}: validate {e}": ["validate", p, "--engine", e]
             for kind, p in paths.items() for e in ENGINES}
    cases["ticket: eval"] = ["eval", paths["ticket"]]
    cases["ticket: export onnx"] = ["export", paths["ticket"], "-f", "onnx", "-o",
                                    user / "out.onnx"]
    cases["onnx: bench"] = ["bench", paths["onnx"], "--batch", "1", "--repeat", "1"]
    results = drive(user, {k: [str(a) for a in v] for k, v in cases.items()})
    for case, result in results.items():
        check(result, 2)
        assert "'pick'" in result.stderr, (case, result.stderr)
    assert not (user / "out.onnx").exists()


# --- what commands write -------------------------------------------------------------------

def _special_files(folder: Path) -> dict[str, Path]:
    """A FIFO, a socket and (where this user may make one) a character device: outputs that
    a write would replace with a regular file."""
    import socket
    import stat

    found = {"fifo": folder / "pipe"}
    os.mkfifo(found["fifo"])
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock"))
    sock.close()
    found["socket"] = folder / "sock"
    try:
        os.mknod(folder / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        found["device"] = folder / "null"
    except PermissionError:
        pass
    return found


def _kinds(paths) -> dict[str, int]:
    return {str(p): os.lstat(p).st_mode for p in paths}


def test_outputs_never_land_on_the_users_files(good, synthetic_run, user):
    """An output is a new or a regular file: never a device, FIFO or socket, a run's own
    files (but the ticket its freeze writes), or a file inside a dataset's folder; a
    refused --resume leaves the run's config as it was."""
    from tests.cli_contract import idx_set

    run, other = user / "run", user / "other"
    shutil.copytree(synthetic_run, run)
    shutil.copytree(synthetic_run, other)
    special = _special_files(user)
    data = idx_set(user / "idx")
    mnist = af.write_ticket(good / "model.slt", user / "mnist.slt",
                            onnx.load(str(good / "model.onnx")))
    header_data = {"name": "mnist", "root": str(data)}
    _record_data(mnist, header_data)
    ticket = good / "model.slt"
    cases = {
        "export onnx over the run's config": ["export", ticket, "-f", "onnx", "--no-check",
                                              "-o", run / "config.yaml"],
        "export csr over the run's checkpoint": ["export", ticket, "-f", "csr", "-o",
                                                 run / "checkpoint.safetensors"],
        "export ticket over the run's summary": ["export", ticket, "-f", "ticket", "-o",
                                                 run / "summary.json"],
        "inspect --plot over the run's metrics": ["inspect", ticket, "--plot",
                                                  run / "metrics.jsonl"],
        "freeze into another run": ["freeze", run, "-o", other / "ticket.slt"],
        "export into the dataset's folder": ["export", mnist, "-f", "csr", "-o",
                                             data / "model.csr.safetensors"],
        "discover into the dataset's folder": [
            "discover", ROOT / "examples/synthetic.yaml", "--set", "data.name=mnist", "--set",
            f"data.root={data}", "--set", "data.val_size=16", "--out", data / "run"],
        "resume onto a FIFO of metrics": [
            "discover", run / "config.yaml", "--out", other, "--resume", "--set",
            "train.epochs=4"],
    }
    (other / "metrics.jsonl").unlink()
    os.mkfifo(other / "metrics.jsonl")
    for kind, path in special.items():
        cases[f"inspect --plot onto a {kind}"] = ["inspect", ticket, "--plot", path]
        cases[f"export onto a {kind}"] = ["export", ticket, "-f", "csr", "-o", path]
        cases[f"bench --plot onto a {kind}"] = ["bench", good / "model.onnx", "--engine",
                                                "dense", "--batch", "1", "--repeat", "1",
                                                "--plot", path]
    kinds = _kinds([*special.values(), other / "metrics.jsonl"])
    results = drive(user, {k: [str(a) for a in v] for k, v in cases.items()})
    for case, result in results.items():
        try:
            check(result, 2)
        except AssertionError as e:
            raise AssertionError(f"{case}: {e}") from None
    assert _kinds([*special.values(), other / "metrics.jsonl"]) == kinds
    assert not (data / "run").exists() and not (data / "model.csr.safetensors").exists()
    assert (other / "config.yaml").read_bytes() == (synthetic_run / "config.yaml").read_bytes()


def test_freeze_writes_its_own_runs_ticket(synthetic_run, tmp_path):
    """The one run file a command other than discover writes: freeze, its run's ticket."""
    from tests.helpers import sltc_here

    run = tmp_path / "run"
    shutil.copytree(synthetic_run, run)
    (run / "ticket.slt").unlink()
    sltc_here("freeze", run, "--json", check=True)
    assert (run / "ticket.slt").read_bytes() == (synthetic_run / "ticket.slt").read_bytes()


def _record_data(ticket: Path, data: dict) -> None:
    """Rewrite a ticket's recorded ``meta.config.data`` (every checksum kept right)."""
    from tests.helpers import reseal_ticket, ticket_header

    raw = ticket.read_bytes()
    header = ticket_header(raw)
    header["meta"]["config"]["data"].update(data)
    ticket.write_bytes(reseal_ticket(raw, header))


# --- users' code, options, environment variables -------------------------------------------

USERNET = """
import os, pathlib, sys, time
import torch
from torch import nn

HERE = pathlib.Path(__file__).parent


class Net(nn.Module):
    def __init__(self, shape, classes, exit_in_training=False):
        super().__init__()
        self.fc = nn.Linear(int(torch.tensor(shape).prod()), classes)
        self.exit_in_training = exit_in_training

    def forward(self, x):
        if self.training and self.exit_in_training:
            sys.exit(0)
        return self.fc(x.flatten(1))


class Stop(BaseException):
    pass


def exits(shape, classes):
    sys.exit(0)


def stops(shape, classes):
    raise Stop("not an Exception")


def interrupts(shape, classes):
    raise KeyboardInterrupt


def exits_in_forward(shape, classes):
    return Net(shape, classes, exit_in_training=True)


def forks(shape, classes):
    ready, told = os.pipe()
    if os.fork() == 0:  # a child that would run for ten minutes
        (HERE / f"child-{os.getpid()}.pid").write_text("")
        os.write(told, b"x")
        time.sleep(600)
        os._exit(0)
    os.read(ready, 1)
    return Net(shape, classes)


def forks_and_returns(shape, classes):
    ready, told = os.pipe()
    child = os.fork() == 0  # parent and child both come back with a network
    (HERE / f"returned-{os.getpid()}.pid").write_text("")
    if child:
        os.write(told, b"x")
    else:  # the parent comes back once the child has written its file
        os.read(ready, 1)
    return Net(shape, classes)
"""


def _discover(out: Path, *sets: str) -> list:
    return ["discover", ROOT / "examples/synthetic.yaml", "--out", out, "--set",
            "train.epochs=1", "--set", "train.max_steps=2",
            *[a for s in sets for a in ("--set", s)]]


def _one_line(result: Outcome, code: int) -> str:
    """Exit ``code`` with one ``sltc: error:`` line, within the time and memory."""
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert result.code == code and len(lines) == 1, (result.code, result.stderr[-2000:])
    assert lines[0].startswith("sltc: error: "), lines
    assert result.peak_rss < MEMORY_LIMIT and result.seconds < TIMEOUT
    return lines[0]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_users_code_ends_in_one_line(user):
    """Whatever a user's module, factory or forward raises or does (SystemExit with any
    code, a BaseException of its own, a fork) is one line, exit 2, naming file:line; Ctrl-C
    raised there is an interruption (130); no forked process outlives its command."""
    (user / "usernet.py").write_text(USERNET)
    (user / "exit_at_import.py").write_text("import sys\nsys.exit(3)\n")
    net = "model.widths=null"
    cases = {name: _discover(user / f"run-{name}", f"model.arch=python:usernet:{name}", net)
             for name in ("exits", "stops", "interrupts", "exits_in_forward", "forks",
                          "forks_and_returns")}
    cases["exit at import"] = _discover(user / "run-import",
                                        "model.arch=python:exit_at_import:build", net)
    results = drive(user, {k: [str(a) for a in v] for k, v in cases.items()})
    said = {name: _one_line(results[name], 2) for name in
            ("exits", "stops", "exits_in_forward", "exit at import")}
    assert "SystemExit: 0 (usernet.py:" in said["exits"]
    assert "Stop: not an Exception (usernet.py:" in said["stops"]
    assert "step 1 raised SystemExit: 0 (usernet.py:" in said["exits_in_forward"]
    assert "SystemExit: 3 (exit_at_import.py:2)" in said["exit at import"]
    assert "interrupted" in _one_line(results["interrupts"], 130)
    for name in ("forks", "forks_and_returns"):
        check(results[name], 0)
        assert (user / f"run-{name}" / "ticket.slt").is_file()
    forked = [int(p.stem.split("-")[1]) for p in user.glob("child-*.pid")]
    returned = [int(p.stem.split("-")[1]) for p in user.glob("returned-*.pid")]
    assert len(forked) == 2 and len(returned) == 3  # a factory runs twice: meta device, real
    assert not [pid for pid in forked + returned if _alive(pid)]
    assert len(list((user / "run-forks_and_returns").glob("*"))) == 5  # one run, not two


def test_options_and_inputs_that_were_exit_1(good, user):
    """Options without a bound, and inputs that ended in exit 1 or were silently replaced:
    each is one line, exit 2, before the work starts."""
    from tests.cli_contract import idx_set, image_folder

    onnx_model = good / "model.onnx"
    bench = ["bench", onnx_model, "--engine", "dense"]
    small = idx_set(user / "small", train=(600, 8, 8), test=(32, 8, 8))
    mnist = af.write_ticket(good / "model.slt", user / "mnist.slt",
                            onnx.load(str(good / "model.onnx")))
    _record_data(mnist, {"name": "mnist", "root": str(idx_set(user / "idx"))})
    images = image_folder(user / "images")
    _text_bomb(next((images / "train").rglob("*.png")))
    export = ["export", mnist, "-f", "onnx", "-o", user / "q.onnx", "--quantize", "int8"]
    cases = {
        "bench --rounds 1e9": [*bench, "--rounds", "1000000000"],
        "bench --warmup 1e9": [*bench, "--warmup", "1000000000"],
        "bench --repeat 1e9": [*bench, "--repeat", "1000000000"],
        "bench --batch 100000": [*bench, "--batch", "100000"],
        "train.threads 4096": _discover(user / "r1", "train.threads=4096"),
        "data.workers 256": _discover(user / "r2", "data.workers=256"),
        "data.image_size 8192": _discover(user / "r3", "data.name=folder",
                                          f"data.root={images}", "data.image_size=[8192,8192]"),
        "a PNG's text chunk inflates too far": _discover(
            user / "r4", "data.name=folder", f"data.root={images}", "data.workers=0",
            "data.val_size=2"),
        "export --quantize int8 --data missing": [*export, "--data", user / "no/such/dir"],
        "export --quantize int8 --data 8x8": [*export, "--data", small],
    }
    results = drive(user, {k: [str(a) for a in v] for k, v in cases.items()})
    said = {name: _one_line(result, 2) for name, result in results.items()}
    for name, word in (("--rounds", "--rounds"), ("--warmup", "--warmup"),
                       ("--repeat", "--repeat"), ("--batch", "--batch"),
                       ("threads", "train.threads"), ("workers", "data.workers"),
                       ("image_size", "image_size"), ("text chunk", "decompression bomb"),
                       ("missing", "no such folder"), ("8x8", "8 x 8")):
        line = next(v for k, v in said.items() if name in k)
        assert word in line, line
    assert not (user / "q.onnx").exists()


def test_a_run_that_cannot_fit_in_memory_is_refused(user):
    """model.widths [15000, 15000] is under the weight limit, but its run needs about 11.5
    GiB (52 bytes a weight): where the process may have less (here ulimit -v 8 GiB) it is
    one line before a weight is made."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))

    proc = subprocess.run([sys.executable, "-m", "sltc.cli", *map(str, _discover(
        user / "wide", "model.widths=[15000,15000]"))], cwd=user, capture_output=True,
        text=True, timeout=TIMEOUT, preexec_fn=limit, env={**os.environ, "PYTHONPATH": str(ROOT)})
    line, = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "needs about 11.5 GiB of memory" in line, proc.stderr
    assert not (user / "wide").exists()


def _text_bomb(png: Path) -> None:
    """Add a zTXt chunk to ``png`` that inflates past Pillow's limit on text chunks."""
    import struct
    import zlib

    from PIL import PngImagePlugin

    data = png.read_bytes()
    text = b"k\0\0" + zlib.compress(b"a" * (PngImagePlugin.MAX_TEXT_CHUNK + 10), 9)
    chunk = struct.pack(">I", len(text)) + b"zTXt" + text + struct.pack(
        ">I", zlib.crc32(b"zTXt" + text))
    at = data.index(b"IDAT") - 4
    png.write_bytes(data[:at] + chunk + data[at:])


def test_environment_variables(good, user):
    """Variables torchrun or the user set: a value sltc reads is checked (one line, exit 2),
    one it passes on runs (exit 0)."""
    ticket = good / "model.slt"
    cases = {
        "WORLD_SIZE=abc": (_discover(user / "a"), {"WORLD_SIZE": "abc"}),
        "WORLD_SIZE=2 without RANK": (_discover(user / "b"), {"WORLD_SIZE": "2", "RANK": None}),
        "RANK=5 of 2": (_discover(user / "c"), {"WORLD_SIZE": "2", "RANK": "5"}),
        "LOCAL_RANK=x": (_discover(user / "d"), {"WORLD_SIZE": "2", "RANK": "0",
                                                  "LOCAL_RANK": "x"}),
        "SLTC_INT8_KERNELS=fast": (["export", ticket, "-f", "onnx", "--quantize", "int8-dynamic",
                                    "--no-check", "-o", user / "q.onnx"],
                                   {"SLTC_INT8_KERNELS": "fast"}),
        "OMP_NUM_THREADS=abc": (["inspect", ticket], {"OMP_NUM_THREADS": "abc"}),
        "SLTC_PROGRESS_SECONDS=abc": (["validate", ticket, "--engine", "dense"],
                                      {"SLTC_PROGRESS_SECONDS": "abc"}),
        "SLTC_MEMORY=lots": (["inspect", ticket], {"SLTC_MEMORY": "lots"}),
        "SLTC_MEMORY=512MiB": (["inspect", ticket], {"SLTC_MEMORY": "512MiB"}),
    }
    results = drive(user, {k: [str(a) for a in v[0]] for k, v in cases.items()},
                    {k: v[1] for k, v in cases.items()})
    for name in ("WORLD_SIZE=abc", "WORLD_SIZE=2 without RANK", "RANK=5 of 2", "LOCAL_RANK=x",
                 "SLTC_INT8_KERNELS=fast", "SLTC_MEMORY=lots", "SLTC_MEMORY=512MiB"):
        assert name.split("=")[0] in _one_line(results[name], 2)
    for name in ("OMP_NUM_THREADS=abc", "SLTC_PROGRESS_SECONDS=abc"):
        check(results[name], 0)
    assert not (user / "q.onnx").exists() and not list(user.glob("[abcd]"))


def test_a_model_you_trust_may_hold_more():
    """SLTC_MEMORY raises the bound of bytes alive at once (a size in bytes, KiB to TiB, never
    below the default), for a graph larger than files from anyone may be."""
    from sltc.format import limits

    assert limits.memory_limit(None) == limits.DEFAULT_MEMORY == 1 << 30
    assert limits.memory_limit("4GiB") == limits.memory_limit("4096 MiB") == 1 << 32
    assert limits.memory_limit(str(3 << 30)) == 3 << 30
    for bad in ("", "lots", "2 GB", "1MiB", "-4GiB", "nan", "1e300"):
        with pytest.raises(limits.SltcError, match="SLTC_MEMORY"):
            limits.memory_limit(bad)
    raised = subprocess.run([sys.executable, "-c", "from sltc.format import limits; "
                             "print(limits.MAX_GRAPH_BYTES)"], capture_output=True, text=True,
                            env={**os.environ, "SLTC_MEMORY": "4GiB"}, check=True)
    assert int(raised.stdout) == (1 << 32) - limits.BASELINE


# --- in process: the rules against the spec, the torch rebuild, the batch bounds ---------------

def _count(text: str) -> tuple[int, int]:
    low, _, high = text.strip().partition(" to ")
    return int(low), int(high or low)


def test_the_spec_lists_the_op_table():
    """docs/format.md section 2.6 lists every op of the table with its counts and
    attributes, and no other."""
    from sltc.format.ops import OPS

    text = (ROOT / "docs/format.md").read_text().split("### 2.6 Graph rules")[1]
    text = text.split("### 2.5")[0]
    listed = {}
    for line in text.splitlines():
        if line.startswith("| `"):
            ops, ins, outs, attrs = line.split("|")[1:5]
            for name in re.findall(r"`(\w+)`", ops):
                listed[name] = (_count(ins), _count(outs),
                                set(re.findall(r"`(\w+)`", attrs)) - set(OPS))
    assert listed.keys() == OPS.keys()
    for name, op in OPS.items():
        assert listed[name] == (op.inputs, op.outputs, set(op.attrs)), name


def test_the_spec_states_the_graph_limits():
    from sltc.format import limits

    def power(value: int) -> str:
        return f"2**{value.bit_length() - 1}"

    text = (ROOT / "docs/format.md").read_text()
    row = next(line for line in text.split("## 5. Load limits")[1].splitlines()
               if line.startswith("| a graph"))
    for value in (limits.MAX_GRAPH_NODES, limits.MAX_GRAPH_VALUES, limits.MAX_NODE_VALUES,
                  limits.MAX_VALUE_ELEMENTS, limits.MAX_GRAPH_WORK):
        assert power(value) in row, value
    bytes_at_once = f"{power(limits.MEMORY)} - {power(limits.BASELINE)}"
    assert limits.MAX_GRAPH_BYTES == limits.MEMORY - limits.BASELINE and bytes_at_once in row
    assert f"{limits.MAX_RANK} dimensions" in row
    rules = text.split("### 2.6 Graph rules")[1].split("### 2.5")[0]
    assert f"{limits.MAX_GRAPH_NODES:,} nodes" in rules and f"{graph_check.SMALL:,}" in rules
    assert f"{limits.MAX_GRAPH_BYTES:,}" in rules and f"{limits.MAX_GRAPH_VALUES:,}" in rules
    copies = graph_check.WEIGHT_COPIES
    assert (f"{copies['ort']} in the `ort` engine, {copies['csr']} in `csr`, "
            f"{copies['export']} in the ONNX export") in " ".join(rules.split())
    assert f"divided by {graph_check.MACS_PER_VISIT}" in rules
    assert f"plus {graph_check.NODE_WORK:,}." in rules
    assert "version {} to {}".format(*graph_check.OPSETS) in rules


def test_a_torch_rebuild_must_compute_the_skeleton(good):
    """model_from_ticket (for what needs torch modules) refuses a config that builds other
    layers and a skeleton that computes other logits; a user's network it never imports."""
    import torch

    from sltc.format.errors import TicketError
    from sltc.format.ticket import Ticket
    from sltc.rebuild import model_from_ticket

    ticket = Ticket.load(good / "model.slt")
    model_from_ticket(ticket)  # the valid one
    wider = Ticket.load(good / "model.slt")
    wider.meta["config"]["model"]["widths"] = [16, 32]
    with pytest.raises(TicketError, match="builds layer"):
        model_from_ticket(wider)
    negated = Ticket.load(good / "model.slt")
    graph = negated.skeleton.graph
    graph.node[-1].output[0] = "scores"
    graph.node.append(onnx.helper.make_node("Neg", ["scores"], ["logits"], name="negate"))
    with pytest.raises(TicketError, match="different logits"):
        model_from_ticket(negated)
    own = Ticket.load(good / "model.slt")
    own.meta["config"]["model"]["arch"] = f"python:{af.MARK_MODULE}:build"
    with pytest.raises(TicketError, match="pass the module"):
        model_from_ticket(own)
    assert af.MARK_MODULE not in sys.modules
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 64, bias=False),
                                torch.nn.ReLU(), torch.nn.Linear(64, 32, bias=False),
                                torch.nn.ReLU(), torch.nn.Linear(32, 10, bias=False))
    with pytest.raises(TicketError):  # its layer names are not the ticket's
        model_from_ticket(own, plain)


def test_every_command_computes_with_the_skeleton(good, tmp_path):
    """A skeleton with negated logits: eval, validate (every engine) and the export agree
    on what it computes, and score it far below the ticket's recorded accuracy."""
    from sltc.exporters import export
    from sltc.format.ticket import Ticket
    from sltc.runtime.validate import evaluate, validate

    ticket = Ticket.load(good / "model.slt")
    graph = ticket.skeleton.graph
    graph.node[-1].output[0] = "scores"
    graph.node.append(onnx.helper.make_node("Neg", ["scores"], ["logits"], name="negate"))
    path = tmp_path / "negated.slt"
    ticket.save(path)
    scores = {engine: validate(path, engine)["test_accuracy"] for engine in ENGINES}
    scores["eval"] = evaluate(path)["test_accuracy"]
    export(path, "onnx", tmp_path / "negated.onnx")  # the parity check passes
    scores["onnx"] = validate(tmp_path / "negated.onnx", "ort")["test_accuracy"]
    assert len(set(scores.values())) == 1, scores
    assert scores["eval"] < ticket.meta["test_accuracy"] - 0.5


def test_batch_bounds(good, monkeypatch):
    """Each batch size is checked before it runs, in the engine that runs it (its copies of
    the weights it hands to onnxruntime count); validate's batch keeps the bytes alive at
    once under the limit."""
    from sltc.format.errors import GraphError
    from sltc.runtime.loader import load

    model = load(good / "model.slt")
    bounds = model.graph.bounds
    one = bounds.peak[1]
    bounds.batch(1000)
    assert bounds.peak[1000] > bounds.peak[2] > one
    per_image = bounds.peak[2] - one
    assert bounds.handed == sum(a.nbytes for a in model.graph.folded().constants.values())
    assert bounds.held(1, "ort") == one + graph_check.WEIGHT_COPIES["ort"] * bounds.handed
    assert bounds.batch_for(1000) == 1000
    monkeypatch.setattr(graph_check, "MAX_GRAPH_BYTES", one + 10 * per_image)
    assert bounds.batch_for(1000) in (9, 10, 11) and bounds.batch_for(1000, "ort") < 9
    monkeypatch.setattr(graph_check, "MAX_GRAPH_BYTES", 1)
    assert bounds.batch_for(1000) == 1
    monkeypatch.undo()
    huge = graph_check.MAX_GRAPH_BYTES // per_image + 1
    with pytest.raises(GraphError, match="smaller batch"):
        bounds.batch(huge)


def test_initializer_names_are_unique_and_a_skeletons_output_declared():
    """Two initializers of one name are refused (which would fill it?); a skeleton declares
    its output float32 (N, classes), an ONNX file may leave it undeclared (format.md
    section 2.6, rules 3 and 6)."""
    from sltc.format.errors import GraphError

    twice = af.model(*af.head())
    twice.graph.initializer.append(twice.graph.initializer[0])
    with pytest.raises(GraphError, match="two initializers are named 'head.w'"):
        graph_check.check_model(twice)
    bare = af.model(*af.head())
    bare.graph.output[0].CopyFrom(onnx.helper.make_empty_tensor_value_info("logits"))
    assert graph_check.check_model(bare).classes == 10  # an ONNX file's
    with pytest.raises(GraphError, match="a skeleton declares its output"):
        graph_check.check_model(bare, (1, 28, 28), 10)
    wrong = af.model(*af.head())
    wrong.graph.output[0].type.tensor_type.elem_type = onnx.TensorProto.DOUBLE
    with pytest.raises(GraphError, match="declared float32"):
        graph_check.check_model(wrong)
