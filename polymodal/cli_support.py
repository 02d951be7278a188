"""What the commands share: one-line errors, logging, config reading with overrides, and the
small parsers and printers behind `init` and `fit` (kept apart so cli.py holds commands only)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import typer
import yaml


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


def fail(err: Exception) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


PRESET_HELP = (
    "fast (trains in seconds) | medium (no pretrained weights) | best (frozen pretrained "
    "encoders: the strongest, see benchmarks/presets) | none (the bare component defaults)"
)


def preset_name(name: str) -> str | None:
    from polymodal.data.presets import PRESETS

    if name == "none":
        return None
    if name not in PRESETS:
        raise typer.BadParameter(
            f"--preset must be one of {', '.join(PRESETS)}, none; got {name!r}"
        )
    return name


def echo_findings(findings: list[Any]) -> None:
    """One line per left-out or noteworthy column (stderr, so stdout stays the result)."""
    for f in findings:
        head = "left out" if f.drop else "note"
        typer.secho(f"{head:8s} {f.column}: {f.message}", fg=typer.colors.YELLOW, err=True)
    if any(f.drop for f in findings):
        typer.secho(
            "         (use a left-out column with --keep COLUMN; leave one out with --drop COLUMN)",
            fg=typer.colors.YELLOW, err=True,
        )  # fmt: skip


def config_yaml(cfg: dict[str, Any], command: str) -> str:
    """The config as YAML under a header naming the command that wrote it."""
    head = f"# written by: {command}\n# every choice is spelled out below; `polymodal config FILE` shows the defaults too\n"
    return head + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)


def parse_duration(text: str | None) -> float | None:
    """``"90"``, ``"90s"``, ``"10m"``, ``"1h30m"`` -> seconds."""
    if text is None:
        return None
    parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)\s*([smh]?)\s*)+", text.lower())
    if not parts or not text.strip():
        raise typer.BadParameter(f"--time-limit expects e.g. 90s, 10m or 1h30m, got {text!r}")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600}
    found = re.findall(r"(\d+(?:\.\d+)?)\s*([smh]?)", text.lower())
    return sum(float(n) * unit[u] for n, u in found)


def read_config(path: Path, overrides: list[str], drop_inputs: list[str]) -> dict[str, Any]:
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


def summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics without confusion matrices, for the terminal."""
    if isinstance(metrics, dict):
        return {k: summary(v) for k, v in metrics.items() if k != "confusion_matrix"}
    return metrics


def row_positions(text: str | None) -> list[int]:
    try:
        return [int(r) for r in text.split(",") if r.strip()] if text else []
    except ValueError:
        raise typer.BadParameter(f"--rows expects row positions like 0,5,9, got {text!r}") from None
