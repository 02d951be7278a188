"""What the training loop needs to run the same way on one process or many (``torchrun``,
``accelerate launch``, several machines): the process group, and training batches split so that
``trainer.batch_size`` is the global batch whatever the number of processes.

An in-memory dataset goes through accelerate's loader (``split_batches``: each process takes its
share of every batch of the one shuffled order, so N processes see exactly the batches one
process would). A streaming table is sharded by rank and DataLoader worker itself (accelerate
would read the whole stream on every rank).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs
from torch import nn
from torch.utils.data import DataLoader

from polymodal.config import TrainerConfig
from polymodal.data.dataset import Batch, TableDataset, collate_batch
from polymodal.data.stream import StreamingTable


def use_cpu(cfg: TrainerConfig) -> bool:
    return cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())


def start_processes(cfg: TrainerConfig) -> PartialState:
    """Join the process group ``torchrun`` / ``accelerate launch`` set up (gloo on CPU, NCCL on
    GPU), before any data is read; alone, nothing happens."""
    return PartialState(cpu=use_cpu(cfg))


def accelerator(cfg: TrainerConfig, model: nn.Module | None = None) -> Accelerator:
    """accelerate keeps one process-wide state: a later fit in the same process (a notebook, the
    tests) that asks for another precision starts it afresh (the process group stays).

    DDP re-broadcasts rank 0's buffers before every forward by default, one collective per step
    (2-3 ms on CPU with gloo, a third of a small model's step): only batch-norm running
    statistics change in training, so the broadcast is kept for models that have them."""
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") != cfg.mixed_precision:
        AcceleratorState._reset_state()
    return Accelerator(
        cpu=use_cpu(cfg),
        mixed_precision=cfg.mixed_precision,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=_running_stats(model))],
    )


def _running_stats(model: nn.Module | None) -> bool:
    return model is None or any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        for m in model.modules()
    )


def per_process_batch(batch_size: int, processes: int) -> int:
    if batch_size % processes:
        raise ValueError(
            f"trainer.batch_size ({batch_size}) is the global batch: it must be a multiple of "
            f"the number of processes ({processes})"
        )
    return batch_size // processes


class StreamLoader:
    """A DataLoader over a sharded :class:`StreamingTable`: knows its length and its epoch."""

    def __init__(self, table: StreamingTable, workers: int) -> None:
        self.dataset = table
        self.loader = DataLoader(
            table, batch_size=None, num_workers=workers, collate_fn=collate_batch
        )

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.loader)


def train_loader(data: TableDataset | StreamingTable, cfg: TrainerConfig, acc: Accelerator) -> Any:
    """This process's training batches (on its device for in-memory data)."""
    per = per_process_batch(cfg.batch_size, acc.num_processes)
    if isinstance(data, StreamingTable):
        data.shard(acc.process_index, acc.num_processes, per, cfg.num_workers, train=True)
        return StreamLoader(data, cfg.num_workers)
    loader = DataLoader(
        data,
        batch_size=cfg.batch_size,
        shuffle=True,
        collate_fn=collate_batch,
        num_workers=cfg.num_workers,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    return acc.prepare(loader)


__all__ = [
    "StreamLoader",
    "accelerator",
    "per_process_batch",
    "start_processes",
    "train_loader",
    "use_cpu",
]
