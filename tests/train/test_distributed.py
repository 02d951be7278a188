"""Two processes (``torchrun``, gloo on CPU) train like one: the same weights as a one-process
run, one artifact, every validation row scored once, preprocessing statistics merged across
ranks; a rank that dies mid-epoch leaves a complete checkpoint, which a run with another number
of processes resumes to the same result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from polymodal import Predictor
from polymodal.train.checkpoint import load_checkpoint

WORKER = Path(__file__).with_name("ddp_fit.py")
WORDS = ["red", "blue", "green", "small", "large", "soft", "loud", "bright"]


def write_tables(folder: Path) -> tuple[str, str]:
    rng = np.random.default_rng(0)
    frames = []
    for n in (64, 31):  # 64 = 4 global batches of 16; 31 val rows split 16 + 15
        label = rng.integers(0, 3, n)
        frames.append(
            pd.DataFrame(
                {
                    "review": [" ".join(rng.choice(WORDS, 4)) + f" c{y}" for y in label],
                    "age": rng.normal(size=n) + label,
                    "size": np.array(["S", "M", "L"])[label],
                    "label": np.array(["cat", "dog", "eel"])[label],
                }
            )
        )
    frames[0].to_parquet(folder / "train.parquet", index=False, row_group_size=20)
    frames[1].to_parquet(folder / "val.parquet", index=False)
    return str(folder / "train.parquet"), str(folder / "val.parquet")


def config(streaming: bool, epochs: int = 3) -> dict:
    """No dropout anywhere: both runs must draw the same (no) random numbers."""
    no_dropout = {"dropout": 0.0}
    inputs = [
        {"name": "review", "type": "text", "encoder": {"type": "bow", "embed_dim": 8}},
        {"name": "numeric", "type": "numeric", "columns": ["age"],
         "encoder": {"type": "mlp", **no_dropout}},
        {"name": "size", "type": "categorical", "encoder": {"type": "embedding", **no_dropout}},
    ]  # fmt: skip
    trainer = {"epochs": epochs, "batch_size": 16, "lr": 0.01, "progress": False,
               "early_stopping_patience": None, "feature_cache": False}  # fmt: skip
    return {
        "inputs": inputs,
        "outputs": [{"name": "label", "task": "multiclass", "head": no_dropout}],
        "data": {"streaming": streaming, "shuffle_buffer": 32},
        "trainer": trainer,
    }


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """One torchrun launch of 2 processes: an in-memory fit, a streaming fit, then a fit whose
    rank 1 dies at the 6th training batch (epoch 2 of 4-batch epochs)."""
    folder = tmp_path_factory.mktemp("ddp")
    train, val = write_tables(folder)
    runs = [
        {"config": config(False), "out": str(folder / "memory")},
        {"config": config(True), "out": str(folder / "stream")},
        {"config": config(False), "out": str(folder / "crashed"), "die": {"rank": 1, "batch": 6}},
    ]
    spec = {
        "marks": str(folder / "marks"),
        "runs": [{**r, "train": train, "val": val} for r in runs],
    }
    (folder / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, str(WORKER), str(folder / "spec.json")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return folder, train, val, proc


@pytest.fixture(scope="module")
def alone(launched):
    """The same in-memory fit in one process."""
    folder, train, val, _ = launched
    Predictor(config(False)).fit(train, val=val, output_dir=folder / "alone")
    return folder / "alone"


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_two_processes_train_like_one_and_write_one_artifact(launched, alone):
    folder, *_, proc = launched
    assert (folder / "memory" / "metrics.json").exists(), proc.stderr[-3000:]
    two, one = weights(folder / "memory"), weights(alone)
    assert two.keys() == one.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], atol=1e-4, rtol=1e-4, msg=name)
    m2 = json.loads((folder / "memory" / "metrics.json").read_text())["val"]
    m1 = json.loads((alone / "metrics.json").read_text())["val"]
    assert m2["n_rows"] == m1["n_rows"] == 31  # every val row once: 16 on rank 0, 15 on rank 1
    assert m2["loss"] == pytest.approx(m1["loss"], abs=1e-4)
    saves = sorted(p.name for p in (folder / "marks").iterdir() if p.name.endswith("-memory"))
    assert len(saves) == 1 and saves[0].startswith("rank0-"), saves


def test_streaming_on_two_processes_merges_statistics(launched, alone):
    folder, *_, proc = launched
    assert (folder / "stream" / "metrics.json").exists(), proc.stderr[-3000:]
    metrics = json.loads((folder / "stream" / "metrics.json").read_text())
    assert metrics["val"]["n_rows"] == 31
    history = json.loads((folder / "stream" / "history.json").read_text())
    assert len(history) == 3 and history[-1]["train_loss"] < history[0]["train_loss"]
    saves = [p.name for p in (folder / "marks").iterdir() if p.name.endswith("-stream")]
    assert len(saves) == 1 and saves[0].startswith("rank0-")
    # each rank fitted on half the rows; the merged state is the one-process, in-memory one
    streamed = json.loads((folder / "stream" / "preprocessing.json").read_text())
    memory = json.loads((alone / "preprocessing.json").read_text())
    assert streamed["targets"] == memory["targets"]
    for name in ("review", "size"):
        assert streamed["inputs"][name] == memory["inputs"][name], name
    for key in ("mean", "std"):
        got, want = (s["inputs"]["numeric"]["fitted"][key] for s in (streamed, memory))
        assert got == pytest.approx(want, rel=1e-9)


def test_a_rank_dying_mid_epoch_leaves_a_checkpoint_another_run_resumes(launched, alone):
    folder, train, val, proc = launched
    crashed = folder / "crashed"
    assert proc.returncode != 0  # the launcher reports the failure
    assert not (crashed / "model.safetensors").exists()  # no artifact from a failed run
    assert not [p for p in (crashed / "checkpoints").iterdir() if p.name.startswith(".")]
    state = load_checkpoint(crashed / "checkpoints" / "last")["trainer"]
    assert state["epoch"] == 1 and state["step"] == 4  # epoch 2 died mid-way: epoch 1 kept
    # resumed by ONE process: the in-memory batches do not depend on the number of processes
    Predictor(config(False)).fit(train, val=val, output_dir=crashed, resume=True)
    history = json.loads((crashed / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    resumed, one = weights(crashed), weights(alone)
    for name in one:
        torch.testing.assert_close(resumed[name], one[name], atol=1e-4, rtol=1e-4, msg=name)
