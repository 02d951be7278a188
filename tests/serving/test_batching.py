"""Micro-batched serving: concurrent requests computed together with each caller's own rows
back, a bad row failing only its own request, a gone client costing no compute, large requests
split, queued work finished on close and on SIGTERM, and the Prometheus metrics."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from polymodal.serving.app import _computed, create_app
from polymodal.serving.batching import MicroBatcher
from polymodal.serving.metrics import Metrics
from tests.serving.util import row as _row


class Model:
    """A compute that records its batches and can be held until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def __call__(self, records):
        self.started.set()
        self.gate.wait(10)
        if any(r.get("bad") for r in records):
            raise ValueError(f"row {next(i for i, r in enumerate(records) if r.get('bad'))}: bad")
        self.batches.append([r["x"] for r in records])
        return [{"y": r["x"] * 2} for r in records]


def held_batcher(model: Model, **kw) -> MicroBatcher:
    """A batcher whose model is busy with a first request, so the next ones queue."""
    model.gate.clear()
    batcher = MicroBatcher(model, **kw)
    first = batcher.submit([{"x": -1}])
    assert model.started.wait(10)
    model.first = first  # type: ignore[attr-defined]
    return batcher


def test_queued_requests_are_computed_together_each_getting_its_rows():
    model = Model()
    batcher = held_batcher(model, max_batch=8)
    futures = [batcher.submit([{"x": i}, {"x": 10 + i}]) for i in range(3)]
    model.gate.set()
    answers = [[r for f in fs for r in f.result(10)] for fs in futures]
    assert answers == [[{"y": 2 * i}, {"y": 2 * (10 + i)}] for i in range(3)]
    assert model.batches == [[-1], [0, 10, 1, 11, 2, 12]]  # one batch for the three requests
    batcher.close()


def test_a_lone_request_is_computed_at_once_while_a_busy_batch_waits_for_mates():
    model = Model()
    batcher = MicroBatcher(model, max_batch=3, max_wait_s=5.0)
    start = time.monotonic()
    assert batcher.submit([{"x": 7}])[0].result(10) == [{"y": 14}]
    assert time.monotonic() - start < 2.5  # not after the 5 s wait: nobody else was asking
    batcher.close()
    model = Model()
    batcher = held_batcher(model, max_batch=3, max_wait_s=5.0)
    queued = [batcher.submit([{"x": i}]) for i in range(2)]
    model.gate.set()
    time.sleep(0.2)
    late = batcher.submit([{"x": 2}])  # arrives within the wait: joins the queued ones
    assert [f.result(10) for fs in [*queued, late] for f in fs] == [
        [{"y": 2 * i}] for i in range(3)
    ]
    assert model.batches == [[-1], [0, 1, 2]]
    batcher.close()


def test_batches_stop_at_max_batch_and_large_requests_are_split():
    model = Model()
    batcher = held_batcher(model, max_batch=4)
    small = [batcher.submit([{"x": i}, {"x": i}]) for i in range(3)]
    big = batcher.submit([{"x": 100 + i} for i in range(10)])
    model.gate.set()
    assert len(big) == 3  # 4 + 4 + 2 rows
    assert [r["y"] for f in big for r in f.result(10)] == [2 * (100 + i) for i in range(10)]
    assert all(len(f.result(10)) == 2 for fs in small for f in fs)
    assert all(len(b) <= 4 for b in model.batches)
    assert model.batches[1] == [0, 0, 1, 1]
    batcher.close()


def test_a_bad_row_fails_only_its_own_request():
    model = Model()
    batcher = held_batcher(model, max_batch=16)
    good = batcher.submit([{"x": 1}])
    bad = batcher.submit([{"x": 2}, {"x": 3, "bad": True}])
    other = batcher.submit([{"x": 4}])
    model.gate.set()
    assert good[0].result(10) == [{"y": 2}] and other[0].result(10) == [{"y": 8}]
    with pytest.raises(ValueError, match="row 1: bad"):  # its row within its own request
        bad[0].result(10)
    batcher.close()


def test_a_cancelled_request_costs_no_compute_and_close_finishes_the_queue():
    model = Model()
    batcher = held_batcher(model, max_batch=16)
    gone = batcher.submit([{"x": 7}])
    kept = batcher.submit([{"x": 8}])
    assert gone[0].cancel()
    batcher.close(timeout=0.1)  # queued behind the held batch: close must not drop it
    model.gate.set()
    assert kept[0].result(10) == [{"y": 16}]
    assert all(7 not in b for b in model.batches)
    batcher.close()
    assert batcher.submit([{"x": 9}])[0].result(10) == [{"y": 18}]  # used again after close
    batcher.close()


def test_a_server_started_and_stopped_twice_still_answers(served):
    folder, frame, _ = served
    app = create_app(folder / "model", data_dir=folder)
    for _ in range(2):
        with TestClient(app) as client:  # each block runs the lifespan: start, then stop
            assert client.post("/predict", json={"rows": [_row(frame, 1)]}).status_code == 200
    assert TestClient(app).post("/predict", json={"rows": [_row(frame, 1)]}).status_code == 200


def test_a_client_that_disconnects_frees_its_slot():
    model = Model()
    batcher = held_batcher(model, max_batch=16)

    class Gone:
        async def is_disconnected(self) -> bool:
            return True

    metrics = Metrics()
    assert asyncio.run(_computed(batcher, [{"x": 5}], Gone(), metrics)) is None
    model.gate.set()
    model.first[0].result(10)  # type: ignore[attr-defined]
    assert batcher.submit([{"x": 6}])[0].result(10) == [{"y": 12}]
    assert all(5 not in b for b in model.batches) and metrics.queued == 0
    batcher.close()


def test_concurrent_http_requests_share_batches(served):
    folder, frame, _ = served
    client = TestClient(
        create_app(folder / "model", data_dir=folder, max_batch=8, max_wait_ms=1000)
    )
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    alone = [client.post("/predict", json={"rows": [_row(frame, i)]}).json() for i in range(1, 8)]
    bodies = [{"rows": [_row(frame, i)]} for i in range(1, 8)]
    bodies.insert(3, {"rows": [_row(frame, 1), _row(frame, 2, photo="broken.png")]})
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: client.post("/predict", json=b), bodies))
    bad = answers.pop(3)
    assert bad.status_code == 422 and "row 1" in bad.json()["detail"], bad.text
    assert "photo" in bad.json()["detail"]
    for got, want in zip(answers, alone, strict=True):
        assert got.status_code == 200
        for g, w in zip(got.json()["predictions"], want["predictions"], strict=True):
            assert g["outputs"]["label"]["label"] == w["outputs"]["label"]["label"]
            for k, p in w["outputs"]["label"]["probabilities"].items():
                assert abs(g["outputs"]["label"]["probabilities"][k] - p) < 1e-5
    text = client.get("/metrics").text
    counts = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert counts['polymodal_requests_total{route="/predict",status="200"}'] == "14"
    assert counts['polymodal_errors_total{route="/predict",status="422"}'] == "1"
    batches, rows = (
        int(counts["polymodal_batch_rows_count"]),
        float(counts["polymodal_batch_rows_sum"]),
    )
    assert batches < 7 + 8 and rows >= 7 + 8  # the concurrent ones shared batches
    assert counts["polymodal_queue_rows"] == "0"
    assert counts['polymodal_request_seconds_count{route="/predict"}'] == "15"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, body: dict) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict", json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=60) as res:
        return res.status


def _queued(port: int) -> int:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return int(
        next(ln for ln in text.splitlines() if ln.startswith("polymodal_queue_rows ")).split()[1]
    )


def test_sigterm_finishes_the_requests_in_flight(served):
    folder, frame, _ = served
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "polymodal.cli", "serve", str(folder / "model"), "--port",
         str(port), "--data-dir", str(folder), "--max-wait-ms", "2000"],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        body = {"rows": [_row(frame, 1)] * 4}
        with ThreadPoolExecutor(6) as pool:
            pending = [pool.submit(_post, port, body) for _ in range(6)]
            until = time.monotonic() + 30
            while _queued(port) < 24:  # all in flight: their batch waits 2 s for more rows
                assert time.monotonic() < until, "the requests never reached the queue"
                time.sleep(0.02)
            server.send_signal(signal.SIGTERM)
            assert [f.result() for f in pending] == [200] * 6
        # uvicorn shuts down, then re-raises the signal so the exit status tells why
        assert server.wait(60) in (0, -signal.SIGTERM)
    finally:
        server.kill()


def test_texts_grouped_by_length_give_the_same_answers_and_row_numbers(served):
    folder, frame, client = served
    rows = [_row(frame, 1 + i % 30) for i in range(12)]
    together = client.post("/predict", json={"rows": rows}).json()["predictions"]
    for rec, got in zip(rows, together, strict=True):  # groups of 8, sorted by text length
        alone = client.post("/predict", json={"rows": [rec]}).json()["predictions"][0]
        assert got["outputs"]["label"]["label"] == alone["outputs"]["label"]["label"]
        for k, p in alone["outputs"]["label"]["probabilities"].items():
            assert abs(got["outputs"]["label"]["probabilities"][k] - p) < 1e-5
    (folder / "broken2.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    rows[10] = {**rows[10], "photo": "broken2.png"}
    res = client.post("/predict", json={"rows": rows})
    assert res.status_code == 422 and "row 10" in res.json()["detail"], res.text
