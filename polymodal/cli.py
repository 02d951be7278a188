"""Command line: thin wrappers that parse arguments and call :mod:`polymodal.api`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml

from polymodal import registry
from polymodal.cli_support import (
    PRESET_HELP,
    config_yaml,
    echo_findings,
    fail,
    parse_duration,
    preset_name,
    read_config,
    row_positions,
    setup_logging,
    summary,
)
from polymodal.utils.errors import USER_ERRORS

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="polymodal: tables of mixed data -> multimodal models",
)


@app.command()
def init(
    table: Path,
    target: Annotated[list[str], typer.Option("--target", "-t", help="target column (repeatable)")],
    output: Annotated[Path, typer.Option("--output", "-o")] = Path("config.yaml"),
    preset: Annotated[str, typer.Option(help=PRESET_HELP)] = "medium",
    drop: Annotated[
        list[str] | None, typer.Option(help="leave this column out (repeatable)")
    ] = None,
    keep: Annotated[
        list[str] | None, typer.Option(help="use this column despite a warning (repeatable)")
    ] = None,
) -> None:
    """Infer each column's modality, check the columns (leaks, identifiers, constant or mostly
    missing ones are left out, with the reason) and write a config filled by a preset."""
    from polymodal.data.io import read_table
    from polymodal.data.presets import starter

    try:
        frame = read_table(table)
        found = starter(frame, target if len(target) > 1 else target[0],
                        table.resolve().parent, preset_name(preset), drop or [], keep or [])  # fmt: skip
    except USER_ERRORS as err:
        fail(err)
    cfg = found.config
    cfg.setdefault("data", {})["train"] = str(table)
    command = f"polymodal init {table} " + " ".join(f"--target {t!r}" for t in target)
    output.write_text(config_yaml(cfg, f"{command} --preset {preset}"), encoding="utf-8")
    for inp in cfg["inputs"]:
        enc = inp.get("encoder", {}).get("type") or (
            f"tied to {inp['tied']}" if inp.get("tied") else "default"
        )
        cols = ", ".join(inp.get("columns") or [inp["name"]])
        typer.echo(f"{inp['type']:12s} {inp['name']} <- {cols}  [{enc}]")
    for out in cfg["outputs"]:
        typer.echo(f"{'target':12s} {out['name']} ({out['task']})")
    echo_findings(found.findings)
    typer.echo(f"wrote {output}")


@app.command()
def fit(
    table: Path,
    target: Annotated[list[str], typer.Option("--target", "-t", help="target column (repeatable)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="model directory")] = Path(
        "runs/model"
    ),
    preset: Annotated[str, typer.Option(help=PRESET_HELP)] = "medium",
    val: Annotated[Path | None, typer.Option(help="validation table (default: split)")] = None,
    test: Annotated[Path | None, typer.Option(help="test table (default: split)")] = None,
    time_limit: Annotated[
        str | None, typer.Option(help="stop training after this long (90s, 10m, 1h): best kept")
    ] = None,
    drop: Annotated[
        list[str] | None, typer.Option(help="leave this column out (repeatable)")
    ] = None,
    keep: Annotated[
        list[str] | None, typer.Option(help="use this column despite a warning (repeatable)")
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="key.path=value, applied to the config")
    ] = None,
    report: Annotated[bool, typer.Option(help="write OUTPUT/report.html")] = True,
    quiet: bool = False,
) -> None:
    """One command from a table to a model: init (with a preset) + train + evaluate on the test
    table or split + report. The config it wrote is OUTPUT/config.yaml."""
    from polymodal.api import Predictor
    from polymodal.utils.dist import is_main_process
    from polymodal.utils.progress import set_enabled

    setup_logging(not quiet and is_main_process())
    set_enabled(False if quiet else None)
    try:
        pred = Predictor.fit_table(
            table, target if len(target) > 1 else target[0], preset_name(preset),
            output, val, test, parse_duration(time_limit), drop or [], keep or [], overrides or [],
        )  # fmt: skip
        if report and is_main_process():
            pred.report(output / "report.html")
    except USER_ERRORS as err:
        fail(err)
    if is_main_process():
        typer.echo(json.dumps(summary(pred.metrics_), indent=2))
        typer.echo(f"saved model, config and {'report' if report else 'metrics'} to {output}")


@app.command()
def config(
    path: Path,
    render: Annotated[bool, typer.Option("--render", help="fill in every default")] = True,
) -> None:
    """Validate a config and print it with every default filled."""
    from polymodal.config import load_config, to_yaml
    from polymodal.models import render_defaults

    try:
        cfg = load_config(path)
        typer.echo(
            yaml.safe_dump(render_defaults(cfg), sort_keys=False) if render else to_yaml(cfg)
        )
    except USER_ERRORS as err:
        fail(err)


@app.command(name="train")
def train_cmd(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG")],
    output: Annotated[Path, typer.Option("--output", "-o", help="model directory")] = Path(
        "runs/model"
    ),
    train: Annotated[str | None, typer.Option(help="training table (overrides data.train)")] = None,
    val: Annotated[str | None, typer.Option(help="validation table")] = None,
    test: Annotated[str | None, typer.Option(help="test table")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue from the last checkpoint")
    ] = False,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="key.path=value, e.g. inputs.review.encoder.type=minilm"),
    ] = None,
    drop_input: Annotated[
        list[str] | None, typer.Option(help="train without this input (repeatable)")
    ] = None,
    quiet: bool = False,
) -> None:
    """Train a model and save it (config, preprocessing, weights, metrics) to OUTPUT."""
    from polymodal.api import Predictor
    from polymodal.config import resolve_table_paths
    from polymodal.utils.dist import is_main_process
    from polymodal.utils.progress import set_enabled

    setup_logging(not quiet and is_main_process())  # several processes: rank 0 speaks
    set_enabled(False if quiet else None)
    try:
        data = read_config(config_path, overrides or [], drop_input or [])
        if quiet:
            data.setdefault("trainer", {})["progress"] = False
        data = resolve_table_paths(data, config_path.resolve().parent)
        pred = Predictor(data).fit(train, val, test, output_dir=output, resume=resume)
    except USER_ERRORS as err:
        fail(err)
    if is_main_process():
        typer.echo(json.dumps(summary(pred.metrics_), indent=2))
        typer.echo(f"saved model to {output}")


@app.command(name="evaluate")
def evaluate_cmd(
    model_dir: Path,
    table: Path,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="metrics JSON")] = None,
    robustness: Annotated[
        bool, typer.Option("--robustness", help="also mask / add noise to each modality")
    ] = False,
) -> None:
    """Score a saved model on a labelled table; writes eval_metrics.json beside the model by
    default, and with --robustness robustness.{json,md,png} beside it."""
    from polymodal.api import Predictor
    from polymodal.evaluation.robustness import robustness_table
    from polymodal.utils.io import write_json

    output = output or model_dir / "eval_metrics.json"
    try:
        pred = Predictor.load(model_dir)
        report = pred.evaluate(table)
        result = pred.robustness(table, output.parent) if robustness else None
    except USER_ERRORS as err:
        fail(err)
    write_json(output, report)
    typer.echo(json.dumps(summary(report), indent=2))
    if result is not None:
        typer.echo(robustness_table(result))
        typer.echo(f"wrote {output.parent / 'robustness.png'}")


@app.command()
def predict(
    model_dir: Path,
    table: Path,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="CSV/Parquet/JSONL of predictions")
    ] = Path("predictions.csv"),
    backend: Annotated[
        str, typer.Option(help="torch, or onnx (MODEL_DIR/model.onnx from `polymodal export`)")
    ] = "torch",
) -> None:
    """Table in, table out: predicted labels/values and probabilities per row."""
    from polymodal.api import Predictor

    try:
        pred = Predictor.load(model_dir, backend=backend).predict(table)
    except USER_ERRORS as err:
        fail(err)
    if output.suffix == ".parquet":
        pred.to_parquet(output)
    elif output.suffix in (".jsonl", ".json"):
        pred.to_json(output, orient="records", lines=True)
    else:
        pred.to_csv(output)
    typer.echo(f"wrote {len(pred)} predictions to {output}")


@app.command(name="export")
def export_cmd(
    model_dir: Path,
    fmt: Annotated[str, typer.Option("--format", help="onnx")] = "onnx",
    data: Annotated[
        Path | None,
        typer.Option(help="table of real rows for the parity check (default: the config's data)"),
    ] = None,
    rows: Annotated[int, typer.Option(help="rows compared in the parity check")] = 64,
    atol: Annotated[float, typer.Option(help="max |ONNX - PyTorch| allowed")] = 1e-4,
) -> None:
    """Write MODEL_DIR/model.onnx (preprocessed tensors + masks in, logits out) and check it
    against PyTorch on real rows; fails (exit 1) when they differ by more than --atol."""
    from polymodal.api import ONNX_FILE, Predictor
    from polymodal.export.onnx import ParityError
    from polymodal.utils.io import write_json

    if fmt != "onnx":
        fail(ValueError(f"--format must be onnx, got {fmt!r}"))
    try:
        pred = Predictor.load(model_dir)
        d = pred.config.data
        table = data or next((Path(p) for p in (d.test, d.val, d.train) if p), None)
        if table is None:
            raise ValueError("no rows for the parity check: pass --data TABLE")
        report = pred.export_onnx(table, model_dir / ONNX_FILE, rows=rows, atol=atol)
    except ParityError as err:
        typer.secho(f"parity check failed: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from err
    except USER_ERRORS as err:
        fail(err)
    write_json(model_dir / "onnx_parity.json", report)
    typer.echo(json.dumps(report, indent=2))
    typer.echo(f"wrote {model_dir / ONNX_FILE} (max |ONNX - PyTorch| {report['max_abs_diff']:.2e})")


@app.command()
def compress(
    model_dir: Path,
    data: Annotated[Path, typer.Option(help="labelled table (test split) for the metric")],
    output: Annotated[Path, typer.Option("--output", "-o", help="compressed model directory")],
    method: Annotated[str, typer.Option(help="int8 | prune | distill")] = "int8",
    pruning: Annotated[str, typer.Option(help="prune: magnitude | structured")] = "magnitude",
    amount: Annotated[float, typer.Option(help="prune: fraction of weights / units")] = 0.5,
    epochs: Annotated[int, typer.Option(help="prune: fine-tune epochs afterwards")] = 0,
    lr: Annotated[float | None, typer.Option(help="prune fine-tune rate (default lr/10)")] = None,
    student: Annotated[Path | None, typer.Option(help="distill: the student's config")] = None,
    temperature: Annotated[float, typer.Option(help="distill: softening temperature")] = 2.0,
    alpha: Annotated[float, typer.Option(help="distill: weight of the soft loss")] = 0.5,
    train: Annotated[Path | None, typer.Option(help="training table (default: config)")] = None,
    val: Annotated[Path | None, typer.Option(help="validation table (default: config)")] = None,
    rows: Annotated[int, typer.Option(help="rows used for latency and the parity check")] = 64,
    repeats: Annotated[int, typer.Option(help="batch-1 calls timed per variant")] = 200,
) -> None:
    """Compress MODEL_DIR into OUTPUT (int8 quantisation, pruning or distillation) and print size,
    parameters, latency p50/p99 (batch 1), throughput (batch 64) and the metric with its delta,
    for the original and the compressed model in PyTorch and ONNX Runtime."""
    from polymodal.compression.compress import markdown
    from polymodal.deploy import compress as run

    try:
        result = run(model_dir, output, method, data, train=train, val=val, pruning=pruning,
                     amount=amount, epochs=epochs, lr=lr, student=student,
                     kd_temperature=temperature, kd_alpha=alpha, rows=rows, repeats=repeats)  # fmt: skip
    except USER_ERRORS as err:
        fail(err)
    typer.echo(markdown(result))
    typer.echo(f"wrote {output} and {output / 'compression.json'}")


@app.command()
def serve(
    model_dir: Path,
    backend: Annotated[str, typer.Option(help="torch or onnx")] = "torch",
    host: str = "127.0.0.1",
    port: int = 8000,
    data_dir: Annotated[
        Path | None, typer.Option(help="folder whose files requests may name by path")
    ] = None,
    max_body_mb: Annotated[float, typer.Option(help="larger request bodies get a 413")] = 16.0,
    max_decode_mb: Annotated[float, typer.Option(help="files decoding to more: a 413")] = 512.0,
    max_batch: Annotated[int, typer.Option(help="rows of concurrent requests run together")] = 64,
    max_wait_ms: Annotated[float, typer.Option(help="how long a batch waits for more")] = 0.0,
) -> None:
    """Serve MODEL_DIR over HTTP: POST /predict, GET /health, /metadata, /metrics, /docs."""
    import uvicorn

    from polymodal.serving.app import create_app

    if backend not in ("torch", "onnx"):
        fail(ValueError(f"--backend must be torch or onnx, got {backend!r}"))
    try:
        app_ = create_app(model_dir, backend, data_dir, int(max_body_mb * 2**20),  # type: ignore[arg-type]
                          max_decode_bytes=int(max_decode_mb * 2**20), max_batch=max_batch,
                          max_wait_ms=max_wait_ms)  # fmt: skip
    except USER_ERRORS as err:
        fail(err)
    uvicorn.run(app_, host=host, port=port, log_level="warning")


@app.command(name="index")
def index_cmd(
    model_dir: Path,
    table: Path,
    column: Annotated[str, typer.Option(help="the column to embed (a side of the retrieval pair)")],
    kind: Annotated[str, typer.Option(help="auto | flat (exact) | hnsw | ivf")] = "auto",
    id_column: Annotated[
        str | None, typer.Option(help="column whose values identify rows (default: row number)")
    ] = None,
    output: Annotated[str | None, typer.Option(help="retrieval output, if several")] = None,
) -> None:
    """Embed TABLE's COLUMN with MODEL_DIR's retrieval head and store a FAISS index beside the
    model (MODEL_DIR/index/); exact below 50,000 rows, IVF above (with --kind auto)."""
    from polymodal.api import Predictor

    try:
        info_ = Predictor.load(model_dir).index(table, column, None, kind, id_column, output)
    except USER_ERRORS as err:
        fail(err)
    typer.echo(json.dumps(info_, indent=2))


@app.command(name="search")
def search_cmd(
    model_dir: Path,
    text: Annotated[str | None, typer.Option(help="text query")] = None,
    image: Annotated[Path | None, typer.Option(help="image file query")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="how many rows to return")] = 10,
    column: Annotated[str | None, typer.Option(help="which index, if several")] = None,
    backend: Annotated[str, typer.Option(help="torch, or onnx (the exported towers)")] = "torch",
) -> None:
    """Top-k rows of MODEL_DIR's index for a --text or an --image query, with their scores."""
    from polymodal.api import Predictor

    try:
        pred = Predictor.load(model_dir, backend=backend)
        hits = pred.search(text=text, image=image, k=k, column=column)
    except USER_ERRORS as err:
        fail(err)
    typer.echo(hits.drop(columns="query").to_string(index=False))


@app.command()
def explain(
    model_dir: Path,
    table: Path,
    rows: Annotated[str | None, typer.Option(help="row positions to explain, e.g. 0,5,9")] = None,
    importance: Annotated[
        bool, typer.Option("--importance", help="also: per-modality importance over the table")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="folder (default MODEL_DIR/explanations)")
    ] = None,
    method: Annotated[
        str, typer.Option(help="integrated_gradients | gradient_x_input | attention | occlusion")
    ] = "integrated_gradients",
    target: Annotated[str | None, typer.Option(help="output to explain (default: first)")] = None,
    label: Annotated[str | None, typer.Option(help="class to explain (default: predicted)")] = None,
    repeats: Annotated[int, typer.Option(help="importance: permutations / resamples")] = 20,
) -> None:
    """Why did the model predict that? Per row (--rows): row_<R>.json and row_<R>.png with
    modality occlusion, attributions per input and attention weights; with --importance:
    importance.{json,md,png}, the metric drop per modality when masked or permuted."""
    from polymodal.api import Predictor
    from polymodal.evaluation.importance import importance_table

    positions = row_positions(rows)
    if not positions and not importance:
        fail(ValueError("nothing to explain: pass --rows 0,5,9 and/or --importance"))
    output = output or model_dir / "explanations"
    try:
        pred = Predictor.load(model_dir)
        if positions:
            found = pred.explain(table, positions, target, method, label, output_dir=output)
            for e in found:
                occl = ", ".join(f"{k} {v:+.3f}" for k, v in e["occlusion"].items())
                typer.echo(f"row {e['row']}: {e['output']} = {e['prediction']!r}; occlusion {occl}")
        if importance:
            typer.echo(importance_table(pred.importance(table, repeats, output_dir=output)))
    except USER_ERRORS as err:
        fail(err)
    typer.echo(f"wrote {output}")


@app.command()
def report(
    model_dir: Path,
    data: Annotated[
        Path | None, typer.Option(help="labelled table (default: the config's test table/split)")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="HTML file (default MODEL_DIR/report.html)"),
    ] = None,
    max_rows: Annotated[int, typer.Option(help="rows of the table used (seeded sample)")] = 2000,
    examples: Annotated[int, typer.Option(help="explained example rows")] = 3,
    repeats: Annotated[int, typer.Option(help="importance: permutations / resamples")] = 20,
    robustness_rows: Annotated[
        int, typer.Option(help="rows for robustness when none was saved by evaluate --robustness")
    ] = 500,
    method: Annotated[str, typer.Option(help="attribution method")] = "integrated_gradients",
    screenshot: Annotated[
        Path | None, typer.Option(help="also render it in headless Chromium to this PNG")
    ] = None,
) -> None:
    """Write a self-contained report.html: config, data summary, training curves, metrics,
    confusion matrix, ROC/PR, calibration, robustness, modality importance, explained rows."""
    from polymodal.api import Predictor
    from polymodal.evaluation.report import ReportOptions

    output = output or model_dir / "report.html"
    opts = ReportOptions(max_rows, examples, repeats, robustness_rows, method)
    try:
        pred = Predictor.load(model_dir)
        pred.report(output, data, opts)
    except USER_ERRORS as err:
        fail(err)
    seconds = pred.report_["seconds"]
    typer.echo(f"wrote {output} ({pred.report_['n_rows']} rows, {seconds['total']:.1f} s)")
    if screenshot is not None:
        from polymodal.utils.browser import BrowserError, render

        try:
            page = render(output, screenshot)
        except BrowserError as err:
            fail(err)
        for error in page.console_errors:
            typer.secho(f"console error: {error}", fg=typer.colors.YELLOW, err=True)
        typer.echo(f"wrote {screenshot} ({len(page.images)} images, {page.height} px tall)")


@app.command()
def info(model_dir: Annotated[Path | None, typer.Argument()] = None) -> None:
    """List every registered component as ``kind name``; with MODEL_DIR, describe that model."""
    import polymodal.models  # noqa: F401  (registers every component)

    if model_dir is None:
        for kind in ("encoder", "fusion", "head", "preprocessor"):
            for name in registry.names(kind):
                typer.echo(f"{kind} {name}")
        return
    from polymodal.api import Predictor

    try:
        art = Predictor.load(model_dir).artifact_
    except USER_ERRORS as err:
        fail(err)
    n_params = sum(p.numel() for p in art.model.parameters())
    described = [f"{i.name} ({i.type}, {i.encoder['type']})" for i in art.config.inputs]
    typer.echo(f"inputs:  {', '.join(described)}")
    typer.echo(f"fusion:  {art.config.fusion['type']}")
    typer.echo(f"outputs: {', '.join(f'{o.name} ({o.task})' for o in art.config.outputs)}")
    typer.echo(f"params:  {n_params:,}")
    if art.metrics:
        typer.echo(json.dumps(summary(art.metrics), indent=2))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
