"""Request and batch metrics in the Prometheus text format (``GET /metrics``), without a
client library: a few counters and histograms behind one lock.

- ``polymodal_requests_total{route,status}``: requests answered;
- ``polymodal_errors_total{route,status}``: those answered with a 4xx or 5xx;
- ``polymodal_request_seconds{route}``: latency histogram, from the first byte received to the
  last byte sent;
- ``polymodal_batch_rows``: rows per computed batch (micro-batching at work);
- ``polymodal_queue_rows``: rows waiting for the model now.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict

from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
ROUTES = ("/predict", "/predict/upload", "/search")  # measured; others count as "other"


class Histogram:
    """Cumulative buckets, sum and count, as Prometheus expects."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets, self.counts = buckets, [0] * (len(buckets) + 1)
        self.sum, self.count = 0.0, 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        out, running = [], 0
        sep = "," if labels else ""
        for bound, n in zip((*self.buckets, "+Inf"), self.counts, strict=True):
            running += n
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {running}')
        wrap = f"{{{labels}}}" if labels else ""
        return [*out, f"{name}_sum{wrap} {self.sum:.6f}", f"{name}_count{wrap} {self.count}"]


class Metrics:
    """What the server has done so far; safe to update from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: defaultdict[tuple[str, int], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = {}
        self.batches = Histogram(BATCH_BUCKETS)
        self.queued = 0

    def request(self, route: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[route, status] += 1
            self.latency.setdefault(route, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def batch(self, rows: int) -> None:
        with self.lock:
            self.batches.observe(rows)

    def queue(self, rows: int) -> None:
        """``rows`` more (or, negative, fewer) rows waiting for the model."""
        with self.lock:
            self.queued += rows

    def text(self) -> str:
        with self.lock:
            lines = ["# HELP polymodal_requests_total Requests answered, by route and status.",
                     "# TYPE polymodal_requests_total counter"]  # fmt: skip
            for (route, status), n in sorted(self.requests.items()):
                lines.append(f'polymodal_requests_total{{route="{route}",status="{status}"}} {n}')
            lines += ["# HELP polymodal_errors_total Requests answered with a 4xx or 5xx.",
                      "# TYPE polymodal_errors_total counter"]  # fmt: skip
            for (route, status), n in sorted(self.requests.items()):
                if status >= 400:
                    lines.append(f'polymodal_errors_total{{route="{route}",status="{status}"}} {n}')
            lines += ["# HELP polymodal_request_seconds Request latency.",
                      "# TYPE polymodal_request_seconds histogram"]  # fmt: skip
            for route, hist in sorted(self.latency.items()):
                lines += hist.lines("polymodal_request_seconds", f'route="{route}"')
            lines += ["# HELP polymodal_batch_rows Rows per computed batch.",
                      "# TYPE polymodal_batch_rows histogram",
                      *self.batches.lines("polymodal_batch_rows"),
                      "# HELP polymodal_queue_rows Rows waiting for the model.",
                      "# TYPE polymodal_queue_rows gauge", f"polymodal_queue_rows {self.queued}"]  # fmt: skip
        return "\n".join(lines) + "\n"


class MeasureRequests:
    """ASGI middleware: each HTTP request's route, status and latency into ``metrics``."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in ROUTES else "other"
        t0, status = time.perf_counter(), 500

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            self.metrics.request(route, status, time.perf_counter() - t0)
