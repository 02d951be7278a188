"""Command line: thin wrappers that parse arguments and call :mod:`polymodal.api`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from polymodal import registry
from polymodal.utils.errors import USER_ERRORS

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="polymodal: tables of mixed data -> multimodal models",
)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


def _fail(err: Exception) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


PRESET_HELP = "fast | medium | best | none (none: the bare component defaults)"


def _preset(name: str) -> str | None:
    from polymodal.data.presets import PRESETS

    if name == "none":
        return None
    if name not in PRESETS:
        raise typer.BadParameter(
            f"--preset must be one of {', '.join(PRESETS)}, none; got {name!r}"
        )
    return name


def _echo_findings(findings: list[Any]) -> None:
    """One line per left-out or noteworthy column (stderr, so stdout stays the result)."""
    for f in findings:
        head = "left out" if f.drop else "note"
        typer.secho(f"{head:8s} {f.column}: {f.message}", fg=typer.colors.YELLOW, err=True)
    if any(f.drop for f in findings):
        typer.secho(
            "         (use a left-out column with --keep COLUMN; leave one out with --drop COLUMN)",
            fg=typer.colors.YELLOW, err=True,
        )  # fmt: skip


def _config_yaml(cfg: dict[str, Any], command: str) -> str:
    """The config as YAML under a header naming the command that wrote it."""
    head = f"# written by: {command}\n# every choice is spelled out below; `polymodal config FILE` shows the defaults too\n"
    return head + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)


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
                        table.resolve().parent, _preset(preset), drop or [], keep or [])  # fmt: skip
    except USER_ERRORS as err:
        _fail(err)
    cfg = found.config
    cfg.setdefault("data", {})["train"] = str(table)
    command = f"polymodal init {table} " + " ".join(f"--target {t!r}" for t in target)
    output.write_text(_config_yaml(cfg, f"{command} --preset {preset}"), encoding="utf-8")
    for inp in cfg["inputs"]:
        enc = inp.get("encoder", {}).get("type") or (
            f"tied to {inp['tied']}" if inp.get("tied") else "default"
        )
        cols = ", ".join(inp.get("columns") or [inp["name"]])
        typer.echo(f"{inp['type']:12s} {inp['name']} <- {cols}  [{enc}]")
    for out in cfg["outputs"]:
        typer.echo(f"{'target':12s} {out['name']} ({out['task']})")
    _echo_findings(found.findings)
    typer.echo(f"wrote {output}")


def _seconds(text: str | None) -> float | None:
    """``"90"``, ``"90s"``, ``"10m"``, ``"1h30m"`` -> seconds."""
    import re

    if text is None:
        return None
    parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)\s*([smh]?)\s*)+", text.lower())
    if not parts or not text.strip():
        raise typer.BadParameter(f"--time-limit expects e.g. 90s, 10m or 1h30m, got {text!r}")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600}
    found = re.findall(r"(\d+(?:\.\d+)?)\s*([smh]?)", text.lower())
    return sum(float(n) * unit[u] for n, u in found)


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

    _setup_logging(not quiet and is_main_process())
    set_enabled(False if quiet else None)
    try:
        pred = Predictor.fit_table(
            table, target if len(target) > 1 else target[0], _preset(preset),
            output, val, test, _seconds(time_limit), drop or [], keep or [], overrides or [],
        )  # fmt: skip
        if report and is_main_process():
            pred.report(output / "report.html")
    except USER_ERRORS as err:
        _fail(err)
    if is_main_process():
        typer.echo(json.dumps(_summary(pred.metrics_), indent=2))
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
        _fail(err)


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

    _setup_logging(not quiet and is_main_process())  # several processes: rank 0 speaks
    set_enabled(False if quiet else None)
    try:
        data = _read_config(config_path, overrides or [], drop_input or [])
        if quiet:
            data.setdefault("trainer", {})["progress"] = False
        data = resolve_table_paths(data, config_path.resolve().parent)
        pred = Predictor(data).fit(train, val, test, output_dir=output, resume=resume)
    except USER_ERRORS as err:
        _fail(err)
    if is_main_process():
        typer.echo(json.dumps(_summary(pred.metrics_), indent=2))
        typer.echo(f"saved model to {output}")


def _read_config(path: Path, overrides: list[str], drop_inputs: list[str]) -> dict[str, Any]:
    """A config file as a dict, with ``--set`` overrides and ``--drop-input`` applied (both
    checked again with the config itself when it is loaded)."""
    from polymodal.config import ConfigError, apply_overrides
    from polymodal.config import drop_inputs as without

    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return without(apply_overrides(data, overrides), drop_inputs)


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics without confusion matrices, for the terminal."""
    if isinstance(metrics, dict):
        return {k: _summary(v) for k, v in metrics.items() if k != "confusion_matrix"}
    return metrics


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
        _fail(err)
    write_json(output, report)
    typer.echo(json.dumps(_summary(report), indent=2))
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
        _fail(err)
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
        _fail(ValueError(f"--format must be onnx, got {fmt!r}"))
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
        _fail(err)
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
        _fail(err)
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
    max_decode_mb: Annotated[
        float, typer.Option(help="a request whose files would decode to more gets a 413")
    ] = 512.0,
) -> None:
    """Serve MODEL_DIR over HTTP: POST /predict, GET /health, GET /metadata, GET /docs."""
    import uvicorn

    from polymodal.serving.app import create_app

    if backend not in ("torch", "onnx"):
        _fail(ValueError(f"--backend must be torch or onnx, got {backend!r}"))
    try:
        app_ = create_app(model_dir, backend, data_dir, int(max_body_mb * 2**20),  # type: ignore[arg-type]
                          max_decode_bytes=int(max_decode_mb * 2**20))  # fmt: skip
    except USER_ERRORS as err:
        _fail(err)
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
        info_ = Predictor.load(model_dir).index(
            table, column, kind=kind, id_column=id_column, output=output
        )
    except USER_ERRORS as err:
        _fail(err)
    typer.echo(json.dumps(info_, indent=2))


@app.command(name="search")
def search_cmd(
    model_dir: Path,
    text: Annotated[str | None, typer.Option(help="text query")] = None,
    image: Annotated[Path | None, typer.Option(help="image file query")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="how many rows to return")] = 10,
    column: Annotated[str | None, typer.Option(help="which index, if several")] = None,
) -> None:
    """Top-k rows of MODEL_DIR's index for a --text or an --image query, with their scores."""
    from polymodal.api import Predictor

    try:
        hits = Predictor.load(model_dir).search(text=text, image=image, k=k, column=column)
    except USER_ERRORS as err:
        _fail(err)
    typer.echo(hits.drop(columns="query").to_string(index=False))


def _rows(text: str | None) -> list[int]:
    try:
        return [int(r) for r in text.split(",") if r.strip()] if text else []
    except ValueError:
        raise typer.BadParameter(f"--rows expects row positions like 0,5,9, got {text!r}") from None


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

    positions = _rows(rows)
    if not positions and not importance:
        _fail(ValueError("nothing to explain: pass --rows 0,5,9 and/or --importance"))
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
        _fail(err)
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
        _fail(err)
    seconds = pred.report_["seconds"]
    typer.echo(f"wrote {output} ({pred.report_['n_rows']} rows, {seconds['total']:.1f} s)")
    if screenshot is not None:
        from polymodal.utils.browser import BrowserError, render

        try:
            page = render(output, screenshot)
        except BrowserError as err:
            _fail(err)
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
        _fail(err)
    n_params = sum(p.numel() for p in art.model.parameters())
    described = [f"{i.name} ({i.type}, {i.encoder['type']})" for i in art.config.inputs]
    typer.echo(f"inputs:  {', '.join(described)}")
    typer.echo(f"fusion:  {art.config.fusion['type']}")
    typer.echo(f"outputs: {', '.join(f'{o.name} ({o.task})' for o in art.config.outputs)}")
    typer.echo(f"params:  {n_params:,}")
    if art.metrics:
        typer.echo(json.dumps(_summary(art.metrics), indent=2))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
