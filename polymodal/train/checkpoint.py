"""Checkpoints as a directory of safetensors + JSON (no pickle), written atomically: the new
checkpoint is complete on disk before it replaces the old one."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from polymodal.utils.io import read_json


def split_tensors(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested structure by ``{"__tensor__": key}``, collecting them."""
    if isinstance(obj, torch.Tensor):
        key = prefix or "_"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {
            str(k): split_tensors(v, f"{prefix}.{k}" if prefix else str(k), tensors)
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        return {k: join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [join_tensors(v, tensors) for v in obj]
    return obj


def _int_keys(state: dict[str, Any]) -> dict[str, Any]:
    """Optimizer state is keyed by int parameter ids; JSON turned them into strings."""
    state = dict(state)
    state["state"] = {int(k): v for k, v in state.get("state", {}).items()}
    return state


def save_checkpoint(path: str | Path, parts: dict[str, Any]) -> None:
    """Write ``parts`` (name -> nested state with tensors) as ``<name>.safetensors`` + ``state.json``.

    The files go to a hidden folder beside ``path``, are synced to disk, and only then replace
    the previous checkpoint by renames; a crash at any point leaves the previous checkpoint, or
    the new one, complete (see :func:`latest_checkpoint`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        layout: dict[str, Any] = {}
        for name, state in parts.items():
            tensors: dict[str, torch.Tensor] = {}
            layout[name] = split_tensors(state, "", tensors)
            if tensors:
                save_file(tensors, str(tmp / f"{name}.safetensors"))
        (tmp / "state.json").write_text(json.dumps(layout), encoding="utf-8")
        _sync(tmp)
        old = _previous(path)
        if path.exists():  # else ``old`` may be the only complete checkpoint: keep it till the end
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        _sync(path.parent)
        shutil.rmtree(old, ignore_errors=True)
        for stale in path.parent.glob(f".{path.name}.tmp-*"):  # left by a process killed mid-write
            shutil.rmtree(stale, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _previous(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def _sync(folder: Path) -> None:
    """fsync every file of ``folder`` and the folder itself (its entries)."""
    for file in folder.iterdir():
        if file.is_file():
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())
    with contextlib.suppress(OSError):  # folders cannot be opened for fsync on some systems
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def latest_checkpoint(path: str | Path) -> Path | None:
    """The complete checkpoint at ``path``; if a crash came between the two renames of
    :func:`save_checkpoint`, the previous one kept beside it; None if there is none."""
    path = Path(path)
    for candidate in (path, _previous(path)):
        if (candidate / "state.json").exists():
            return candidate
    return None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not (path / "state.json").exists():
        raise FileNotFoundError(f"no checkpoint at {path} (expected {path / 'state.json'})")
    layout = read_json(path / "state.json")
    out: dict[str, Any] = {}
    for name, state in layout.items():
        file = path / f"{name}.safetensors"
        tensors = load_file(str(file)) if file.exists() else {}
        out[name] = join_tensors(state, tensors)
    if "optimizer" in out:
        out["optimizer"] = _int_keys(out["optimizer"])
    return out
