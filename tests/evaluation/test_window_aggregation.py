"""One answer per row from windows: the aggregation rules (mean log-probabilities, mean
regression values), and validation across two processes (gloo) that scores every row once from
its windows, in memory and streamed, as one process does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from polymodal import Predictor
from polymodal.evaluation.windows import aggregate_logits, row_masks, row_targets
from tests.tables import add_series, make_table, series_config

WORKER = Path(__file__).with_name("windows_ddp.py")


def test_classes_average_log_probabilities_and_regression_values():
    torch.manual_seed(0)
    logits = torch.randn(5, 3)
    row_of = torch.tensor([0, 0, 0, 1, 1])
    rows = aggregate_logits("multiclass", logits, row_of, 2)
    p = torch.softmax(logits, -1)
    geo = torch.stack([p[:3].log().mean(0).exp(), p[3:].log().mean(0).exp()])
    assert torch.allclose(torch.softmax(rows, -1), geo / geo.sum(-1, keepdim=True), atol=1e-6)
    z = torch.randn(5, 2)  # binary (one logit) and multilabel (a logit per label) alike
    yes, no = torch.sigmoid(z), torch.sigmoid(-z)
    g1, g0 = yes[3:].log().mean(0).exp(), no[3:].log().mean(0).exp()
    got = torch.sigmoid(aggregate_logits("multilabel", z, row_of, 2))[1]
    assert torch.allclose(got, g1 / (g1 + g0), atol=1e-6)
    single = aggregate_logits("binary", z[:1, :1], torch.tensor([0]), 1)
    assert torch.allclose(single, z[:1, :1], atol=1e-6)  # one window: its own logit
    values = aggregate_logits("regression", torch.arange(5.0)[:, None], row_of, 2)
    assert values.flatten().tolist() == [1.0, 3.5]
    masks = row_masks({"s": torch.tensor([False, True, False, False, False])}, row_of, 2)
    assert masks["s"].tolist() == [True, False]
    assert row_targets({"y": torch.tensor([4, 4, 4, 9, 9])}, row_of, 2)["y"].tolist() == [4, 9]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def windowed(tmp_path_factory):
    """A model over windows of a series (plus a numeric column), and a table of 13 rows with
    1 to 6 windows each (7 rows on one process, 6 on the other)."""
    folder = tmp_path_factory.mktemp("windows_ddp")
    frame = add_series(make_table(folder, n=36), folder, inline=True)
    cfg = series_config("concat", epochs=1)
    cfg["inputs"] = [i for i in cfg["inputs"] if i["name"] in ("motion", "numeric")]
    cfg["inputs"][-1]["preprocessing"] = {"window": 6, "stride": 3}
    cfg["trainer"]["seed"] = 3
    Predictor(cfg).fit(frame, base_dir=folder).save(folder / "model")
    frame.iloc[:13].to_parquet(folder / "val.parquet")
    return folder


def test_two_processes_score_every_row_once_from_its_windows(windowed):
    folder = windowed
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WORLD_SIZE": "2",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "PYTHONPATH": str(Path(__file__).parents[2])}  # fmt: skip
    args = [sys.executable, str(WORKER), str(folder / "model"), str(folder / "val.parquet")]
    procs = [
        subprocess.Popen([*args, str(folder)], env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for r in range(2)
    ]  # fmt: skip
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    alone = Predictor.load(folder / "model").evaluate(folder / "val.parquet")
    assert alone["n_rows"] == 13 and alone["n_windows"] > 13
    for r in range(2):
        got = json.loads((folder / f"rank{r}.json").read_text())
        for how in ("memory", "stream"):
            report = got[how]
            assert report["n_rows"] == 13 and report["n_windows"] == alone["n_windows"], how
            assert report["loss"] == pytest.approx(alone["loss"], abs=1e-5), how
            for key in ("accuracy", "window_accuracy", "log_loss"):
                assert report["label"][key] == pytest.approx(alone["label"][key], abs=1e-5)
            assert np.array_equal(report["label"]["confusion_matrix"],
                                  alone["label"]["confusion_matrix"])  # fmt: skip
