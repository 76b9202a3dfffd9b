"""Hostile and careless input through the real CLI, one subprocess per case.

Every case must end in exit code 2 with exactly one line on stderr starting with
``sltc: error:``, no traceback, a peak RSS under 1 GiB, within its timeout, and every
file of the user's as it was (``tests/cli_contract.py``). The classes: configs, resource
bombs, datasets, users' networks, files that load but do not validate (tickets, CSR, ONNX),
output paths, usage errors. Hypothesis drives the in-process parsers the same way
(``test_*_fuzz``). Run directories are ``tests/test_rundir.py``'s, the Python API's first
batch ``tests/test_api.py``'s.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from safetensors import safe_open
from safetensors.numpy import save_file

from sltc.config import from_dict
from sltc.config_yaml import load_config
from sltc.format import csrfile, limits
from sltc.format.errors import ConfigError, SltcError
from tests.cli_contract import (
    TIMEOUT,
    Case,
    assert_user_error,
    check_case,
    check_cases,
    first_csr,
    idx_set,
    image_folder,
    run_cli,
    write_csr,
    write_ticket,
)
from tests.helpers import ROOT

# --- the files the cases corrupt -------------------------------------------------------------

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


# --- datasets --------------------------------------------------------------------------------

def test_datasets_that_do_not_fit(good, user):
    """A decompression bomb in an image folder and a sparse 3 GB CIFAR file are one line
    within bounds; a test set whose images do not fit the model is named before it runs."""
    from PIL import Image

    bomb = image_folder(user / "bomb")
    Image.new("1", (30000, 30000)).save(bomb / "train/a/9.png")  # 900M pixels in 100 kB
    cifar = user / "cifar" / "cifar-10-batches-bin"
    cifar.mkdir(parents=True)
    for name in [f"data_batch_{i}.bin" for i in range(2, 6)] + ["test_batch.bin"]:
        (cifar / name).write_bytes(bytes(3073) * 10)
    with open(cifar / "data_batch_1.bin", "wb") as f:
        f.truncate(3 * 1024**3 // 3073 * 3073)  # sparse: whole records, all zero
    big = idx_set(user / "big", (64, 32, 32), (32, 32, 32))
    # no --json: refused before the first step, so before any progress line
    discover = ["discover", "examples/synthetic.yaml", "--set", "data.workers=0"]
    mnist = _mnist_ticket(good, user / "mnist.slt", big)
    check_cases({
        "decompression bomb": Case([*discover, "--set", "data.name=folder", "--set",
                                    f"data.root={bomb}", "--out", user / "b"], [bomb],
                                   "9.png: Image size (900000000 pixels)"),
        "sparse CIFAR file": Case([*discover, "--set", "data.name=cifar10", "--set",
                                   f"data.root={cifar.parent}", "--out", user / "c"], [],
                                  "larger than any CIFAR batch"),
        "eval 32x32 on 28x28": Case(["eval", mnist], [mnist, big], "the model takes 1 x 28 x 28"),
        "validate 32x32 on 28x28": Case(["validate", mnist, "--engine", "dense", "--data", big],
                                        [mnist, big], "the model takes")})


@pytest.mark.parametrize("name,make,message", [
    ("black", lambda root: idx_set(root, pixels=0), "every training pixel is 0"),
    ("zero height", lambda root: idx_set(root, (64, 0, 28), (32, 0, 28)), "[64, 0, 28] declares "
                                                                         "an empty dimension"),
    ("2-D labels", lambda root: idx_set(root, labels=2), "found shape [64, 2]"),
    ("test 32x32", lambda root: idx_set(root, test=(32, 32, 32)),
     "the training images are 1 x 28 x 28 but the test images 1 x 32 x 32")])
def test_datasets_checked_before_the_first_step(tmp_path, name, make, message):
    """The rest of the class: the loader refuses them, with what it found."""
    from sltc.data import load_dataset
    from sltc.format.errors import DataError

    root = make(tmp_path / "idx")
    cfg = from_dict({"data": {"name": "mnist", "root": str(root), "val_size": 16}}).data
    with pytest.raises(DataError, match=re.escape(message)):
        load_dataset(cfg, 0)


def test_image_folders_skip_what_is_not_a_file(tmp_path):
    """A FIFO or a folder named like an image is not read (a FIFO would block the reader)."""
    from sltc.folder import load_folder

    root = image_folder(tmp_path / "images")
    os.mkfifo(root / "train/a/pipe.png")
    (root / "train/b/folder.png").mkdir()
    split = load_folder(str(root), "train")
    assert len(split) == 8 and all(p.is_file() for p in split.paths)


# --- users' own networks ----------------------------------------------------------------------

USER_NETS = """
import torch
from torch import nn


class Pair(nn.Module):
    def __init__(self, shape, classes):
        super().__init__()
        self.fc = nn.Linear(shape[0] * shape[1] * shape[2], classes)

    def forward(self, x):
        y = self.fc(x.flatten(1))
        return y, y


class Keyed(Pair):
    def forward(self, x):
        return {"logits": self.fc(x.flatten(1))}


class InPlace(Pair):
    def forward(self, x):
        y = torch.sigmoid(self.fc(x.flatten(1)))
        y.mul_(2)  # sigmoid's backward needs the y it returned
        return y


class Scale(nn.Module):
    def __init__(self, shape, classes):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(classes))

    def forward(self, x):
        return x.flatten(1)[:, :10] * self.scale


class Recurrent(nn.Module):
    def __init__(self, shape, classes):
        super().__init__()
        self.rnn = nn.LSTM(shape[2], 16, batch_first=True)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(self.rnn(x[:, 0])[0][:, -1])


def pair(shape, classes):
    return Pair(shape, classes)


def keyed(shape, classes):
    return Keyed(shape, classes)


def in_place(shape, classes):
    return InPlace(shape, classes)


def no_gate(shape, classes):
    return Scale(shape, classes)


def lstm(shape, classes):
    return Recurrent(shape, classes)


def narrow(shape, classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(100, classes))


def huge(shape, classes):  # 2**29 weights, built in no memory on the meta device
    return nn.Sequential(nn.Flatten(), nn.Linear(shape[0] * shape[1] * shape[2], 16),
                         nn.Linear(16, 1 << 15), nn.Linear(1 << 15, 1 << 14),
                         nn.Linear(1 << 14, classes))


def raises(shape, classes):
    raise RuntimeError("widths must be even")


def plain(shape, classes, width=8):
    return nn.Sequential(nn.Flatten(), nn.Linear(shape[0] * shape[1] * shape[2], width),
                         nn.ReLU(), nn.Linear(width, classes))
"""


@pytest.fixture()
def nets(tmp_path):
    """A folder of a user's network modules: good ones, one that raises when imported and
    one with a syntax error."""
    (tmp_path / "usernets.py").write_text(USER_NETS)
    (tmp_path / "fails_import.py").write_text('raise RuntimeError("no GPU found")\n')
    (tmp_path / "bad_syntax.py").write_text("def net(shape, classes)\n    return None\n")
    return tmp_path


def test_users_networks_through_the_cli(nets):
    """The user's code is the user's: what it raises names their module and exception (exit
    2, not an internal error); a network that does not fit the data, returns a tuple, breaks
    autograd, has 2**29 weights or an nn.LSTM is refused before the first step."""
    run = ["discover", ROOT / "examples/synthetic.yaml", "--json", "--set", "model.widths=null",
           "--set", "train.epochs=1", "--set", "train.max_steps=2"]
    archs = {"fails_import:net": "importing fails_import raised RuntimeError: no GPU found "
                                 "(fails_import.py:1)",
             "usernets:in_place": "in-place operations",
             "usernets:huge": "537,620,762 weights, over",
             "usernets:lstm": "rnn: nn.LSTM"}
    modules = sorted(nets.glob("*.py"))  # not the __pycache__ that importing them may write
    check_cases({arch: Case([*run, "--set", f"model.arch=python:{arch}", "--out",
                             nets / arch.replace(":", "-")], modules, match, cwd=nets)
                 for arch, match in archs.items()})
    assert not [p for p in nets.iterdir() if p.is_dir() and p.name != "__pycache__"]


@pytest.mark.parametrize("arch,kwargs,message", [
    ("bad_syntax:net", {}, r"importing bad_syntax raised SyntaxError: expected ':' "
                           r"\(bad_syntax.py:1\)"),
    ("pair", {}, "returns a tuple of 2"),
    ("narrow", {}, r"mat1 and mat2 shapes cannot be multiplied \(2x784 and 100x10\); make its "
                   "input fit images of 1 x 28 x 28"),
    ("raises", {}, r"raises\(\(1, 28, 28\), 10\) raised RuntimeError: widths must be even "
                   r"\(usernets.py:\d+\)"),
    ("plain", {"depth": 3}, "unexpected keyword argument 'depth'; fix the factory or "
                            "model.kwargs"),
    ("keyed", {}, "returns a dict"),
    ("no_gate", {}, "no nn.Linear or nn.Conv2d layer that sltc gates")])
def test_users_networks_in_process(nets, monkeypatch, arch, kwargs, message):
    """The rest of the class, through the same Trainer, in this process."""
    from sltc.discover import Trainer
    from sltc.format.errors import SltcError

    monkeypatch.chdir(nets)
    monkeypatch.syspath_prepend(str(nets))
    monkeypatch.delitem(sys.modules, "usernets", raising=False)
    arch = arch if ":" in arch else f"usernets:{arch}"
    config = load_config(ROOT / "examples/synthetic.yaml", [
        f"model.arch=python:{arch}", "model.widths=null",
        f"model.kwargs={json.dumps(kwargs)}", "data.synthetic_size=64", "data.val_size=16"])
    with pytest.raises(SltcError, match=message):
        Trainer.from_config(config, torch.device("cpu"))


@pytest.mark.parametrize("layer", [
    torch.nn.GRU(4, 4), torch.nn.RNN(4, 4), torch.nn.LSTMCell(4, 4), torch.nn.Conv1d(1, 4, 3),
    torch.nn.ConvTranspose2d(1, 4, 3), torch.nn.Embedding(10, 4), torch.nn.Bilinear(4, 4, 4),
    torch.nn.TransformerEncoderLayer(4, 2)], ids=lambda m: type(m).__name__)
def test_ungateable_layers_are_refused_with_advice(layer):
    """Never trained silently ungated: every layer holding weights sltc cannot gate."""
    from sltc.format.errors import NetworkError
    from sltc.layers import gate

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), layer)
    with pytest.raises(NetworkError, match=r"1(\.self_attn)?: nn\.\w+ .*(cannot|can't) be gated.*; "
                                           r"(write|use)"):
        gate(model, from_dict({}))


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


def _mnist_ticket(good: Path, dest: Path, root: Path) -> Path:
    """The good ticket, recording an IDX dataset in ``root`` (its parity check reads it)."""
    return write_ticket(good, dest, lambda h: h["meta"]["config"]["data"].update(
        name="mnist", root=str(root)))


def test_no_command_writes_over_its_inputs(good, synthetic_run, user):
    """Every command that writes refuses an output path that is one of its inputs (the
    same path, through a symlinked folder, or a hard link), a file of the run it reads, or
    its dataset; the file stays as it was."""
    shutil.copytree(good, user / "good")
    good = user / "good"
    run = user / "run"
    shutil.copytree(synthetic_run, run)
    os.link(good / "model.slt", user / "linked.slt")
    (user / "via").symlink_to(good, target_is_directory=True)
    data = user / "idx"
    data.mkdir()
    (data / "t10k-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03" + bytes(12))
    ticket, onnx_model = good / "model.slt", good / "model.onnx"
    mnist = _mnist_ticket(good, user / "mnist.slt", data)
    watch = [good, run, data, user / "mnist.slt"]
    cases = {
        "export -o TICKET": Case(["export", ticket, "-f", "ticket", "-o", ticket]),
        "export -o hard link": Case(["export", ticket, "-f", "csr", "-o", user / "linked.slt"]),
        "export -o symlinked folder": Case(["export", ticket, "-f", "onnx", "--no-check", "-o",
                                            user / "via/model.slt"]),
        "export -o its test set": Case(["export", mnist, "-f", "csr", "-o",
                                        data / "t10k-images-idx3-ubyte"]),
        "inspect --plot TICKET": Case(["inspect", ticket, "--plot", ticket]),
        "bench --plot MODEL": Case(["bench", onnx_model, "--plot", onnx_model]),
        "freeze -o checkpoint": Case(["freeze", run, "-o", run / "checkpoint.safetensors"]),
        "freeze -o metrics": Case(["freeze", run, "-o", run / "metrics.jsonl"]),
        "plot -o metrics": Case(["plot", run, "-o", run / "metrics.jsonl"]),
        "plot -o ticket": Case(["plot", run, "-o", run / "ticket.slt"]),
        "plot -o config": Case(["plot", run, "-o", run / "config.yaml"]),
    }
    for case in cases.values():
        case.watch, case.match = watch, "cannot write"
    check_cases(cases)


def test_output_checks_in_process(good, tmp_path):
    """The one helper behind every command that writes: what it refuses, what it allows."""
    from sltc.data import dataset_files
    from sltc.format.outputs import check_output
    from sltc.rundir import own_files

    folder = tmp_path / "images"
    (folder / "train/cat").mkdir(parents=True)
    cfg = from_dict({"data": {"name": "folder", "root": str(folder)}}).data
    trees = dataset_files(cfg)
    for inside in (folder / "train/cat/new.png", folder / "new.png"):  # the dataset's folder
        with pytest.raises(SltcError, match="lies inside"):
            check_output(inside, trees)
    check_output(tmp_path / "new.png", trees)  # beside it
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "metrics.jsonl").write_text("")
    check_output(run / "ticket.slt", own_files(run, ticket=False),  # freeze writes it
                 owned=[run / "ticket.slt"])
    with pytest.raises(SltcError, match="reads or must keep"):
        check_output(run / "ticket.slt", own_files(run))
    for name in ("config.yaml", "metrics.jsonl", "checkpoint.safetensors", "ticket.slt",
                 "summary.json"):  # a run's files, whoever reads what
        with pytest.raises(SltcError, match="of the run in"):
            check_output(run / name, [good / "model.slt"])
    check_output(run / "model.onnx", [good / "model.slt"])  # a file of the user's own
    os.mkfifo(tmp_path / "fifo")
    for special, kind in ((tmp_path / "fifo", "a FIFO"), ("/dev/null", "a character device"),
                          (tmp_path, "a directory")):
        with pytest.raises(SltcError, match=kind):
            check_output(special, [good / "model.slt"])
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(SltcError, match="cannot follow"):
        check_output(tmp_path / "loop", [good / "model.slt"])


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


def test_csr_sparsity_must_agree_with_the_masks(good):
    with safe_open(str(good / "model.csr.safetensors"), "np") as f:
        manifest = json.loads(f.metadata()["sltc"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    gated = [layer for layer in manifest["layers"] if layer["granularity"] is not None]
    kept = sum(layer["nnz"] for layer in gated)
    assert manifest["sparsity"] == 1 - kept / sum(np.prod(x["shape"]) for x in gated)
    csrfile.check(manifest, tensors)
    manifest["sparsity"] = round(1 - manifest["sparsity"], 3)
    with pytest.raises(SltcError, match="manifest.sparsity .* disagrees with the masks"):
        csrfile.check(manifest, tensors)


def test_the_spec_states_the_limits():
    """docs/format.md section 5 gives every load limit as sltc/format/limits.py enforces it."""

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
    from sltc import config, config_yaml

    row = rows["a config file"]
    assert power(config_yaml.MAX_CONFIG_BYTES) in row and f"{config_yaml.MAX_CONFIG_NODES:,}" in row
    assert f"nesting {config_yaml.MAX_CONFIG_DEPTH} deep" in row
    from sltc import models

    row = rows["config values"]
    assert f"sides up to {config.MAX_IMAGE_SIDE:,}" in row
    assert f"`data.workers` up to {config.DataConfig.model_fields['workers'].metadata[1].le}" in row
    assert f"{models.TRAINING_BYTES} bytes a weight" in row
