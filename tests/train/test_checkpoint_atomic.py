"""Checkpoints are never half-written: a crash during a save leaves the previous checkpoint
complete, also in the instant between the two renames."""

from __future__ import annotations

import pytest
import torch

import polymodal.train.checkpoint as ck
from polymodal.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint


def parts(epoch: int) -> dict:
    return {"model": {"w": torch.full((3,), float(epoch))}, "trainer": {"epoch": epoch}}


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "last", parts(1))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ck, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "last", parts(2))
    assert load_checkpoint(latest_checkpoint(tmp_path / "last"))["trainer"]["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last"]  # no temporary folder left


def test_a_crash_between_the_renames_falls_back_to_the_previous(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "last", parts(1))
    real_replace, calls = ck.os.replace, []

    def dying_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the new checkpoint never arrives
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(ck.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "last", parts(2))
    monkeypatch.setattr(ck.os, "replace", real_replace)
    found = latest_checkpoint(tmp_path / "last")
    assert found is not None and load_checkpoint(found)["trainer"]["epoch"] == 1
    save_checkpoint(tmp_path / "last", parts(3))  # the next save cleans up
    assert load_checkpoint(latest_checkpoint(tmp_path / "last"))["trainer"]["epoch"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    assert latest_checkpoint(tmp_path / "none") is None
