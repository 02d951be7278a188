"""Batch-level parallelism for CPU work whose ops scale badly across threads.

Some models (MiniRocket's many small convolutions and comparisons) gain little from PyTorch's
intra-op threads: each op is too short to share out, and the threads mostly wait. Splitting the
batch instead, one part per core with each part's ops on one thread, keeps every core busy
(about 1.6x on 2 cores, see benchmarks/timeseries/README.md).

With the OpenMP backend, ``torch.set_num_threads`` called in a worker thread sets that thread's
own OpenMP thread count; it also sets a process-wide default (used by threads created later and
by the pthreadpool of QNNPACK/XNNPACK/NNPACK), which is restored here at once, so the caller's
threads are as they were. With any other backend the setting is process-wide and
:func:`split_map` runs serially."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor


def split_map(fn: Callable[[Tensor], Tensor], x: Tensor, min_rows: int = 16) -> Tensor:
    """``fn(x)``, computed as ``cat(fn(part))`` over one part of the batch per thread of
    ``torch.get_num_threads()`` (single-threaded ops in each part) when ``x`` is a CPU batch of
    at least ``min_rows`` rows per part; else ``fn(x)``. ``fn`` must treat rows independently."""
    threads = torch.get_num_threads()
    parts = min(threads, len(x) // max(1, min_rows))
    if parts < 2 or x.device.type != "cpu" or not _openmp() or _in_worker():
        return fn(x)
    return torch.cat(list(_pool(threads, os.getpid()).map(fn, x.chunk(parts))))


@functools.cache
def _openmp() -> bool:
    return "parallel backend: OpenMP" in torch.__config__.parallel_info()


_local = threading.local()


def _in_worker() -> bool:
    return bool(getattr(_local, "worker", False))


@functools.cache
def _pool(threads: int, pid: int) -> ThreadPoolExecutor:
    """``threads`` worker threads, each with one intra-op thread, kept for the process (``pid``:
    a forked child, which has none of its parent's threads, starts its own)."""
    ready = threading.Barrier(threads + 1)

    def start() -> None:
        _local.worker = True
        torch.get_num_threads()  # PyTorch's lazy per-thread set-up first, or it undoes the next
        torch.set_num_threads(1)  # this thread's OpenMP count (and the process default)
        ready.wait()

    pool = ThreadPoolExecutor(threads, thread_name_prefix="polymodal-split")
    for _ in range(threads):  # one blocking task each: every worker starts now
        pool.submit(start)
    ready.wait()
    torch.set_num_threads(threads)  # the process default as it was; workers keep 1
    return pool


__all__ = ["split_map"]
