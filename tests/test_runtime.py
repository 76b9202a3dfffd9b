"""The torch-free runtime: no torch import, engines agree, bench and validate through the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sltc.exporters import export
from sltc.figures import pyplot
from sltc.runtime.engines import ENGINES, prepare
from sltc.runtime.loader import load
from tests.helpers import ROOT, sltc

pytest.importorskip("onnxruntime")

BENCH_KEYS = ("engine", "provider", "batch", "threads", "p50_ms", "p90_ms", "p99_ms",
              "throughput", "load_s", "peak_rss_mb", "file_bytes")


@pytest.fixture(scope="module")
def exports(synthetic_run, tmp_path_factory):
    d = tmp_path_factory.mktemp("exports")
    paths = {"ticket": synthetic_run / "ticket.slt", "csr": d / "m.csr.safetensors",
             "onnx": d / "m.onnx"}
    export(paths["ticket"], "csr", paths["csr"])
    export(paths["ticket"], "onnx", paths["onnx"])
    return paths


TORCH_FREE = """
import importlib, pkgutil, sys
import numpy as np
import sltc.runtime
for mod in pkgutil.walk_packages(sltc.runtime.__path__, "sltc.runtime."):
    importlib.import_module(mod.name)
from sltc.runtime.engines import ENGINES, prepare
from sltc.runtime.loader import load
from sltc.runtime.validate import validate
x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
for path in sys.argv[1:]:
    m = load(path)
    for engine in ENGINES.names():
        prepare(m, engine)(x)
    validate(path)
assert "torch" not in sys.modules, "torch was imported"
print("torch-free")
"""


def test_runtime_never_imports_torch(exports):
    proc = subprocess.run([sys.executable, "-c", TORCH_FREE, *map(str, exports.values())],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "torch-free"


VALIDATE_LOADS = """
import sys
if sys.argv[2] == "cli":
    from sltc.cli import main
    sys.argv = ["sltc", "validate", sys.argv[1], "--json"]
    try:
        main()
    except SystemExit as e:
        assert not e.code, e.code
else:
    from sltc.runtime.validate import validate
    validate(sys.argv[1])
print(" ".join(m for m in ("torch", "pydantic", "yaml") if m in sys.modules) or "none")
"""


@pytest.mark.parametrize("kind", ["onnx", "csr", "ticket"])
def test_validate_loads_no_torch_pydantic_or_yaml(exports, kind):
    """Validation imported and run, of a ticket or an export, loads none of the training
    side's libraries. The command adds typer's pydantic (typer 0.27 validates through it),
    never torch."""
    def loaded(how: str) -> str:
        proc = subprocess.run([sys.executable, "-c", VALIDATE_LOADS, str(exports[kind]), how],
                              cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip().splitlines()[-1]

    assert loaded("api") == "none"
    assert "torch" not in loaded("cli")


def test_engines_agree(exports):
    x = np.random.default_rng(1).random((16, 1, 28, 28), dtype=np.float32)
    reference = prepare(load(exports["ticket"]), "dense")(x)
    for kind, path in exports.items():
        model = load(path)
        for engine in ENGINES.names():
            got = prepare(model, engine)(x)
            assert np.abs(got - reference).max() < 1e-4, (kind, engine)
    for batch in (1, 3):
        assert np.allclose(prepare(load(exports["csr"]), "csr")(x[:batch]), reference[:batch],
                           atol=1e-5)


def test_validate_reproduces_accuracy_through_every_engine(exports, synthetic_run):
    recorded = json.loads((synthetic_run / "summary.json").read_text())["test_accuracy"]
    for path in exports.values():
        for engine in ENGINES.names():
            out = json.loads(sltc("validate", path, "--engine", engine, "--json",
                                  check=True).stdout.strip().splitlines()[-1])
            assert out["test_accuracy"] == pytest.approx(recorded, abs=1e-9)
            assert out["recorded_accuracy"] == pytest.approx(recorded)


def test_require_gpu_fails_clearly_without_one(exports):
    from sltc.runtime.validate import gpu_available

    if gpu_available("ort"):
        pytest.skip("a GPU runtime is present")
    proc = sltc("validate", exports["onnx"], "--require-gpu")
    assert proc.returncode == 2
    line, = proc.stderr.strip().splitlines()
    assert "--require-gpu" in line
    proc = sltc("validate", exports["onnx"], "--provider", "cuda")
    assert proc.returncode == 2 and "CUDAExecutionProvider" in proc.stderr


def test_bench_plot_has_a_panel_per_batch_and_a_colour_per_file_and_engine():
    from sltc.runtime.bench import latency_figure

    def record(model, engine, batch, p50, speedup):
        return {"model": f"/x/{model}", "engine": engine, "batch": batch, "p50_ms": p50,
                "speedup": speedup}

    records = [record("m.onnx", "ort", 1, 0.1, 1.0), record("m.onnx", "csr", 1, 0.05, 2.0),
               record("m.csr.safetensors", "csr", 1, 0.2, 0.5),
               record("m.onnx", "ort", 64, 4.0, 1.0), record("m.onnx", "csr", 64, 8.0, 0.5),
               record("m.csr.safetensors", "csr", 64, 2.0, 2.0)]
    fig = latency_figure(records)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["batch 1", "batch 64"]
    colours = [[tuple(p.get_facecolor()) for p in ax.patches] for ax in axes]
    assert colours[0] == colours[1] and len(set(colours[0])) == 3
    for ax, batch in zip(axes, (1, 64), strict=True):
        labels = [t.get_text() for t in ax.texts]
        assert labels == [f"{r['speedup']:.2f}x" for r in records if r["batch"] == batch]
        dashed, = ax.get_lines()  # dense onnxruntime's latency
        assert dashed.get_ydata()[0] == (0.1 if batch == 1 else 4.0)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["m.onnx on ort", "m.onnx on csr", "m.csr.safetensors on csr",
                      "dense onnxruntime (speed-up 1x; ~: within the rounds' spread)"]
    pyplot().close(fig)


def test_bench_marks_speed_ups_inside_the_rounds_spread():
    """Each round times the engines in turn; a speed-up whose per-round ratios straddle 1x
    is marked as no difference, one whose every round agrees is not."""
    from sltc.runtime.bench import _add_speedups, speedup_text

    def record(engine, p50s):
        return {"model": "m", "engine": engine, "batch": 1, "p50_ms": min(p50s), "p50s": p50s}

    base, noise, real = (record("ort", [1.0, 1.3, 1.1]), record("csr", [1.2, 1.0, 1.1]),
                         record("dense", [0.5, 0.6, 0.55]))
    _add_speedups([base, noise, real])
    assert noise["speedup"] == 1.0 and noise["within_noise"] is True
    assert noise["speedup_range"] == pytest.approx([1.0 / 1.2, 1.3])
    assert real["speedup"] == 2.0 and real["within_noise"] is False
    assert real["speedup_range"] == pytest.approx([2.0, 1.3 / 0.6 * 1.0])
    assert speedup_text(noise) == "~1.00x [0.83-1.30]" and speedup_text(real).startswith("2.00x")
    single = [record("ort", [1.0]), record("csr", [0.5])]
    _add_speedups(single)  # one round: no spread to judge by
    assert single[1]["speedup"] == 2.0 and single[1]["within_noise"] is None
    assert speedup_text(single[1]) == "2.00x"


def test_bench_json_records(exports, tmp_path):
    png = tmp_path / "lat.png"
    proc = sltc("bench", exports["onnx"], exports["csr"], "--batch", "1,4", "--threads", "1",
                "--warmup", "2", "--repeat", "5", "--json", "--plot", png, check=True)
    records = json.loads(proc.stdout)
    assert {(r["engine"], r["batch"]) for r in records} >= {("ort", 1), ("csr", 1), ("dense", 4)}
    for r in records:
        assert all(k in r for k in BENCH_KEYS)
        assert r["file_bytes"] == Path(r["model"]).stat().st_size and r["threads"] == 1
    assert any(r["speedup"] == 1.0 for r in records)
    for r in records:  # the csr engine says which layers it runs sparse
        assert (r["layers"] is None) == (r["engine"] != "csr")
        assert r["engine"] != "csr" or set(r["sparse_layers"]) <= {"/fc1/MatMul", "/fc2/MatMul",
                                                                  "/fc3/MatMul"}
    assert png.read_bytes()[:4] == b"\x89PNG"
    proc = sltc("bench", exports["csr"], "--engine", "csr", "--batch", "1,3", "--repeat", "3",
                "--inputs", "test", "--rounds", "2", "--json", check=True)
    records = json.loads(proc.stdout)  # two rounds, one record (the better) per batch
    assert sorted((r["inputs"], r["batch"]) for r in records) == [("test", 1), ("test", 3)]
    proc = sltc("bench", exports["csr"], "--inputs", "camera")
    assert proc.returncode == 2 and "choose random or test" in proc.stderr
    proc = sltc("bench", exports["onnx"], "--engine", "gpu-magic")
    assert proc.returncode == 2 and "choose one of" in proc.stderr
    assert sorted(ENGINES.names()) == ["csr", "dense", "openvino", "ort"]


def test_bench_recommends_the_fastest_file_and_engine_per_batch(exports):
    proc = sltc("bench", exports["onnx"], exports["csr"], "--engine", "ort", "--engine", "csr",
                "--batch", "1,4", "--warmup", "1", "--repeat", "5", "--json", check=True)
    records = json.loads(proc.stdout)
    for batch in (1, 4):
        mine = [r for r in records if r["batch"] == batch]
        chosen, = [r for r in mine if r["recommended"]]
        assert chosen["p50_ms"] == min(r["p50_ms"] for r in mine)
    table = sltc("bench", exports["onnx"], "--engine", "ort", "--batch", "2", "--repeat", "3",
                 check=True).stdout
    assert "fastest at batch 2: m.onnx on ort (fp32)" in table


WITHOUT_OPENVINO = """
import sys
sys.modules["openvino"] = None  # as on a machine without sltc[openvino]
from sltc.cli import main
sys.argv = ["sltc", *sys.argv[1:]]
main()
"""


def test_openvino_is_an_extra(exports):
    """Without OpenVINO, bench runs every other engine by default, and asking for it is one
    line that names the extra; it runs on the CPU only."""
    def run(*args):
        return subprocess.run([sys.executable, "-c", WITHOUT_OPENVINO, *map(str, args)],
                              cwd=ROOT, capture_output=True, text=True)

    proc = run("bench", exports["onnx"], "--batch", "1", "--repeat", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    assert sorted(r["engine"] for r in json.loads(proc.stdout)) == ["csr", "dense", "ort"]
    proc = run("validate", exports["onnx"], "--engine", "openvino")
    line, = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "pip install 'sltc[openvino]'" in line
    proc = sltc("validate", exports["onnx"], "--engine", "openvino", "--provider", "cuda")
    line, = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "--provider cpu" in line
