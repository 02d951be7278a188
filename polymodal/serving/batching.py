"""Dynamic micro-batching: concurrent requests are computed together, each caller gets its own
rows back.

One worker thread owns the model. It takes the first waiting request, then every request already
queued behind it (and, with ``max_wait_s``, any arriving within that time) up to ``max_batch``
rows, and computes them as one batch. Under load, requests queue while the model is busy, so
batches form by themselves. The wait is only spent under load (requests queued behind the first,
or the last batch held several): a lone request is computed at once, not after ``max_wait_s``
(the deploy benchmark measured the wait costing a sequential client about 4 ms a request). A
request larger than ``max_batch`` is split into batches of its own.

A batch that fails is computed again request by request, so a bad row fails only its own request
(a 4xx naming row and field), never its batch-mates. A request whose caller has gone (its future
cancelled) is skipped before it costs any compute.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

Records = list[dict[str, Any]]


@dataclass
class Job:
    """Rows of one request (or a piece of a large one) and where its answer goes."""

    records: Records
    future: Future[Records] = field(default_factory=Future)


class MicroBatcher:
    """``compute(records) -> rows`` (one output row per record, in order) run on batches made
    of several jobs, in one thread. ``on_batch(rows)`` is told each batch's size (metrics)."""

    def __init__(
        self,
        compute: Callable[[Records], Records],
        max_batch: int = 64,
        max_wait_s: float = 0.0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError(
                f"max_batch must be >= 1 and max_wait >= 0, got {max_batch}, {max_wait_s}"
            )
        self.compute, self.max_batch, self.max_wait_s = compute, max_batch, max_wait_s
        self.on_batch = on_batch
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._held: Job | None = None  # a job that did not fit the last batch: first of the next
        self._last_jobs = 0  # jobs in the last batch: several means concurrent callers
        self._lock = threading.Lock()
        self._thread = self._start()

    def _start(self) -> threading.Thread:
        self._stopped = False
        thread = threading.Thread(target=self._loop, name="polymodal-batcher", daemon=True)
        thread.start()
        return thread

    def submit(self, records: Records) -> list[Future[Records]]:
        """Queue a request's rows; one future per piece of at most ``max_batch`` rows."""
        step = self.max_batch
        jobs = [Job(records[i : i + step]) for i in range(0, len(records), step)] or [Job([])]
        with self._lock:
            if self._stopped:  # closed (an app's lifespan ended) and used again
                self._thread = self._start()
            for job in jobs:
                self._queue.put(job)
        return [job.future for job in jobs]

    def close(self, timeout: float = 30.0) -> None:
        """Finish the jobs already queued, then stop the worker (a later ``submit`` starts a
        new one: an app may be started and stopped more than once, as test clients do)."""
        with self._lock:
            if self._stopped:
                return
            self._queue.put(None)
            thread = self._thread
        thread.join(timeout)

    def _loop(self) -> None:
        while True:
            first = self._held or self._queue.get()
            self._held = None
            if first is None:  # close(): stop once nothing is queued (decided under the lock
                with self._lock:  # that submit takes, so no job is left without a worker)
                    if self._queue.empty():
                        self._stopped = True
                        return
                continue
            jobs, closing = self._gather(first)
            self._run(jobs)
            if closing:
                self._queue.put(None)  # stop after what is still queued

    def _gather(self, first: Job) -> tuple[list[Job], bool]:
        """``first`` and the jobs behind it, up to ``max_batch`` rows; whether ``close`` was
        seen (the sentinel is put back by the caller once this batch is done)."""
        jobs, rows = [first], len(first.records)
        lone = self._last_jobs <= 1 and self._queue.empty()  # nobody else is asking: no wait
        deadline = time.monotonic() + (0.0 if lone else self.max_wait_s)
        while rows < self.max_batch:
            try:
                wait = deadline - time.monotonic()
                nxt = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                return jobs, True
            if rows + len(nxt.records) > self.max_batch:
                self._held = nxt
                break
            jobs.append(nxt)
            rows += len(nxt.records)
        self._last_jobs = len(jobs)
        return jobs, False

    def _run(self, jobs: list[Job]) -> None:
        live = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        if not live:
            return
        records = [r for job in live for r in job.records]
        if self.on_batch is not None:
            self.on_batch(len(records))
        try:
            rows = self.compute(records) if records else []
        except Exception as err:  # one bad request among several: compute each on its own
            if len(live) == 1:
                live[0].future.set_exception(err)
                return
            for job in live:
                self._run_alone(job)
            return
        start = 0
        for job in live:
            job.future.set_result(rows[start : start + len(job.records)])
            start += len(job.records)

    def _run_alone(self, job: Job) -> None:
        try:
            job.future.set_result(self.compute(job.records))
        except Exception as err:
            job.future.set_exception(err)
