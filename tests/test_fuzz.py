"""Hostile and careless input through the real CLI, one subprocess per case.

Every case must end in exit code 2 with exactly one line on stderr starting with
``sltc: error:``, no traceback, a peak RSS under 1 GiB, within its timeout, and every
file of the user's as it was. The classes: configs, resource bombs, files that load but
do not validate (tickets, CSR, ONNX), output paths and run directories, usage errors.
Hypothesis drives the in-process parsers the same way (``test_*_fuzz``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from safetensors import safe_open
from safetensors.numpy import save_file

from sltc.config import from_dict, load_config
from sltc.errors import ConfigError, SltcError
from sltc.runtime import csrfile
from tests.helpers import ROOT, reseal_ticket, ticket_header

MEMORY_LIMIT = 1 << 30
TIMEOUT = 60


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    peak_rss: int  # bytes
    seconds: float


# Runs the CLI and writes its peak RSS (kB) to $RSS_FILE. A child forked straight from
# pytest would count pytest's own pages in its peak (ru_maxrss includes the time before
# exec); one forked from this small process does not.
MEASURE = """
import os, resource, subprocess, sys
code = subprocess.call([sys.executable, "-m", "sltc.cli", *sys.argv[1:]])
with open(os.environ["RSS_FILE"], "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code if code >= 0 else 128 - code)
"""


def run_cli(*args, cwd=ROOT, timeout: float = TIMEOUT, env=None) -> Result:
    """The real CLI in a subprocess, with its peak RSS and a hard timeout."""
    with tempfile.TemporaryDirectory() as tmp:
        rss = Path(tmp) / "rss"
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT),
               "RSS_FILE": str(rss), **(env or {})}
        tic = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", MEASURE, *map(str, args)], cwd=cwd,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                start_new_session=True)
        timer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
        timer.start()
        out, err = proc.communicate()
        timer.cancel()
        seconds = time.perf_counter() - tic
        peak = int(rss.read_text()) * 1024 if rss.exists() else MEMORY_LIMIT
        return Result(proc.returncode, out.decode(errors="replace"),
                      err.decode(errors="replace"), peak, seconds)


def snapshot(*roots: Path) -> dict[str, str]:
    """Path -> SHA-256 of every file under ``roots`` (what must not change)."""
    files = {}
    for root in roots:
        for path in [root] if root.is_file() else sorted(root.rglob("*")):
            if path.is_file():
                files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def assert_user_error(result: Result, timeout: float = TIMEOUT, code: int = 2) -> str:
    """The contract for a user mistake; returns the message."""
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert result.code == code, (result.code, result.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("sltc: error: "), result.stderr[-2000:]
    assert result.peak_rss < MEMORY_LIMIT, result.peak_rss
    assert result.seconds < timeout
    return lines[0]


@dataclass
class Case:
    args: list
    watch: list = field(default_factory=list)  # files and folders that must not change
    match: str | None = None  # a word the message must hold
    cwd: Path = ROOT


def check_cases(cases: dict[str, Case]) -> None:
    """Run every case (two at a time: each is mostly one CPU-bound start-up) and check each
    against the contract; one failure report names every case that broke it."""
    before = {name: snapshot(*case.watch) for name, case in cases.items()}
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(cases, pool.map(lambda c: run_cli(*c.args, cwd=c.cwd),
                                           cases.values()), strict=True))
    failures = []
    for name, case in cases.items():
        try:
            message = assert_user_error(results[name])
            assert snapshot(*case.watch) == before[name], "a file of the user's changed"
            assert case.match is None or case.match.lower() in message.lower(), message
        except AssertionError as e:
            failures.append(f"{name}: {e}")
    assert not failures, "\n".join(failures)


def check_case(args, watch=(), match: str | None = None, cwd=ROOT) -> None:
    check_cases({"case": Case(list(args), list(watch), match, cwd)})


# --- the files the cases corrupt -------------------------------------------------------------

@pytest.fixture(scope="module")
def good(synthetic_run, tmp_path_factory):
    """A valid ticket, its CSR export (implied and stored values) and ONNX export."""
    from sltc.exporters import export

    root = tmp_path_factory.mktemp("good")
    ticket = root / "model.slt"
    shutil.copy(synthetic_run / "ticket.slt", ticket)
    for name, fmt, kw in (("model.csr.safetensors", "csr", {}),
                          ("stored.csr.safetensors", "csr", {"values": "stored"}),
                          ("model.onnx", "onnx", {"check": False})):
        export(ticket, fmt, root / name, **kw)
    return root


@pytest.fixture()
def user(tmp_path):
    """A folder of the user's that the cases write into (or must not)."""
    (tmp_path / "notes.txt").write_text("mine\n")
    return tmp_path


def write_ticket(good: Path, dest: Path, edit) -> Path:
    data = (good / "model.slt").read_bytes()
    header = ticket_header(data)
    edit(header)
    dest.write_bytes(reseal_ticket(data, header))
    return dest


def write_csr(good: Path, dest: Path, edit, source="model.csr.safetensors") -> Path:
    with safe_open(str(good / source), "np") as f:
        manifest = json.loads(f.metadata()["sltc"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    edit(manifest, tensors)
    save_file(tensors, str(dest), metadata={"sltc": json.dumps(manifest)})
    return dest


def first_csr(manifest: dict) -> str:
    return next(layer["name"] for layer in manifest["layers"] if layer["storage"] == "csr")


# --- 1. configs ------------------------------------------------------------------------------

def _alias_bomb() -> str:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(8):
        prev, name = chr(97 + i), chr(98 + i)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\nmodel:\n  widths: *i\n"


CONFIG_FILES = {
    "alias-bomb": _alias_bomb(),
    "deep": "model: " + "[" * 50000 + "]" * 50000 + "\n",
    "list": "- 1\n- 2\n",
    "tabs": "model:\n\twidths: [1]\n",
}


def test_configs(tmp_path):
    """Files that are not configs, and overrides out of range, stop before any work."""
    cases = {}
    for name, text in CONFIG_FILES.items():
        (tmp_path / f"{name}.yaml").write_text(text)
        cases[name] = Case(["discover", tmp_path / f"{name}.yaml", "--set", "seed=1", "--out",
                            tmp_path / name], [tmp_path / f"{name}.yaml"])
    (tmp_path / "latin1.yaml").write_bytes("seed: 1  # caf\xe9\n".encode("latin-1"))
    cases["latin1"] = Case(["discover", tmp_path / "latin1.yaml", "--out", tmp_path / "l"],
                           [tmp_path / "latin1.yaml"], "UTF-8")
    os.mkfifo(tmp_path / "fifo.yaml")
    cases["fifo"] = Case(["discover", tmp_path / "fifo.yaml", "--out", tmp_path / "f"], [],
                         "not a regular file")
    for i, override in enumerate(["model.widths=[1000000000]", "train.lr=.inf",
                                  "model.widths=[60000,60000,60000]"]):  # the CLI's share
        cases[override] = Case(["discover", "examples/synthetic.yaml", "--set", override,
                                "--out", tmp_path / f"o{i}"], [ROOT / "examples"])
    check_cases(cases)
    assert not [p for p in tmp_path.iterdir() if p.is_dir()], "a refused run made its folder"


OVERRIDES = ["model.widths=[0]", "model.widths=[-5]", "model.widths=[1000000000]",
             "data.synthetic_size=100000000000", "train.lr=1e300", "train.lr=.inf",
             "gates.sigma=.inf", "gates.controller_gain=.inf", "model=5", "model.widths.x=1",
             "=1", "train.lr=[[[[[[[[1]]]]]]]]", "data.synthetic_shape=[3,8192,8192]"]


@pytest.mark.parametrize("override", OVERRIDES)
def test_config_override_in_process(override):
    """Every override of the list is refused by the config alone (the CLI runs a sample)."""
    with pytest.raises(ConfigError):
        load_config(ROOT / "examples/synthetic.yaml", [override])


_yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4), max_leaves=12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(section=st.sampled_from(["model", "data", "gates", "train", "seed", "version", "x"]),
       key=st.sampled_from(["widths", "depth", "lr", "sigma", "synthetic_size", "name",
                            "augment", "epochs", "lambda", "kwargs", "image_size"]),
       value=_yaml_values)
def test_config_fuzz(section, key, value):
    """Any value under any key is a valid config or a ConfigError, nothing else."""
    try:
        from_dict({section: {key: value}} if section not in ("seed", "version") else
                  {section: value}, names=False)
    except ConfigError:
        pass


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=200))
def test_config_text_fuzz(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("yaml") / "c.yaml"
    path.write_text(text)
    try:
        load_config(path, ["train.epochs=1"])
    except ConfigError:
        pass


# --- 2. resource bombs -----------------------------------------------------------------------

def test_resource_bombs(good, tmp_path):
    """Inputs that would read or allocate without end are refused before they do."""
    os.mkfifo(tmp_path / "pipe.slt")

    def huge(h):
        h["layers"][0].update(shape=[32768, 32768], fan_in=32768, mask_shape=[32768, 32768])

    def pad(manifest, tensors):
        manifest["padding"] = "x" * (csrfile.MAX_MANIFEST_BYTES + 1)

    cases = {f"{command} {device}": Case([command, device], [], "not a regular file")
             for command in ("inspect", "validate") for device in ("/dev/zero", "/dev/urandom")}
    cases["fifo"] = Case(["inspect", tmp_path / "pipe.slt"], [], "not a regular file")
    cases["32768x32768 layer"] = Case(["inspect", write_ticket(good, tmp_path / "h.slt", huge)],
                                      [tmp_path / "h.slt"], "more than")
    cases["16 MiB manifest"] = Case(["validate", write_csr(good, tmp_path / "p.csr.safetensors",
                                                            pad), "--engine", "dense"],
                                    [tmp_path / "p.csr.safetensors"], "manifest")
    check_cases(cases)


def test_gzip_bomb_dataset(user):
    """An IDX file whose gzip stream inflates to 2 GiB past its header is read no further
    than the header declares."""
    import gzip

    data = user / "data"
    data.mkdir()
    member = gzip.compress(bytes(1 << 26), compresslevel=1)  # 64 MiB of zeros
    header = b"\0\0\x08\x03" + b"".join(n.to_bytes(4, "big") for n in (1000, 28, 28))
    (data / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header) + member * 32)
    labels = b"\0\0\x08\x01" + (1000).to_bytes(4, "big") + bytes(1000)
    (data / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    check_case(["discover", "examples/synthetic.yaml", "--set", "data.name=fashion_mnist",
                "--set", f"data.root={data}", "--out", user / "run"], [data], "IDX size")


# --- 3. loaded but not validated -------------------------------------------------------------

TICKET_EDITS = {
    "meta-list": (lambda h: h.update(meta=[]), "validate"),
    "input-shape": (lambda h: h["meta"].update(input_shape=[1, -28, 28]), "validate"),
    "classes": (lambda h: h["meta"].update(classes="ten"), "validate"),
    "std-zero": (lambda h: h["meta"]["preprocessing"].update(std=0), "validate"),
    "config-type": (lambda h: h["meta"].update(config=[1]), "export"),
    "config-data": (lambda h: h["meta"]["config"]["data"].update(synthetic_size=10**12),
                    "validate"),
    "layer-tensor": (lambda h: h["layers"][0].update(tensor="missing.weight"), "validate"),
}


def test_tickets_that_load_but_do_not_validate(good, tmp_path):
    cases = {}
    for name, (edit, command) in TICKET_EDITS.items():
        path = write_ticket(good, tmp_path / f"{name}.slt", edit)
        args = {"eval": ["eval", path], "validate": ["validate", path, "--engine", "dense"],
                "export": ["export", path, "-f", "onnx", "-o", tmp_path / f"{name}.onnx"]}
        cases[name] = Case(args[command], [path])
    check_cases(cases)
    assert not list(tmp_path.glob("*.onnx"))


def _set_layer(key, value):
    def edit(manifest, tensors):
        name = first_csr(manifest)
        tensors[f"{name}.{key}"] = value(tensors[f"{name}.{key}"])
    return edit


def _manifest(update):
    def edit(manifest, tensors):
        update(manifest, first_csr(manifest))
    return edit


CSR_EDITS = {
    "indptr-falls": _set_layer("indptr", lambda a: a[::-1].copy()),
    "indptr-start": _set_layer("indptr", lambda a: a + 1),
    "indices-out-of-range": _set_layer("indices", lambda a: a + 10**6),
    "indices-float": _set_layer("indices", lambda a: a.astype(np.float32)),
    "indices-int64": _set_layer("indices", lambda a: a.astype(np.int64)),
    "indices-uint8": _set_layer("indices", lambda a: a.astype(np.uint8)),
    "indices-duplicate": _set_layer("indices", lambda a: np.concatenate([a[:1], a[:-1]])),
    "indices-missing": lambda m, t: t.pop(f"{first_csr(m)}.indices"),
    "storage": _manifest(lambda m, name: m["layers"][0].update(storage="coo")),
    "stray-values": lambda m, t: t.update({f"{first_csr(m)}.values": np.zeros(3, np.float32)}),
    "nnz": _manifest(lambda m, name: [x.update(nnz=x["nnz"] + 1) for x in m["layers"]
                                      if x["name"] == name]),
    "seed": _manifest(lambda m, name: m.update(seed=-1)),
    "data": _manifest(lambda m, name: m.update(data={"name": "synthetic",
                                                     "synthetic_size": 10**12})),
    "not-json": None,
}
STORED_EDITS = {
    "values-short": _set_layer("values", lambda a: a[:-1].copy()),
    "values-float16": _set_layer("values", lambda a: a.astype(np.float16)),
}


def test_csr_files_against_the_spec(good, tmp_path):
    cases = {}
    for name in [*CSR_EDITS, *STORED_EDITS]:
        path = tmp_path / f"{name}.csr.safetensors"
        if name == "not-json":
            save_file({"x": np.zeros(3, np.float32)}, str(path), metadata={"sltc": "{not json"})
        elif name in STORED_EDITS:
            write_csr(good, path, STORED_EDITS[name], "stored.csr.safetensors")
        else:
            write_csr(good, path, CSR_EDITS[name])
        cases[name] = Case(["validate", path, "--engine", "dense"], [path])
    check_cases(cases)


def _foreign_onnx(path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])], "foreign",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3]) for n in "ab"],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["N", 3])])
    onnx.save(helper.make_model(graph), str(path))


def _damaged_metadata(good: Path, path: Path, key: str, value: str) -> None:
    model = onnx.load(str(good / "model.onnx"))
    next(p for p in model.metadata_props if p.key == key).value = value
    onnx.save(model, str(path))


ONNX_CASES = {
    "empty": lambda good, p: p.write_bytes(b""),
    "random": lambda good, p: p.write_bytes(np.random.default_rng(0).bytes(4096)),
    "foreign": lambda good, p: _foreign_onnx(p),
    "data": lambda good, p: _damaged_metadata(good, p, "sltc.data", "{broken"),
    "accuracy": lambda good, p: _damaged_metadata(good, p, "sltc.test_accuracy", "high"),
}


def test_onnx_files(good, tmp_path):
    cases = {}
    for name, make in ONNX_CASES.items():
        make(good, tmp_path / f"{name}.onnx")
        cases[name] = Case(["validate", tmp_path / f"{name}.onnx"], [tmp_path / f"{name}.onnx"])
    check_cases(cases)


# --- 4. output paths and run directories -----------------------------------------------------

def test_output_paths_and_run_directories(good, synthetic_run, user):
    """Nothing is written where it cannot be, and no previous run or config is overwritten."""
    old = user / "old"  # a run directory without its checkpoint (copied, or cleaned) is a run
    shutil.copytree(synthetic_run, old)
    (old / "checkpoint.safetensors").unlink()
    home = user / "home"  # the user's own config.yaml, with --out .
    home.mkdir()
    shutil.copy(ROOT / "examples/synthetic.yaml", home / "config.yaml")
    export = ["export", good / "model.slt", "-f", "csr", "-o"]
    cases = {
        "export -o DIR": Case([*export, user], [user, good]),
        "export -o FILE/x": Case([*export, user / "notes.txt" / "m.onnx"], [user, good]),
        "export -o /proc": Case([*export, "/proc/sltc-test.onnx"], [good]),
        "discover --out FILE": Case(["discover", "examples/synthetic.yaml", "--out",
                                     user / "notes.txt"], [user / "notes.txt"], "is a file"),
        "discover into a run": Case(["discover", "examples/synthetic.yaml", "--out", old],
                                    [old], "already holds"),
        "discover --out .": Case(["discover", "config.yaml", "--out", "."], [home],
                                 "already holds", cwd=home),
    }
    check_cases(cases)


def test_two_discovers_into_one_directory(user):
    """Started together, one holds the directory and finishes; the other is refused."""
    out = user / "run"
    args = [sys.executable, "-m", "sltc.cli", "discover", "examples/synthetic.yaml", "--out",
            out, "--set", "train.epochs=10", "--json"]
    procs = [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [(p.communicate(timeout=300), p.returncode) for p in procs]
    (done, _), = [r for r in results if r[1] == 0]
    ((_, refused), code), = [r for r in results if r[1] != 0]
    assert json.loads(done[0].splitlines()[-1])["epochs"] == 10
    assert code == 2 and "in use by another sltc discover" in refused, refused
    assert len(refused.strip().splitlines()) == 1


def _resumable(synthetic_run, user) -> Path:
    run = user / "run"
    shutil.copytree(synthetic_run, run)
    for name in ("ticket.slt", "summary.json"):
        (run / name).unlink()
    return run


def _rewrite_checkpoint(path: Path, edit) -> None:
    with safe_open(str(path), "np") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    edit(meta, tensors)
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize("damage", ["state-keys", "optimizer-shapes"])
def test_resume_damaged_checkpoint(damage, synthetic_run, user):
    run = _resumable(synthetic_run, user)

    def edit(meta, tensors):
        if damage == "state-keys":
            meta["state"] = json.dumps({"epoch": 3})
        else:
            key = next(k for k in tensors if k.startswith("optim.") and tensors[k].ndim)
            tensors[key] = np.zeros((7, 3), tensors[key].dtype)
    _rewrite_checkpoint(run / "checkpoint.safetensors", edit)
    check_case(["discover", run / "config.yaml", "--out", run, "--resume", "--set",
                "train.epochs=4"], [run], "checkpoint" if damage == "state-keys" else "optimizer")


@pytest.mark.parametrize("metrics", ["partial-line", "missing"])
def test_resume_after_a_kill_mid_append(metrics, synthetic_run, user):
    """What a kill leaves in metrics.jsonl is no reason to fail: the run goes on."""
    run = _resumable(synthetic_run, user)
    path = run / "metrics.jsonl"
    if metrics == "missing":
        path.unlink()
    else:
        path.write_text(path.read_text() + '{"epoch": 4, "loss": 0.')
    result = run_cli("discover", run / "config.yaml", "--out", run, "--resume", "--set",
                     "train.epochs=4", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["test_accuracy"] is not None
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[-1]["epoch"] == 4


def test_stale_temp_files_are_removed(good, user):
    """A temp file left by a killed export goes with the next export of that file."""
    stale = user / ".m.onnx.999999999.abcdef.tmp"  # a pid no process has
    stale.write_bytes(b"partial")
    result = run_cli("export", good / "model.slt", "-f", "onnx", "--no-check", "-o",
                     user / "m.onnx", "--json")
    assert result.code == 0, result.stderr
    assert not stale.exists() and (user / "m.onnx").is_file()


# --- 5. usage, exit codes --------------------------------------------------------------------

def test_usage_errors_are_one_line():
    check_cases({
        "missing argument": Case(["bench"], match="models"),
        "out of range": Case(["bench", "m.onnx", "--threads", "0"], match="--threads"),
        "unknown option": Case(["inspect", "--frobnicate", "x.slt"], match="--frobnicate"),
        "missing option": Case(["export", "x.slt", "-o", "y"], match="--format"),
    })


def test_validate_below_tolerance_exits_3(good, user):
    """A model that scores far below its recorded accuracy fails validation."""
    path = write_csr(good, user / "neg.csr.safetensors",
                     lambda m, t: t.update({k: -v for k, v in t.items() if k.endswith(".values")}),
                     "stored.csr.safetensors")
    result = run_cli("validate", path, "--engine", "dense")
    message = assert_user_error(result, code=3)
    assert "below the recorded" in message


def test_interrupted_discover_says_how_to_resume(user):
    out = user / "run"
    proc = subprocess.Popen([sys.executable, "-m", "sltc.cli", "discover",
                             "examples/synthetic.yaml", "--out", out, "--set",
                             "train.epochs=200"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            # a CI job started in the background may ignore SIGINT, and a
                            # child inherits that: give it the terminal's default back
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + TIMEOUT
    while not (out / "checkpoint.safetensors").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("sltc: error: interrupted") and "--resume" in last, err[-1000:]
    assert "sltc: interrupted" not in err, "the interruption is said once"


# --- the in-process loaders, under hypothesis ------------------------------------------------

@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_csr_manifest_fuzz(good, data):
    """Any edit of one manifest value is a valid export or a SltcError."""
    with safe_open(str(good / "model.csr.safetensors"), "np") as f:
        manifest = json.loads(f.metadata()["sltc"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    layer = data.draw(st.sampled_from(manifest["layers"]))
    key = data.draw(st.sampled_from(sorted(layer)))
    layer[key] = data.draw(_yaml_values)
    try:
        csrfile.check(manifest, tensors)
    except SltcError:
        pass


def test_the_spec_states_the_limits():
    """docs/format.md section 5 gives every load limit as sltc/limits.py enforces it."""
    from sltc import limits

    text = (ROOT / "docs/format.md").read_text().split("## 5. Load limits")[1]
    rows = {line.split("|")[1].strip(): line.split("|")[2] for line in text.splitlines()
            if line.startswith("| ") and "---" not in line}

    def power(value: int) -> str:
        return f"2**{value.bit_length() - 1}"

    assert power(limits.MAX_TICKET_BYTES) in rows["a ticket file"]
    assert power(limits.MAX_HEADER_BYTES) in rows["a ticket header"]
    assert power(limits.MAX_WEIGHTS) in next(v for k, v in rows.items() if k.startswith("weights"))
    assert power(limits.MAX_SKELETON_BYTES) in rows["an inflated skeleton"]
    assert power(limits.MAX_CSR_BYTES) in rows["a CSR export"]
    assert power(limits.MAX_MANIFEST_BYTES) in rows["a CSR export"]
    assert power(limits.MAX_ONNX_BYTES) in rows["an ONNX file"]
    assert power(limits.MAX_CHECKPOINT_BYTES) in rows["a checkpoint"]
    assert power(limits.MAX_METRICS_BYTES) in rows["a checkpoint"]
    assert power(limits.MAX_DATA_BYTES) in next(v for k, v in rows.items() if "dataset" in k)
    from sltc import config

    row = rows["a config file"]
    assert power(config.MAX_CONFIG_BYTES) in row and f"{config.MAX_CONFIG_NODES:,}" in row
    assert f"nesting {config.MAX_CONFIG_DEPTH} deep" in row
