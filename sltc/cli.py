"""The ``sltc`` command line: each command parses, calls one library function, reports.

User mistakes raise ``SltcError``; ``main`` prints them on one line and exits 2.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from pathlib import Path

import typer

from .format.errors import CheckFailed, Interrupted, NonFiniteLoss, SltcError
from .format.limits import check_environment
from .format.outputs import CHECKPOINT, CONFIG, TICKET
from .openmp import choose_wait_policy

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="Find strong lottery tickets and ship them as seed + mask.")
log = logging.getLogger("sltc")


JSON_OPT = typer.Option(False, "--json", help="Quiet; print the result as JSON on the last line.")


@app.callback(invoke_without_command=True)
def _bare(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:  # bare `sltc`: the help
        print(ctx.get_help())
        raise typer.Exit()


def _emit(result, as_json: bool, human) -> None:
    if as_json:
        print(json.dumps(result))
    else:
        human(result)


def _print_kv(result: dict) -> None:
    for key, value in result.items():
        shown = f"{value:.4f}" if isinstance(value, float) else value
        print(f"{key:>20}: {shown}")


def resume_command(out: Path, device: str) -> str:
    """The command that continues the run in ``out``: its own ``config.yaml`` records every
    ``--set`` override, so the command needs none."""
    return (f"sltc discover {shlex.quote(str(out / 'config.yaml'))} --out "
            f"{shlex.quote(str(out))} --resume" + ("" if device == "auto" else
                                                   f" --device {shlex.quote(device)}"))


@app.command()
def discover(
    config: Path = typer.Argument(..., help="model.yaml"),
    out: Path = typer.Option(Path("runs/latest"), "--out", "-o", help="Run directory."),
    set_: list[str] = typer.Option([], "--set", help="KEY=VALUE override (YAML value)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    as_json: bool = JSON_OPT,
):
    """Train gates over frozen random weights and freeze them to a ticket."""
    from .config import check_applicable
    from .config_yaml import load_config

    cfg = load_config(config, set_)  # a config's mistakes are told before torch loads
    check_applicable(cfg, str(config))
    from .discover import discover as run

    try:
        summary = run(cfg, out, resume=resume, device=device, progress=not as_json)
    except NonFiniteLoss as e:
        kept = (out / CHECKPOINT).exists()
        raise NonFiniteLoss(f"{e}; " + (
            f"the epochs before it are kept: sltc freeze {out} makes a ticket of them (a new "
            "run needs a new --out)" if kept else "no epoch had finished, so nothing was "
            "kept")) from None
    except KeyboardInterrupt:
        kept = (out / CHECKPOINT).exists()
        raise Interrupted("interrupted; continue from the last finished epoch with: "
                          f"{resume_command(out, device)}" if kept else
                          "interrupted before the first epoch ended; nothing was kept: "
                          "rerun the same command to start again") from None
    if summary is not None:  # torchrun's other ranks print nothing
        _emit(summary, as_json, _print_kv)


@app.command()
def freeze(
    run_dir: Path = typer.Argument(..., help="A run directory made by discover."),
    output: Path = typer.Option(None, "-o", "--output", help="Ticket path [RUN_DIR/ticket.slt]."),
    target_sparsity: float = typer.Option(None, "--target-sparsity", min=0.0, max=1.0,
                                          help="Keep the top gates to reach this sparsity."),
    scope: str = typer.Option(None, "--scope", help="layer or global top-k (with "
                              "--target-sparsity) [discover's: global for gate methods, layer "
                              "for edge_popup]."),
    device: str = typer.Option("auto", "--device"),
    as_json: bool = JSON_OPT,
):
    """Threshold a run's gates into a deterministic ticket file."""
    from .data import dataset_files
    from .discover import freeze_run, load_run
    from .format.outputs import check_output
    from .freeze import SCOPES
    from .progress import Progress
    from .rundir import own_files

    if scope is not None and scope not in SCOPES:
        raise SltcError(f"--scope {scope!r}: choose one of {', '.join(SCOPES)}")
    if scope is not None and target_sparsity is None:
        raise SltcError("--scope applies only with --target-sparsity (without it the run's "
                        "own rule freezes); add --target-sparsity, or drop --scope")
    trainer = load_run(run_dir, device)
    path = output or Path(run_dir) / TICKET
    check_output(path, [*own_files(run_dir, ticket=False), *dataset_files(trainer.config.data)],
                 owned=[Path(run_dir) / TICKET])
    trainer.progress = Progress(not as_json)
    ticket, scores = freeze_run(trainer, target_sparsity, scope)  # discover's rule, or this target
    ticket.save(path)
    model = ticket.model_meta()
    result = {"ticket": str(path), "sparsity": model.sparsity,
              "test_accuracy": model.test_accuracy, **scores,
              "file_bytes": path.stat().st_size}
    _emit(result, as_json, _print_kv)


@app.command()
def plot(
    run_dirs: list[Path] = typer.Argument(..., help="Run directories made by discover."),
    output: Path = typer.Option(None, "-o", "--output",
                                help="PNG path [RUN_DIR/curves.png; needed for several runs]."),
    as_json: bool = JSON_OPT,
):
    """Draw runs' curves per epoch: task loss, L0 term, validation accuracy, sparsity, mask
    flip rate, live gates, lambda; several runs (a CRBG and an edge-popup run, say) share
    one figure, a colour each."""
    from .config_yaml import load_config
    from .format.outputs import check_output
    from .plotting import plot_curves, run_metrics
    from .rundir import own_files

    if output is None and len(run_dirs) > 1:
        raise SltcError("several runs share one figure: name it with -o PNG")
    path = output or Path(run_dirs[0]) / "curves.png"
    check_output(path, [f for run in run_dirs for f in own_files(run)])
    runs, targets = [], set()
    for run in run_dirs:
        config = Path(run) / CONFIG
        cfg = load_config(config) if config.is_file() else None
        if cfg is not None:
            targets.add(cfg.gates.target_sparsity)
        label = f"{Path(run).name} [{cfg.gates.method}]" if cfg else Path(run).name
        rows = run_metrics(run)
        if cfg is not None and cfg.gates.method == "edge_popup":  # no L0 term, no lambda
            rows = [{k: v for k, v in r.items() if k not in ("l0", "lambda")} for r in rows]
        runs.append((label, rows))
    plot_curves(runs, path, targets.pop() if len(targets) == 1 else None)
    _emit({"plot": str(path), "epochs": [len(rows) for _, rows in runs]} if len(runs) > 1
          else {"plot": str(path), "epochs": len(runs[0][1])}, as_json, _print_kv)


@app.command("config")
def config_(
    example: bool = typer.Option(False, "--example", help="Print a complete commented YAML."),
    recipes: bool = typer.Option(False, "--recipes", help="Print the recipe of every method "
                                 "and network family, and what chose it."),
    as_json: bool = JSON_OPT,
):
    """Every config key with its type, default and reason (from sltc/config.py)."""
    from .config_reference import example_yaml, reference

    if example:
        print(example_yaml(), end="")
        return
    if recipes:
        from .recipes import recipe_table

        _emit(recipe_table(), as_json, _print_recipes)
        return
    _emit(reference(), as_json, _print_reference)


def _print_recipes(rows: list[dict]) -> None:
    for row in rows:
        values = ", ".join(f"{k}={json.dumps(v)}" for k, v in row["values"].items())
        print(f"{row['method']} / {row['family']}: {values}\n    {row['why']}")


def _print_reference(rows: list[dict]) -> None:
    for row in rows:
        bounds = f", {row['range']}" if row["range"] else ""
        print(f"{row['key']}: {row['type']} = {json.dumps(row['default'])}{bounds}\n"
              f"    {row['reason']}")


@app.command()
def inspect(
    ticket: Path = typer.Argument(..., help="A .slt ticket."),
    plot: Path = typer.Option(None, "--plot", help="Draw per-layer sparsity to this PNG."),
    as_json: bool = JSON_OPT,
):
    """Per-layer table of a ticket: density, encoding, bits against the entropy floor."""
    from .format.outputs import check_output
    from .inspection import inspect_ticket, plot_sparsity, print_report

    if plot:
        check_output(plot, [ticket])
    report = inspect_ticket(ticket)
    if plot:
        plot_sparsity(report, plot)
    _emit(report, as_json, print_report)


@app.command("eval")
def eval_(
    ticket: Path = typer.Argument(..., help="A .slt ticket."),
    data: str = typer.Option(None, "--data", help="Folder with the dataset's IDX files."),
    device: str = typer.Option("auto", "--device"),
    as_json: bool = JSON_OPT,
):
    """Run the ticket's network (its graph, never code it names) on the test set."""
    from sltc.runtime.validate import evaluate

    from .progress import Progress

    with Progress(not as_json).task("test set") as task:
        result = evaluate(ticket, data, device, lambda n: task.advance(images=n))
    _emit(result, as_json, _print_kv)


@app.command()
def export(
    ticket: Path = typer.Argument(..., help="A .slt ticket."),
    fmt: str = typer.Option(..., "--format", "-f", help="onnx, csr or ticket."),
    output: Path = typer.Option(..., "-o", "--output", help="Output file."),
    weights: str = typer.Option(None, "--weights", help="onnx: dense (the default) or "
                                "sparse initializers, or auto: the smaller file."),
    compact: bool = typer.Option(False, "--compact", help="onnx: drop pruned units/channels."),
    values: str = typer.Option(None, "--values", help="csr: implied (by the seed; the "
                               "default) or stored."),
    no_check: bool = typer.Option(False, "--no-check", help="onnx: skip the onnxruntime parity check."),
    data: str = typer.Option(None, "--data", help="onnx: dataset folder for the parity check."),
    quantize: str = typer.Option(None, "--quantize", help="onnx: int8 (static QDQ, calibrated "
                                 "on the ticket's training images) or int8-dynamic; reports "
                                 "the test accuracy next to the fp32 ticket's."),
    as_json: bool = JSON_OPT,
):
    """Export a ticket as ONNX, CSR sparse weights, or a ticket again; an option the format
    does not take is refused."""
    from sltc.exporters import export as run
    from sltc.exporters import options_of

    from .progress import Progress

    given = {"weights": weights, "compact_units": compact or None, "values": values,
             "check": False if no_check else None, "data_root": data, "quantize": quantize}
    options = {k: v for k, v in given.items() if v is not None}
    checks = "check" in options_of(fmt) and not no_check
    check = ", accuracy check" if quantize else ", parity check"
    with Progress(not as_json).task(f"export {fmt}" + (check if checks else "")):
        report = run(ticket, fmt, output, **options)
    _emit(report, as_json, _print_kv)


ALLOW_OPT = typer.Option([], "--allow", help="int8: let the csr engine run int8 onnxruntime "
                         "segments where they are faster (not exact; off by default).")


def _allow_int8(allow: list[str]) -> bool:
    for value in allow:
        if value != "int8":
            raise SltcError(f"--allow {value!r}: the one inexact path there is to allow is "
                            "int8")
    return bool(allow)


MAX_WARMUP, MAX_REPEAT, MAX_ROUNDS = 10_000, 100_000, 100  # bench: calls and rounds
MAX_BATCH = 1 << 16  # images of one bench batch, as data.batch_size


def _ints(text: str, flag: str, high: int) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1 or max(values) > high:
        raise SltcError(f"{flag} {text[:40]!r}: expected integers in [1, {high}] separated by "
                        "commas, e.g. 1,64")
    return values


@app.command()
def bench(
    models: list[Path] = typer.Argument(..., help=".slt, .csr.safetensors or .onnx files."),
    engine: list[str] = typer.Option([], "--engine", help="dense, csr, ort or openvino "
                                     "(repeatable) [all installed]."),
    batch: str = typer.Option("1,64", "--batch", help="Batch sizes, comma-separated."),
    threads: int = typer.Option(1, "--threads", min=1, max=os.cpu_count() or 1,
                                help="Threads per engine, at most the CPUs of this machine."),
    provider: str = typer.Option("cpu", "--provider", help="cpu or cuda."),
    warmup: int = typer.Option(20, "--warmup", min=0, max=MAX_WARMUP),
    repeat: int = typer.Option(200, "--repeat", min=1, max=MAX_REPEAT),
    rounds: int = typer.Option(1, "--rounds", min=1, max=MAX_ROUNDS,
                               help="Run every model and engine this many times, taking turns; "
                                    "keep each one's best p50 (evens out the machine's drift) "
                                    "and mark speed-ups whose rounds straddle 1x with ~."),
    allow_fallback: bool = typer.Option(False, "--allow-fallback"),
    inputs: str = typer.Option("random", "--inputs",
                               help="random, or test: the run's test images (speed of csr "
                                    "depends on how many activations are zero)."),
    data: str = typer.Option(None, "--data", help="Dataset folder, for --inputs test."),
    plot: Path = typer.Option(None, "--plot", help="Draw p50 latency to this PNG: a panel per "
                              "batch size, a colour per file and engine, speed-ups marked."),
    allow: list[str] = ALLOW_OPT,
    as_json: bool = typer.Option(False, "--json", help="Quiet; stdout is a JSON list of records."),
):
    """Benchmark inference of sparse models on this device, each engine in its own process."""
    from sltc.runtime.bench import bench as run
    from sltc.runtime.bench import plot_latency, print_table

    from .format.outputs import check_output
    from .progress import Progress

    batches = _ints(batch, "--batch", MAX_BATCH)
    if data is not None and inputs != "test":
        raise SltcError("--data is read only with --inputs test; add --inputs test, or drop "
                        "--data")
    if plot:  # the models; the test images of --inputs test are read by the workers
        check_output(plot, models)
    with Progress(not as_json).task("benchmark", unit="model x engine") as task:
        def advance(total: int) -> None:
            task.total = total
            task.advance()

        records = run([str(m) for m in models], engines=engine or None, batches=batches,
                      threads=threads, provider=provider, warmup=warmup, repeat=repeat,
                      allow_fallback=allow_fallback, on_progress=advance, inputs=inputs,
                      data_root=data, rounds=rounds, allow_int8=_allow_int8(allow))
    if plot:
        plot_latency(records, plot)
    _emit(records, as_json, print_table)


@app.command()
def validate(
    model: Path = typer.Argument(..., help=".slt, .csr.safetensors or .onnx file."),
    engine: str = typer.Option("ort", "--engine", help="dense, csr, ort or openvino."),
    provider: str = typer.Option("cpu", "--provider", help="cpu or cuda."),
    data: str = typer.Option(None, "--data", help="Dataset folder."),
    require_gpu: bool = typer.Option(False, "--require-gpu", help="Fail unless a GPU runtime runs it."),
    allow_fallback: bool = typer.Option(False, "--allow-fallback"),
    tolerance: float = typer.Option(0.01, "--tolerance", min=0.0, max=1.0,
                                    help="Exit 3 when the accuracy falls more than this "
                                         "below the recorded one."),
    allow: list[str] = ALLOW_OPT,
    as_json: bool = JSON_OPT,
):
    """Run the whole test set through a runtime engine; compare with the recorded accuracy
    (exit 3 when it falls more than --tolerance below it)."""
    from sltc.runtime.validate import validate as run

    from .progress import Progress

    with Progress(not as_json).task(f"test set through {engine}") as task:
        result = run(model, engine, provider, data, require_gpu, allow_fallback,
                     on_batch=lambda n: task.advance(images=n), allow_int8=_allow_int8(allow))
    _emit(result, as_json, _print_kv)
    if result["difference"] is not None and result["difference"] < -tolerance:
        raise CheckFailed(f"accuracy {result['test_accuracy']:.4f} is "
                          f"{-result['difference']:.4f} below the recorded "
                          f"{result['recorded_accuracy']:.4f} (--tolerance {tolerance})")


def _usage_line(e) -> str:
    """A click usage error as one line naming the option and the command's --help."""
    command = getattr(getattr(e, "ctx", None), "info_name", None)
    where = f"sltc {command}" if command and command != "sltc" and "." not in command else "sltc"
    message = " ".join(e.format_message().split())
    return f"{message} (see {where} --help)"


def out_of_memory(e: Exception) -> bool:
    """Whether ``e`` is an allocation the machine refused: numpy's ``MemoryError``, or
    torch's allocator failing on the CPU or a GPU."""
    text = str(e)
    return isinstance(e, MemoryError) or isinstance(e, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text)


def main() -> None:
    """Exit codes: 0 done, 1 an internal error (a bug: report it), 2 a user mistake
    (one line naming it and the fix), 3 a check that failed, 130 interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    choose_wait_policy()  # before torch starts OpenMP
    try:
        check_environment()
        code = app(standalone_mode=False)
    except typer.TyperException as e:  # the command line itself: click's usage errors
        print(f"sltc: error: {_usage_line(e)}", file=sys.stderr)
        code = 2
    except SltcError as e:  # its one line says it all (an interrupted discover: how to resume)
        print(f"sltc: error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(e.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    except Exception as e:  # noqa: BLE001 - anything else is a bug, said as one
        if out_of_memory(e):  # sizes the user chose that this machine cannot hold
            print("sltc: error: out of memory: this machine cannot hold what the command "
                  f"allocates ({' '.join(str(e).split())[:200]}); use a smaller batch, image "
                  "size or network", file=sys.stderr)
            sys.exit(2)
        if os.environ.get("SLTC_DEBUG"):
            raise
        print(f"sltc: internal error: {type(e).__name__}: {' '.join(str(e).split())[:500]}; "
              "this is a bug in sltc: rerun with SLTC_DEBUG=1 for the traceback and report it",
              file=sys.stderr)
        code = 1
    except BaseException as e:  # noqa: BLE001 - SystemExit and the like: a user's code's
        from .usercode import described  # (sltc raises none), where no narrower check was

        print(f"sltc: error: code outside sltc raised {described(e)}; fix that code",
              file=sys.stderr)
        code = 2
    if code == 130:
        print("sltc: interrupted", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
