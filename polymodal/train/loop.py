"""The training loop: short and explicit. accelerate only takes over device, precision and
distribution; everything else (schedule, clipping, early stopping, checkpoints) is visible here."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

from polymodal.config import TrainerConfig
from polymodal.data.dataset import TableDataset
from polymodal.data.pipeline import TablePipeline
from polymodal.data.stream import StreamingTable
from polymodal.encoders.cache import (
    FeatureCache,
    StageCache,
    frozen_stage,
    is_frozen,
    namespace,
    warm_model,
)
from polymodal.evaluation.distributed import evaluate_all
from polymodal.evaluation.evaluate import monitor_value, move
from polymodal.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from polymodal.train.distributed import accelerator, train_loader
from polymodal.train.neighbours import fill_neighbour_indexes
from polymodal.train.optim import make_optimizer, modality_dropout
from polymodal.train.ridge import fit_ridge_heads
from polymodal.train.schedule import lr_at
from polymodal.utils import progress as P
from polymodal.utils.dist import check_same, gather_json, mean, world_size

log = logging.getLogger("polymodal.train")


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    best: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None  # why training ended before trainer.epochs ("time limit", ...)
    best_loss: float = float("inf")  # validation loss at the best epoch (breaks metric ties)


def make_accelerator(cfg: TrainerConfig, model: nn.Module | None = None) -> Accelerator:
    return accelerator(cfg, model)  # gradient accumulation is explicit in _run_epoch


def train(
    model: nn.Module,
    pipeline: TablePipeline,
    train_ds: TableDataset | StreamingTable,
    val_ds: TableDataset | StreamingTable | None,
    cfg: TrainerConfig,
    run_dir: Path,
    loss_weights: dict[str, float],
    resume: bool = False,
) -> TrainState:
    """Train ``model`` in place; on return it holds the best weights (by ``cfg.monitor``)."""
    acc = make_accelerator(cfg, model)
    torch.manual_seed(cfg.seed)
    loader = train_loader(train_ds, cfg, acc)  # this process's share of every global batch
    optimizer = make_optimizer(model, cfg)
    model, optimizer = acc.prepare(model, optimizer)
    raw: nn.Module = acc.unwrap_model(model)
    steps_per_epoch = math.ceil(len(loader) / cfg.grad_accumulation)
    total_steps = cfg.epochs * steps_per_epoch
    warmup = int(cfg.warmup_ratio * total_steps)
    state, best_weights = TrainState(), None
    ckpt_dir = run_dir / "checkpoints"
    last = latest_checkpoint(ckpt_dir / "last") if resume else None
    if last is not None:
        state, best_weights = _restore(last, raw, optimizer)
        log.info("resumed from %s after epoch %d", last, state.epoch)
    check_same(state.epoch, "the epoch to resume from (is the output folder shared?)")
    deadline = time.perf_counter() + cfg.time_limit if cfg.time_limit else None
    with feature_caches(raw, pipeline, cfg) as caches:
        fill_neighbour_indexes(raw, train_ds, acc.device, cfg.batch_size)  # retrieve: k heads
        if cfg.head_solver == "ridge" and last is None:  # closed-form heads, then epochs
            fit_ridge_heads(raw, train_ds if isinstance(train_ds, TableDataset) else loader,
                            acc.device)  # fmt: skip
        best_weights = _epochs(
            acc, model, raw, optimizer, loader, pipeline, val_ds, cfg, state, best_weights,
            loss_weights, total_steps, warmup, ckpt_dir, caches, deadline,
        )  # fmt: skip
    if best_weights is not None:
        raw.load_state_dict(best_weights)
    return state


def _epochs(
    acc: Accelerator,
    model: nn.Module,
    raw: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Any,
    pipeline: TablePipeline,
    val_ds: TableDataset | StreamingTable | None,
    cfg: TrainerConfig,
    state: TrainState,
    best_weights: dict[str, torch.Tensor] | None,
    loss_weights: dict[str, float],
    total_steps: int,
    warmup: int,
    ckpt_dir: Path,
    caches: dict[str, FeatureCache],
    deadline: float | None = None,
) -> dict[str, torch.Tensor] | None:
    """Epoch after epoch until done, stopped early or out of time; returns the best weights."""
    aug_gen = torch.Generator()
    first_epoch = state.epoch
    for epoch in range(state.epoch, cfg.epochs):
        if _stop_early(state, cfg):
            break
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        _reseed(loader, cfg.seed + epoch)
        aug_gen.manual_seed(cfg.seed * 1000 + epoch)
        t0 = time.perf_counter()
        if caches and epoch == first_epoch:  # the frozen features, computed once, length-sorted
            _warm(
                raw,
                caches,
                [d for d in (loader.dataset, val_ds) if isinstance(d, TableDataset)],
                cfg,
            )
        train_loss = _run_epoch(
            acc,
            model,
            raw,
            optimizer,
            loader,
            pipeline,
            cfg,
            state,
            loss_weights,
            aug_gen,
            total_steps,
            warmup,
            epoch,
            deadline,
        )
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": mean(train_loss),  # over all ranks: every rank keeps one history
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0,
        }
        value, higher = float(-row["train_loss"]), True  # the same on every rank
        loss = float(row["train_loss"])
        if val_ds is not None:
            report = evaluate_all(
                raw, val_ds, pipeline, device=acc.device, loss_weights=loss_weights
            )
            row["val"] = report
            value, higher = monitor_value(report, cfg.monitor)
            loss = float(report["loss"])
        if _improved(state, value, higher, loss):
            state.best, state.best_epoch, state.bad_epochs = value, epoch + 1, 0
            state.best_loss = loss
            best_weights = {k: v.detach().clone() for k, v in raw.state_dict().items()}
        else:
            state.bad_epochs += 1
        state.epoch = epoch + 1
        if caches:
            row["feature_cache"] = {k: [c.hits, c.misses] for k, c in caches.items()}
            for cache in caches.values():
                cache.flush()
        state.history.append(row)
        _log_epoch(row, cfg)
        if acc.is_main_process:
            _save(ckpt_dir / "last", raw, optimizer, state, best_weights)
        if _out_of_time(deadline):
            state.stopped = "time limit"
            log.info(
                "time limit (%.0f s) reached after epoch %d: keeping the best epoch (%d)",
                cfg.time_limit, state.epoch, state.best_epoch,
            )  # fmt: skip
            break
    return best_weights


def _improved(state: TrainState, value: float, higher: bool, loss: float) -> bool:
    """Better on the monitored value; on a tie (a metric that saturates, such as a ROC-AUC of
    1.0 on an easy validation set), lower validation loss decides."""
    if state.best is None or (value > state.best if higher else value < state.best):
        return True
    return value == state.best and loss < state.best_loss


def _out_of_time(deadline: float | None) -> bool:
    """Past the deadline on any process (every rank decides alike, so all stop together)."""
    if deadline is None:
        return False
    late = time.perf_counter() > deadline
    return any(gather_json(late)) if world_size() > 1 else late


def _warm(
    raw: nn.Module, caches: dict[str, FeatureCache], datasets: list[Any], cfg: TrainerConfig
) -> None:
    for ds in datasets:
        warm_model(raw, {name: ds.inputs[name].values for name in caches}, cfg.batch_size)


def feature_cache_dir(cfg: TrainerConfig) -> Path:
    if cfg.feature_cache_dir:
        return Path(cfg.feature_cache_dir)
    env = os.environ.get("POLYMODAL_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "polymodal" / "features"


@contextlib.contextmanager
def feature_caches(
    raw: nn.Module, pipeline: TablePipeline, cfg: TrainerConfig
) -> Iterator[dict[str, FeatureCache]]:
    """Frozen-feature caches attached to ``raw`` for the duration of the block, flushed to disk
    and detached on exit. Nested use keeps the outer block's caches (the caller's fit covers
    training and the final evaluations)."""
    attached: dict[str, FeatureCache] = getattr(raw, "feature_caches", {})
    if attached:
        yield attached
        return
    caches = attach_feature_caches(raw, pipeline, cfg)
    try:
        yield caches
    finally:
        for cache in caches.values():
            cache.flush()
        if hasattr(raw, "feature_caches"):
            raw.feature_caches = {}  # type: ignore[assignment]


def attach_feature_caches(
    raw: nn.Module, pipeline: TablePipeline, cfg: TrainerConfig
) -> dict[str, FeatureCache]:
    """A cache for each frozen encoder whose input is not augmented (augmented inputs differ
    every epoch, so caching them would only grow the disk), or augmented as a fixed few views
    per row (image ``views``), which the cache serves after their first pass."""
    if not cfg.feature_cache or not hasattr(raw, "feature_caches"):
        return {}
    caches: dict[str, FeatureCache] = {}
    encoders: nn.ModuleDict = raw.encoders  # type: ignore[assignment]
    tied: dict[str, str] = getattr(raw, "tied", {})
    for name in getattr(raw, "inputs", list(encoders)):
        enc = encoders[tied.get(name, name)]
        pre = pipeline.preprocessors[name]
        stage = frozen_stage(enc)  # a frozen frame encoder inside a video encoder: per frame
        whole = getattr(enc, "frozen", False) and is_frozen(enc)
        cacheable = whole or stage is not None
        if pre.augments and pre.fixed_views and not cacheable:
            log.warning(
                "%s: preprocessing views only pays off with a frozen encoder (its features are "
                "cached); this encoder trains, so views only limit augmentation to a few fixed "
                "versions per row",
                name,
            )
        if not cacheable or (pre.augments and not pre.fixed_views):
            continue
        part = enc if whole or stage is None else stage
        kind = FeatureCache if whole else StageCache
        key = namespace(part, getattr(part, "build_config", {}), pre.state_dict())
        caches[name] = kind(key, feature_cache_dir(cfg), cfg.feature_cache_memory_mb)
        log.info("feature cache for frozen %s: %d entries on disk", name, len(caches[name]))
    raw.feature_caches = dict(caches)  # type: ignore[assignment]
    return caches


def _stop_early(state: TrainState, cfg: TrainerConfig) -> bool:
    patience = cfg.early_stopping_patience
    if patience is not None and state.bad_epochs >= patience:
        log.info(
            "early stopping: no improvement for %d epochs (best epoch %d)",
            patience,
            state.best_epoch,
        )
        return True
    return False


def _reseed(loader: Any, seed: int) -> None:
    """Shuffle order depends only on (seed, epoch), so a resumed run sees the same batches."""
    sampler = getattr(loader, "sampler", None)
    gen = getattr(sampler, "generator", None) or getattr(
        getattr(loader, "batch_sampler", None), "generator", None
    )
    for obj in (
        gen,
        getattr(
            getattr(getattr(loader, "batch_sampler", None), "sampler", None), "generator", None
        ),
        getattr(loader, "synchronized_generator", None),  # accelerate, several processes
    ):
        if isinstance(obj, torch.Generator):
            obj.manual_seed(seed)


def _run_epoch(
    acc: Accelerator,
    model: nn.Module,
    raw: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Any,
    pipeline: TablePipeline,
    cfg: TrainerConfig,
    state: TrainState,
    loss_weights: dict[str, float],
    aug_gen: torch.Generator,
    total_steps: int,
    warmup: int,
    epoch: int,
    deadline: float | None = None,
) -> float:
    model.train()
    total, count, n, accum = 0.0, 0, len(loader), cfg.grad_accumulation
    alone = world_size() == 1  # several processes stop together, at an epoch's end
    with _progress(cfg, acc, n, epoch, state) as bar:
        for i, batch in enumerate(loader):
            batch = move(batch, acc.device)
            features = pipeline.augment(batch["features"], aug_gen)
            masks = modality_dropout(batch["masks"], cfg.modality_dropout, aug_gen)
            sync = (i + 1) % accum == 0 or i + 1 == n  # last batch of an accumulation window
            with contextlib.nullcontext() if sync else acc.no_sync(model):
                out = model(features, masks)
                loss, _ = raw.loss(out, batch["targets"], masks, loss_weights)  # type: ignore[operator]
                acc.backward(loss / min(accum, n - i // accum * accum))  # / batches in window
            if sync:
                _step(acc, model, optimizer, cfg, state, total_steps, warmup)
            total += float(loss.detach())
            count += 1
            bar.step(total / count)
            if sync and alone and deadline is not None and time.perf_counter() > deadline:
                log.info(
                    "time limit reached in epoch %d after %d of %d batches", epoch + 1, i + 1, n
                )
                break
    return total / max(count, 1)


def _step(
    acc: Accelerator,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: TrainerConfig,
    state: TrainState,
    total_steps: int,
    warmup: int,
) -> None:
    """One optimizer step on the accumulated (and, across processes, averaged) gradients."""
    if cfg.grad_clip:
        acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    rate = lr_at(state.step, total_steps, cfg.lr, warmup, cfg.schedule)
    for group in optimizer.param_groups:
        group["lr"] = rate * group.get("lr_scale", 1.0)
    state.step += 1
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


class _Bar:
    """Live bar on a terminal: epoch, steps, running train loss, the best validation value so
    far, elapsed time and ETA."""

    def __init__(self, total: int, epoch: int, epochs: int, last_val: str) -> None:
        self.progress = Progress(
            TextColumn(f"epoch {epoch + 1}/{epochs}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn(last_val),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=True,
        )
        self.task = self.progress.add_task("train", total=total, loss=float("nan"))

    def __enter__(self) -> _Bar:
        self.progress.start()
        P.hold(True)  # nothing else may open a live display meanwhile
        return self

    def __exit__(self, *exc: object) -> None:
        P.hold(False)
        self.progress.stop()

    def step(self, loss: float) -> None:
        self.progress.update(self.task, advance=1, loss=loss)


class _Lines:
    """Outside a terminal: a log line every few seconds (batches, rate, ETA, loss)."""

    def __init__(self, total: int, epoch: int, epochs: int) -> None:
        self.cm = P.progress(total, f"epoch {epoch + 1}/{epochs}", "batches")
        self.loss = float("nan")

    def __enter__(self) -> _Lines:
        self.reporter = self.cm.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cm.__exit__(None, None, None)

    def step(self, loss: float) -> None:
        self.loss = loss
        self.reporter.advance(1)


def _progress(
    cfg: TrainerConfig, acc: Accelerator, total: int, epoch: int, state: TrainState
) -> _Bar | _Lines:
    """A bar on a terminal, periodic log lines elsewhere, silence with ``progress: false``."""
    if cfg.progress and acc.is_main_process and P.enabled() and Console().is_terminal:
        last = (
            f"best val {cfg.monitor or 'loss'} {state.best:.4f}" if state.best is not None else ""
        )
        return _Bar(total, epoch, cfg.epochs, last)
    if not cfg.progress:
        total = 0  # a silent reporter
    return _Lines(total, epoch, cfg.epochs)


SHOWN = ("accuracy", "macro_f1", "f1", "roc_auc", "micro_f1", "rmse", "r2", "mean_R@10", "bleu4")


def _log_epoch(row: dict[str, Any], cfg: TrainerConfig) -> None:
    msg = f"epoch {row['epoch']}/{cfg.epochs} train_loss {row['train_loss']:.4f}"
    val = row.get("val")
    if val:
        msg += f" val_loss {val['loss']:.4f}"
        out, _, metric = (cfg.monitor or "").partition(".")
        for name, metrics in val.items():
            if isinstance(metrics, dict):
                keys = ([metric] if name == out else []) + [k for k in SHOWN if k != metric]
                shown = [(k, metrics[k]) for k in keys if isinstance(metrics.get(k), float)]
                msg += "".join(f" {name}.{k} {v:.4f}" for k, v in shown[:3])
    msg += f" ({row['seconds']:.1f}s)"
    log.info(msg)


def _save(
    path: Path,
    raw: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    best: dict[str, torch.Tensor] | None,
) -> None:
    parts: dict[str, Any] = {
        "model": raw.state_dict(),
        "optimizer": optimizer.state_dict(),
        "trainer": asdict(state),
        "rng": {"torch": torch.get_rng_state()},
    }
    if best is not None:
        parts["best"] = best
    save_checkpoint(path, parts)


def _restore(
    path: Path, raw: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[TrainState, dict[str, torch.Tensor] | None]:
    ck = load_checkpoint(path)
    raw.load_state_dict(ck["model"])
    optimizer.load_state_dict(ck["optimizer"])
    torch.set_rng_state(ck["rng"]["torch"])
    return TrainState(**ck["trainer"]), ck.get("best")
