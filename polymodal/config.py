"""The experiment config: one YAML (or dict) describes inputs, fusion, outputs, data and trainer.

Component blocks (``encoder``, ``fusion``, ``head``, ``preprocessing``) are plain ``{type, **kwargs}``
dicts: their options are checked against the registered class's ``__init__`` when the model is
built (see :mod:`polymodal.registry`), so each component is described exactly once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from polymodal.utils.errors import PolymodalError

Modality = Literal["text", "image", "audio", "numeric", "categorical", "timeseries", "video"]
Task = Literal["binary", "multiclass", "multilabel", "regression", "retrieval", "caption"]

DEFAULT_ENCODER: dict[str, str] = {
    "text": "text_cnn",
    "image": "image_cnn",
    "audio": "audio_cnn",
    "numeric": "mlp",
    "categorical": "embedding",
    "timeseries": "series_cnn",
    "video": "video_frames",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputConfig(_Strict):
    name: str  # modality name; also the column when ``columns`` is not given
    type: Modality
    columns: list[str] | None = None  # numeric/categorical may group several columns
    encoder: dict[str, Any] = Field(default_factory=dict)  # {type, **kwargs}
    preprocessing: dict[str, Any] = Field(default_factory=dict)  # preprocessor kwargs
    # share another input's encoder (same weights) and fitted preprocessing, e.g. a title and a
    # review read by one text encoder; this input's own encoder/preprocessing stay unset
    tied: str | None = None

    @model_validator(mode="after")
    def _fill(self) -> InputConfig:
        if self.columns is None:
            self.columns = [self.name]
        if len(self.columns) != 1 and self.type in (
            "text",
            "image",
            "audio",
            "timeseries",
            "video",
        ):
            raise ValueError(f"input {self.name!r}: a {self.type} input reads exactly one column")
        if self.tied is None:  # a tied input's blocks come from its owner
            self.encoder.setdefault("type", DEFAULT_ENCODER[self.type])
        return self

    @property
    def cols(self) -> list[str]:
        return list(self.columns or [self.name])


class OutputConfig(_Strict):
    name: str  # target column
    task: Task
    head: dict[str, Any] = Field(default_factory=dict)  # head kwargs (hidden, dropout, ...)
    loss: Literal["default", "focal"] = "default"  # default: BCE / CE / MSE by task
    focal_gamma: float = 2.0
    class_weights: Literal["balanced"] | list[float] | dict[str, float] | None = None
    weight: float = 1.0  # loss weight in multi-task training
    label_separator: str = "|"  # multilabel cells like "a|b"
    # retrieval: the two inputs mapped into one shared space (e.g. [image, text]); ``name`` is
    # then the output's name, not a column
    pair: list[str] | None = None


class DataConfig(_Strict):
    train: str | None = None  # table path (CSV / Parquet / JSONL)
    val: str | None = None
    test: str | None = None
    split_column: str | None = None  # values train / val (or validation) / test
    val_fraction: float = 0.1  # used only when no split is given
    test_fraction: float = 0.1
    seed: int = 42
    bad_cells: Literal["raise", "mask"] = "raise"  # unreadable file cells: error, or mask+count
    # image / audio path cells may name only files inside the table's folder or one of ``roots``
    # (relative roots: to the config file's folder); true: any file the process can read
    allow_outside: bool = False
    roots: list[str] = Field(default_factory=list)
    # read tables in record batches instead of whole (Parquet / CSV / JSONL; a file, folder or
    # glob of shards); "auto": stream folders, globs and training tables over the threshold
    streaming: bool | Literal["auto"] = "auto"
    streaming_threshold_mb: float = 1024.0
    shuffle_buffer: int = 10000  # streaming: rows shuffled together (0: the table's order)
    fit_rows: int | None = None  # streaming: rows the preprocessors are fitted on (None: all)


class TrainerConfig(_Strict):
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    pretrained_lr: float | None = None  # fine-tuned pretrained encoders (hf, minilm); None: lr
    weight_decay: float = 0.01
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = 0.05  # fraction of all steps spent warming up linearly
    grad_clip: float | None = 1.0
    grad_accumulation: int = 1
    early_stopping_patience: int | None = 5  # epochs without improvement; None disables
    monitor: str | None = None  # e.g. "label.accuracy"; default: validation loss
    modality_dropout: float = 0.0  # probability of dropping each modality per sample
    # ridge: before training, linear heads (hidden: 0) are solved in closed form on the features
    # of the training rows (penalty by leave-one-out error); with frozen encoders (minirocket)
    # that is the whole fit: set epochs: 0
    head_solver: Literal["gradient", "ridge"] = "gradient"
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    num_workers: int = 0
    # frozen encoders (e.g. minilm): cache their outputs per unique input, in memory and on disk
    # (feature_cache_dir, default $POLYMODAL_CACHE_DIR or ~/.cache/polymodal/features)
    feature_cache: bool = True
    feature_cache_dir: str | None = None
    # None: every cached feature stays in memory; a number: beyond it they spill to memory-mapped
    # shards on disk (streaming tables use 256 unless set)
    feature_cache_memory_mb: float | None = None
    progress: bool = True
    # seconds of training after which it stops (after the current batch, at an epoch's end with
    # several processes) and keeps the best epoch so far; None: no limit
    time_limit: float | None = None


class ExperimentConfig(_Strict):
    inputs: list[InputConfig]
    fusion: dict[str, Any] = Field(default_factory=lambda: {"type": "concat"})
    outputs: list[OutputConfig]
    data: DataConfig = Field(default_factory=DataConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    # columns ``polymodal init`` left out, and why (a leak, an identifier...): information only;
    # to use one, add it to an input (``train`` still warns about leaks and identifiers)
    dropped: dict[str, str] = Field(default_factory=dict)
    preset: Literal["fast", "medium", "best"] | None = None  # what wrote the blocks (information)

    @field_validator("fusion")
    @classmethod
    def _fusion_type(cls, v: dict[str, Any]) -> dict[str, Any]:
        v = dict(v)
        v.setdefault("type", "concat")
        return v

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        if not self.inputs:
            raise ValueError("config needs at least one input")
        if not self.outputs:
            raise ValueError("config needs at least one output")
        names = [i.name for i in self.inputs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate input names: {sorted(dup)}")
        self._tie(names)
        self._check_pairs(names)
        targets = {o.name for o in self.outputs if o.task != "retrieval"}
        for inp in self.inputs:
            leak = targets & set(inp.cols)
            if leak:
                # one target must never be a feature of another (or of itself)
                raise ValueError(
                    f"input {inp.name!r} reads target column(s) {sorted(leak)}: a leak"
                )
        self._check_mirror(targets)
        return self

    def _check_mirror(self, targets: set[str]) -> None:
        """A series mirrored by another column (preprocessing ``mirror``) reads a column that
        an input reads (a request carries it) and that is no target (a leak)."""
        for inp in self.inputs:
            mirror = inp.preprocessing.get("mirror")
            column = mirror.get("column") if isinstance(mirror, dict) else None
            if column is None:
                continue
            if column in targets:
                raise ValueError(
                    f"input {inp.name!r}: preprocessing mirror reads target column {column!r}: "
                    "a leak"
                )
            if column not in self.input_columns:
                raise ValueError(
                    f"input {inp.name!r}: preprocessing mirror reads column {column!r}, which no "
                    f"input reads; add an input for it (e.g. {{name: {column}, type: "
                    f"categorical}}) so that requests carry it; input columns: "
                    f"{self.input_columns}"
                )

    def _check_pairs(self, names: list[str]) -> None:
        """A retrieval output names two distinct inputs; no other task takes a pair."""
        for out in self.outputs:
            if out.task != "retrieval":
                if out.pair is not None:
                    raise ValueError(f"output {out.name!r}: pair applies to task retrieval only")
                continue
            pair = out.pair or []
            if len(pair) != 2 or pair[0] == pair[1] or not set(pair) <= set(names):
                raise ValueError(
                    f"output {out.name!r} (retrieval): pair must name two different inputs, "
                    f"got {out.pair}; valid choices: {names}"
                )

    def _tie(self, names: list[str]) -> None:
        """A tied input takes a copy of its owner's encoder and preprocessing blocks."""
        by_name = {i.name: i for i in self.inputs}
        for inp in self.inputs:
            if inp.tied is None:
                continue
            owner = by_name.get(inp.tied)
            if owner is None or owner.tied is not None or owner.type != inp.type:
                raise ValueError(
                    f"input {inp.name!r}: tied must name an untied {inp.type} input; "
                    f"valid choices: {[n for n in names if by_name[n].type == inp.type and by_name[n].tied is None and n != inp.name]}"
                )
            if inp.encoder not in ({}, owner.encoder) or inp.preprocessing not in (
                {},
                owner.preprocessing,
            ):
                raise ValueError(
                    f"input {inp.name!r} is tied to {owner.name!r}: it uses that input's encoder "
                    "and preprocessing, so it must not set its own"
                )
            inp.encoder, inp.preprocessing = dict(owner.encoder), dict(owner.preprocessing)

    @property
    def input_columns(self) -> list[str]:
        return [c for i in self.inputs for c in i.cols]


class ConfigError(PolymodalError, ValueError):
    """A config file or dict that does not describe a valid experiment."""


def load_config(source: str | Path | dict[str, Any] | ExperimentConfig) -> ExperimentConfig:
    """Parse a YAML path, YAML text, dict or config into a validated :class:`ExperimentConfig`."""
    if isinstance(source, ExperimentConfig):
        return source
    where = "config"
    if isinstance(source, (str, Path)):
        path = Path(source)
        looks_like_path = "\n" not in str(source) and len(str(source)) < 1024
        if looks_like_path and (path.suffix in (".yaml", ".yml", ".json") or path.exists()):
            if not path.exists():
                raise ConfigError(f"config file {path} does not exist")
            where = str(path)
            source = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            if isinstance(source, dict):
                source = resolve_table_paths(source, path.resolve().parent)
        else:
            source = yaml.safe_load(str(source)) or {}
    if not isinstance(source, dict):
        raise ConfigError(
            f"{where}: expected a mapping at the top level, got {type(source).__name__}"
        )
    try:
        return ExperimentConfig.model_validate(source)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"])
            lines.append(f"  {loc or '(top)'}: {e['msg']}")
        raise ConfigError(
            f"{where} is not a valid polymodal config:\n" + "\n".join(lines)
        ) from None


def resolve_table_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Table paths in a config file are relative to the file, not to the working directory."""
    tables = data.get("data")
    if not isinstance(tables, dict):
        return data
    tables = dict(tables)
    for key in ("train", "val", "test"):
        value = tables.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            tables[key] = str(base / value)
    roots = tables.get("roots")
    if isinstance(roots, list):
        tables["roots"] = [
            str(base / r) if isinstance(r, str) and not Path(r).expanduser().is_absolute() else r
            for r in roots
        ]
    return {**data, "data": tables}


def to_dict(config: ExperimentConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")


def to_yaml(config: ExperimentConfig | dict[str, Any]) -> str:
    data = to_dict(config) if isinstance(config, ExperimentConfig) else config
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _step(node: Any, part: str, path: str) -> tuple[Any, str | int]:
    """The container holding ``part`` and the key to use in it: dict keys, list positions, or
    (in a list of named blocks such as ``inputs``) the block's name."""
    if isinstance(node, list):
        if part.lstrip("-").isdigit():
            i = int(part)
            if not -len(node) <= i < len(node):
                raise ConfigError(
                    f"{path}: index {i} out of range (the list has {len(node)} items)"
                )
            return node, i % len(node)
        named = [
            k for k, item in enumerate(node) if isinstance(item, dict) and item.get("name") == part
        ]
        if not named:
            names = [item.get("name") for item in node if isinstance(item, dict)]
            raise ConfigError(f"{path}: no item named {part!r}; valid choices: {names}")
        return node, named[0]
    if isinstance(node, dict):
        return node, part
    raise ConfigError(f"{path}: cannot go into a {type(node).__name__} value")


def set_value(data: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """``data`` with ``key`` (a dotted path: ``trainer.epochs``, ``inputs.review.encoder.type``,
    ``inputs.0.columns``) set to ``value``; missing dict levels are created."""
    parts = key.split(".")
    if not key or not all(parts):
        raise ConfigError(f"--set {key!r}: expected a dotted path like trainer.epochs")
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        container, k = _step(node, part, ".".join(parts[: depth + 1]))
        if isinstance(container, dict) and not isinstance(container.get(k), (dict, list)):
            container[k] = {}
        node = container[k]
    container, k = _step(node, parts[-1], key)
    container[k] = value
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``["trainer.epochs=3", "inputs.review.encoder.type=minilm", "inputs.numeric.columns=[a, b]"]``:
    each value is parsed as YAML (numbers, booleans, lists, mappings, null)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {key}: {raw!r} is not a YAML value ({err})") from None
        set_value(data, key.strip(), value)
    return data


def drop_inputs(data: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """``data`` without the named inputs (and without inputs tied to them)."""
    inputs = data.get("inputs") or []
    known = [i.get("name") for i in inputs if isinstance(i, dict)]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"--drop-input {unknown[0]!r}: no such input; valid choices: {known}")
    gone = set(names) | {
        i["name"] for i in inputs if isinstance(i, dict) and i.get("tied") in names
    }
    data["inputs"] = [i for i in inputs if not (isinstance(i, dict) and i.get("name") in gone)]
    return data
