"""``sltc bench``: latency, throughput, load time and peak RSS per model, engine and batch.

Each (model, engine) runs in a fresh process, so load time and peak RSS are its own.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sltc.format.errors import SltcError


@dataclass
class Record:
    model: str
    kind: str
    engine: str
    provider: str
    batch: int
    threads: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput: float
    load_s: float
    peak_rss_mb: float
    file_bytes: int
    inputs: str = "random"
    precision: str = "fp32"  # an ONNX export's sltc.quantize: int8 or int8-dynamic
    int8_kernels: str | None = None  # for int8: the CPU's int8 instructions (quantize.py)
    sparse_layers: list[str] | None = None  # csr: the layers its plan for this batch runs sparse
    int8_layers: list[str] | None = None  # csr --allow int8: the products it runs in int8
    layers: int | None = None  # csr: the layers that could run sparse
    speedup: float | None = None
    p50s: list[float] | None = None  # every round's p50; these three, like speedup, by bench
    speedup_range: list[float] | None = None
    within_noise: bool | None = None


def _limit_threads(threads: int) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)


def input_source(model, inputs: str = "random", data_root=None):
    """``(batch, i) -> the i-th input batch``: one uniform random batch per size, or
    consecutive batches of the model's recorded test images (``inputs="test"``).

    The ``csr`` engine skips zero activations, so its speed depends on the inputs;
    real images give the representative number.
    """
    if inputs == "random":
        rng, cache = np.random.default_rng(0), {}

        def random_batch(batch: int, i: int) -> np.ndarray:
            if batch not in cache:
                cache[batch] = rng.random((batch, *model.meta.input_shape), dtype=np.float32)
            return cache[batch]

        return random_batch
    if inputs != "test":
        raise SltcError(f"--inputs {inputs!r}: choose random or test")
    from .validate import model_test_set

    test = model_test_set(model, data_root)

    def test_batch(batch: int, i: int) -> np.ndarray:
        if batch > len(test):
            raise SltcError(f"--batch {batch} exceeds the {len(test)} test images; "
                            "use a smaller batch or --inputs random")
        start = i % (len(test) // batch) * batch
        return test.batch(start, start + batch).astype(np.float32) / np.float32(255)

    return test_batch


def measure(path: str, engine: str, batches: list[int], threads: int, provider: str,
            warmup: int, repeat: int, allow_fallback: bool = False, inputs: str = "random",
            data_root: str | None = None, allow_int8: bool = False) -> list[Record]:
    """Load ``path`` into ``engine`` and time it; call in a fresh process."""
    from .engines import prepare
    from .loader import load
    from .quantize import cpu_int8_kernels

    _limit_threads(threads)
    tic = time.perf_counter()
    model = load(path)
    predictor = prepare(model, engine, provider=provider, threads=threads,
                        allow_fallback=allow_fallback, allow_int8=allow_int8)
    load_s = time.perf_counter() - tic
    for batch in batches:  # every batch size within the graph's bounds, before any input
        model.graph.bounds.batch(batch, engine)
    source = input_source(model, inputs, data_root)
    precision = model.precision
    kernels = None if precision == "fp32" else cpu_int8_kernels()
    records = []
    for batch in batches:
        for i in range(warmup):
            predictor(source(batch, i))
        times = np.empty(repeat)
        for i in range(repeat):
            x = source(batch, warmup + i)
            t0 = time.perf_counter()
            predictor(x)
            times[i] = time.perf_counter() - t0
        p50, p90, p99 = (float(np.percentile(times, q)) * 1e3 for q in (50, 90, 99))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        choice = predictor.choice(batch) if predictor.choice else {}
        records.append(Record(str(path), model.kind, engine, predictor.provider, batch, threads,
                              p50, p90, p99, batch * repeat / times.sum(), load_s, rss,
                              model.file_bytes, inputs, precision, kernels, **choice))
    return records


def _worker(args: dict) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "sltc.runtime.bench", json.dumps(args)],
                          capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    if proc.returncode == 2:  # the worker's SltcError: a user mistake, said on its last line
        raise SltcError(lines[-1] if lines else f"benchmark worker failed on {args['path']}")
    if proc.returncode != 0:  # a crash: not the user's doing
        raise RuntimeError(f"benchmark worker for {args['path']} ({args['engine']}) exited "
                           f"{proc.returncode}: {lines[-1] if lines else 'no message'}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(paths: list[str], *, engines: list[str] | None, batches: list[int], threads: int,
          provider: str, warmup: int, repeat: int, allow_fallback: bool = False,
          on_progress=None, inputs: str = "random", data_root: str | None = None,
          rounds: int = 1, allow_int8: bool = False) -> list[dict]:
    """Every (model, engine) pair, each in its own process; adds ``speedup`` vs dense ORT.

    With ``rounds > 1`` the pairs run that many times, taking turns, and each keeps the run
    with its best p50: a drift in the machine's speed then hits every pair alike.
    """
    from .engines import ENGINES, installed
    from .loader import kind_of

    for engine in engines or []:
        ENGINES.get(engine)  # unknown names fail here, with the list of known ones
    for path in paths:
        kind_of(Path(path))  # and unknown file types
    jobs = [dict(path=str(path), engine=engine, batches=batches, threads=threads,
                 provider=provider, warmup=warmup, repeat=repeat, allow_fallback=allow_fallback,
                 inputs=inputs, data_root=data_root, allow_int8=allow_int8)
            for path in paths for engine in engines or installed()]
    best: dict[tuple, dict] = {}
    p50s: dict[tuple, list[float]] = {}  # every round's, in order
    for _ in range(rounds):
        for job in jobs:
            for r in _worker(job):
                key = (r["model"], r["engine"], r["batch"])
                p50s.setdefault(key, []).append(r["p50_ms"])
                if key not in best or r["p50_ms"] < best[key]["p50_ms"]:
                    best[key] = r
            if on_progress:
                on_progress(len(jobs) * rounds)
    records = list(best.values())
    for r in records:
        r["p50s"] = p50s[(r["model"], r["engine"], r["batch"])]
    _add_speedups(records)
    _recommend(records)
    return records


def _recommend(records: list[dict]) -> None:
    """Marks the fastest file and engine at each batch size (best p50) ``recommended``."""
    for batch in {r["batch"] for r in records}:
        mine = [r for r in records if r["batch"] == batch]
        fastest = min(mine, key=lambda r: r["p50_ms"])
        for r in mine:
            r["recommended"] = r is fastest


def recommendations(records: list[dict]) -> list[str]:
    """One line per batch size: the file and engine ``bench`` recommends, and its speed-up."""
    lines = []
    for r in sorted((r for r in records if r.get("recommended")), key=lambda r: r["batch"]):
        against = "" if r["speedup"] is None else f", {speedup_text(r)} against dense ORT"
        lines.append(f"batch {r['batch']}: {r['model'].rsplit('/', 1)[-1]} on {r['engine']} "
                     f"({_precision(r)}), {r['p50_ms']:.3f} ms p50{against}")
    return lines


def _add_speedups(records: list[dict]) -> None:
    """Speed-up against the first model on ``ort`` (dense ORT) at the same batch, of the
    best p50s; with several rounds, ``speedup_range``, the lowest and highest of the
    rounds' own ratios (each round timed both in turn), and ``within_noise``: whether that
    range holds 1x, so that the two cannot be told apart on this machine."""
    base = {}
    for r in records:
        if r["engine"] == "ort":
            base.setdefault(r["batch"], r)
    for r in records:
        b = base.get(r["batch"])
        r["speedup"] = b["p50_ms"] / r["p50_ms"] if b else None
        ratios = [x / y for x, y in zip(b["p50s"], r["p50s"], strict=True)] if b else []
        r["speedup_range"] = [min(ratios), max(ratios)] if len(ratios) > 1 else None
        r["within_noise"] = min(ratios) <= 1 <= max(ratios) \
            if r["speedup_range"] and r is not b else None


def speedup_text(r: dict) -> str:
    """``1.32x``, with the rounds' range and ``~`` where it holds 1x: ``~1.02x [0.97-1.08]``."""
    if r["speedup"] is None:
        return "-"
    span = f" [{r['speedup_range'][0]:.2f}-{r['speedup_range'][1]:.2f}]" \
        if r["speedup_range"] else ""
    return f"{'~' if r['within_noise'] else ''}{r['speedup']:.2f}x{span}"


def _precision(r: dict) -> str:
    """``fp32``, or ``int8 (vnni)``: an int8 file with the CPU's int8 instructions."""
    kernels = r.get("int8_kernels")
    return r.get("precision", "fp32") + (f" ({kernels})" if kernels else "")


def print_table(records: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="sltc bench (p50 latency; speed-up against dense ORT, with --rounds "
                  "its range over the rounds, ~ where that range holds 1x: no difference)")
    left = ("model", "engine", "provider", "precision", "inputs")
    for col in (*left, "batch", "threads", "p50 ms", "p90 ms", "p99 ms", "items/s", "load s",
                "RSS MB", "file B", "sparse", "speed-up"):
        table.add_column(col, justify="left" if col in left else "right")
    for r in records:
        table.add_row(r["model"].rsplit("/", 1)[-1], r["engine"], r["provider"],
                      _precision(r), r["inputs"],
                      str(r["batch"]), str(r["threads"]), f"{r['p50_ms']:.3f}",
                      f"{r['p90_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['throughput']:.0f}",
                      f"{r['load_s']:.3f}", f"{r['peak_rss_mb']:.0f}", str(r["file_bytes"]),
                      "-" if r["layers"] is None else f"{len(r['sparse_layers'])}/{r['layers']}",
                      speedup_text(r))
    console = Console(width=200)
    console.print(table)
    for line in recommendations(records):
        console.print(f"fastest at {line}")


def _series(r: dict) -> str:
    """A bar's legend entry: the file and the engine that ran it."""
    return f"{r['model'].rsplit('/', 1)[-1]} on {r['engine']}"


def plot_latency(records: list[dict], path) -> None:
    from sltc.figures import save

    save(latency_figure(records), path, dpi=120)


def latency_figure(records: list[dict]):
    """p50 latency, one panel per batch size (each its own scale), one colour per file and
    engine (the same in every panel); each bar carries its speed-up against dense
    onnxruntime, whose latency is the dashed line."""
    from sltc.figures import pyplot

    plt = pyplot()
    series = list(dict.fromkeys(_series(r) for r in records))
    colours = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(series)}
    batches = sorted({r["batch"] for r in records})
    fig, axes = plt.subplots(1, len(batches), squeeze=False,
                             figsize=(max(4.5, 0.7 * len(series) + 1.5) * len(batches), 4.2))
    for ax, batch in zip(axes[0], batches, strict=True):
        rows = [r for r in records if r["batch"] == batch]
        bars = ax.bar(range(len(rows)), [r["p50_ms"] for r in rows],
                      color=[colours[_series(r)] for r in rows])
        ax.bar_label(bars, ["" if r["speedup"] is None else
                            f"{'~' if r.get('within_noise') else ''}{r['speedup']:.2f}x"
                            for r in rows], fontsize=8, padding=2)
        base = [r["p50_ms"] / r["speedup"] for r in rows if r["speedup"]]
        if base:
            ax.axhline(base[0], color="grey", linestyle="--", linewidth=1)
        ax.set_title(f"batch {batch}")
        ax.set_xticks([])
        ax.set_ylabel("p50 latency (ms)")
        ax.set_ylim(0, 1.15 * max(r["p50_ms"] for r in rows))
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[s]) for s in series]
    handles.append(plt.Line2D([], [], color="grey", linestyle="--", linewidth=1))
    fig.legend(handles, [*series, "dense onnxruntime (speed-up 1x; ~: within the rounds' "
                              "spread)"], loc="lower center",
               ncol=min(3, len(handles)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 * (1 + (len(handles) - 1) // 3), 1, 1))
    return fig


if __name__ == "__main__":  # the worker: one (model, engine) in this process
    job = json.loads(sys.argv[1])
    try:
        out = measure(**job)
    except SltcError as e:
        print(str(e), file=sys.stderr)
        sys.exit(2)
    print(json.dumps([asdict(r) for r in out]))
