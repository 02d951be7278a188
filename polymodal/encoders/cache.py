"""Frozen-feature cache: a frozen encoder's output for each unique input, computed once.

A frozen pretrained encoder (MiniLM, a frozen ViT) costs the same every epoch and every run for
the same input. The cache keys each row by a hash of its input tensor, inside a namespace keyed
by the encoder's identity (class, options, a digest of its weights) and the input's preprocessing
state, so changing the model, its weights or the preprocessing can never serve stale features.
Entries live in memory and, with a ``directory``, in safetensors shards on disk that later runs
read. With ``max_memory_mb`` (streaming tables, where the features of every row would not fit in
memory) new entries spill to a shard whenever they pass that size, and shards are memory-mapped:
only their 16-byte keys stay in memory. The cache is attached to a model as a plain attribute (never in ``state_dict``), and only
while training; saved artifacts and exports run the encoder itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import uuid
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from polymodal.utils.progress import progress

HASH_BYTES = 16


def is_frozen(encoder: nn.Module) -> bool:
    """Has weights (parameters, or only buffers: MiniRocket's fixed kernels and fitted biases)
    and no parameter trains: its output depends on the input only."""
    params = list(encoder.parameters())
    if any(p.requires_grad for p in params):
        return False
    return bool(params) or any(True for _ in encoder.buffers())


def weights_digest(module: nn.Module) -> str:
    """Hash of every parameter and buffer: other weights, other namespace. Remembered per
    module while no tensor is replaced or changed in place (their version counters), so a
    served model does not hash its ~100 MB of weights again for every search request."""
    try:
        seen: tuple[Any, ...] | None = (
            *((n, id(t), t._version) for n, t in module.named_parameters()),
            *((n, id(t), t._version) for n, t in module.named_buffers()),
        )
    except RuntimeError:  # an inference-mode tensor keeps no version: hash every time
        seen = None
    known = _DIGESTS.get(module)
    if seen is not None and known is not None and known[0] == seen:
        return known[1]
    h = hashlib.blake2b(digest_size=HASH_BYTES)
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    if seen is not None:
        _DIGESTS[module] = (seen, h.hexdigest())
    return h.hexdigest()


_DIGESTS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[Any, ...], str]] = (
    weakref.WeakKeyDictionary()
)


def namespace(encoder: nn.Module, options: dict[str, Any], preprocessing: dict[str, Any]) -> str:
    """The cache key of one encoder + preprocessing; any change gives a new key."""
    ident = {
        "class": f"{type(encoder).__module__}.{type(encoder).__qualname__}",
        "options": options,
        "preprocessing": preprocessing,
        "weights": weights_digest(encoder),
    }
    blob = json.dumps(ident, sort_keys=True, default=str).encode()
    return hashlib.blake2b(blob, digest_size=HASH_BYTES).hexdigest()


def row_hashes(x: Tensor) -> list[bytes]:
    """One digest per row of ``x`` (its dtype, shape and bytes)."""
    flat = x.detach().cpu().contiguous().reshape(x.shape[0], -1)
    head = f"{flat.dtype}{tuple(x.shape[1:])}".encode()
    raw = flat.view(torch.uint8).numpy()
    return [hashlib.blake2b(head + r.tobytes(), digest_size=HASH_BYTES).digest() for r in raw]


SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "U8": np.uint8, "I64": np.int64}


def map_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file as read-only memory maps (nothing read yet)."""
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    out: dict[str, np.ndarray] = {}
    for name, meta in header.items():
        if name != "__metadata__":
            start, _ = meta["data_offsets"]
            dtype, shape = SAFETENSORS_DTYPES[meta["dtype"]], tuple(meta["shape"])
            out[name] = np.memmap(path, dtype, "r", offset=8 + size + start, shape=shape)
    return out


class MappedShards:
    """Cache shards on disk, memory-mapped: a lookup holds only the keys (two uint64 per entry,
    sorted for ``searchsorted``); values are read from the page cache when asked for."""

    def __init__(self) -> None:
        self.values: list[np.ndarray] = []
        self.hi = self.lo = np.zeros(0, dtype=np.uint64)
        self.shard = np.zeros(0, dtype=np.int32)
        self.row = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.hi)

    def add(self, path: Path) -> None:
        parts = map_safetensors(path)
        keys = np.ascontiguousarray(parts["hash"]).view(np.uint64)  # (n, 2)
        self.values.append(parts["value"])
        hi, lo = np.concatenate([self.hi, keys[:, 0]]), np.concatenate([self.lo, keys[:, 1]])
        shard = np.concatenate([self.shard, np.full(len(keys), len(self.values) - 1, np.int32)])
        row = np.concatenate([self.row, np.arange(len(keys))])
        order = np.lexsort((lo, hi))
        self.hi, self.lo, self.shard, self.row = hi[order], lo[order], shard[order], row[order]

    def lookup(self, keys: list[bytes]) -> dict[bytes, Tensor]:
        """The stored value of each key found on disk."""
        if not keys or not len(self.hi):
            return {}
        wanted = np.frombuffer(b"".join(keys), dtype=np.uint64).reshape(-1, 2)
        pos = np.minimum(np.searchsorted(self.hi, wanted[:, 0]), len(self.hi) - 1)
        found = (self.hi[pos] == wanted[:, 0]) & (self.lo[pos] == wanted[:, 1])
        return {
            keys[i]: torch.from_numpy(np.array(self.values[self.shard[p]][self.row[p]]))
            for i, p in zip(np.flatnonzero(found), pos[found], strict=True)
        }


class FeatureCache:
    """Row hash -> feature vector for one encoder namespace. ``misses`` counts rows the encoder
    ran on (unique, unseen), ``hits`` rows served from the cache."""

    def __init__(
        self, key: str, directory: str | Path | None = None, max_memory_mb: float | None = None
    ) -> None:
        if max_memory_mb is not None and directory is None:
            raise ValueError("a feature cache with max_memory_mb spills to disk: give a directory")
        self.key = key
        self.directory = Path(directory) / key if directory is not None else None
        self.max_memory_mb = max_memory_mb
        self.store: dict[bytes, Tensor] = {}
        self.pending: dict[bytes, Tensor] = {}
        self.pending_bytes = 0
        self.mapped = MappedShards()
        self.hits = self.misses = 0
        if self.directory is not None and self.directory.is_dir():
            for shard in sorted(self.directory.glob("*.safetensors")):
                if max_memory_mb is None:
                    self._read(shard)
                else:
                    self.mapped.add(shard)

    def _read(self, shard: Path) -> None:
        parts = load_file(str(shard))
        for digest, value in zip(parts["hash"], parts["value"], strict=True):
            self.store[bytes(digest.tolist())] = value

    def __len__(self) -> int:
        return len(self.store) + len(self.mapped)

    def _on_disk(self, keys: list[bytes]) -> dict[bytes, Tensor]:
        """Memory-mapped values of the keys not in memory."""
        return self.mapped.lookup([k for k in dict.fromkeys(keys) if k not in self.store])

    def _add(self, key: bytes, value: Tensor) -> None:
        self.store[key] = self.pending[key] = value.clone()
        self.pending_bytes += value.numel() * value.element_size()

    @torch.no_grad()
    def __call__(self, encoder: nn.Module, x: Tensor) -> Tensor:
        """``encoder(x)``, running the encoder only on rows (deduplicated) not seen before."""
        keys = row_hashes(x)
        disk = self._on_disk(keys)
        missing: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            if k not in self.store and k not in disk and k not in missing:
                missing[k] = i
        self.misses += len(missing)  # encoder runs
        self.hits += len(keys) - len(missing)  # rows served without one
        if missing:
            rows = torch.tensor(list(missing.values()), device=x.device)
            out = encoder(x[rows]).detach().float().cpu()
            for k, v in zip(missing, out, strict=True):
                self._add(k, v)
        found = torch.stack([self.store[k] if k in self.store else disk[k] for k in keys])
        if self.max_memory_mb is not None and self.pending_bytes > self.max_memory_mb * 2**20:
            self.flush()  # spill: memory stays bounded however many rows stream by
        return found.to(x.device)

    @torch.no_grad()
    def warm(
        self, encoder: nn.Module, x: Tensor, batch_size: int = 64, what: str = "frozen encoder"
    ) -> int:
        """Encode every unseen unique row of ``x`` ahead of time, in batches of similar length
        (token rows sorted by their non-pad count, so little compute goes to padding); returns
        how many rows the encoder ran on."""
        keys = row_hashes(x)
        disk = self._on_disk(keys)
        first: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            if k not in self.store and k not in disk and k not in first:
                first[k] = i
        if not first:
            return 0
        rows = torch.tensor(list(first.values()))
        pad = getattr(encoder, "pad_id", None)
        if pad is not None and x.dim() == 2 and not x.is_floating_point():
            rows = rows[torch.argsort((x[rows] != pad).sum(1), stable=True)]
        digests = list(first)
        order = {i: k for k, i in zip(digests, first.values(), strict=True)}
        starts = list(range(0, len(rows), batch_size))
        # batches of similar length, taken in a seeded random order: the rate stays even, so
        # the progress bar's ETA holds from the start (sorted order would speed up, or slow down)
        starts = [
            starts[i]
            for i in torch.randperm(len(starts), generator=torch.Generator().manual_seed(0))
        ]
        with progress(len(rows), what) as bar:
            for start in starts:
                chunk = rows[start : start + batch_size]
                out = encoder(x[chunk.to(x.device)]).detach().float().cpu()
                for i, v in zip(chunk.tolist(), out, strict=True):
                    self._add(order[i], v)
                bar.advance(len(chunk))
        self.misses += len(rows)
        return len(rows)

    def flush(self) -> Path | None:
        """Write new entries as one shard (atomic rename); returns its path."""
        if self.directory is None or not self.pending:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        digests = torch.tensor([list(k) for k in self.pending], dtype=torch.uint8)
        values = torch.stack(list(self.pending.values()))
        name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}.safetensors"
        tmp = self.directory / f".{name}.tmp"
        save_file({"hash": digests, "value": values.contiguous()}, str(tmp))
        os.replace(tmp, self.directory / name)
        if self.max_memory_mb is not None:  # memory-mapped from now on
            self.mapped.add(self.directory / name)
            for k in self.pending:
                self.store.pop(k, None)
        self.pending.clear()
        self.pending_bytes = 0
        return self.directory / name


def frozen_stage(encoder: nn.Module) -> nn.Module | None:
    """The frozen part of an encoder that runs on pieces of its input (a video encoder's frame
    encoder, on each frame), as ``encoder.cached_stage()`` names it; None when there is none."""
    stage = getattr(encoder, "cached_stage", None)
    part = stage() if callable(stage) else None
    return part if isinstance(part, nn.Module) and is_frozen(part) else None


class StageCache(FeatureCache):
    """A :class:`FeatureCache` of an encoder's frozen stage: ``encoder.pieces(x)`` (a clip's
    frames, (B * T, ...)) go through the cache one piece at a time, and
    ``encoder.from_pieces(features, x)`` (the temporal model, which trains) runs on the result.
    A frame shared by clips, epochs or runs costs one pass of the frozen network."""

    def __call__(self, encoder: nn.Module, x: Tensor) -> Tensor:
        split: Any = encoder
        features = super().__call__(split.cached_stage(), split.pieces(x))
        return split.from_pieces(features, x)  # type: ignore[no-any-return]

    def warm(
        self, encoder: nn.Module, x: Tensor, batch_size: int = 64, what: str = "frozen encoder"
    ) -> int:
        split: Any = encoder
        return super().warm(split.cached_stage(), split.pieces(x), batch_size, what)


def warm_model(model: nn.Module, inputs: dict[str, Tensor], batch_size: int = 64) -> None:
    """Fill the feature caches attached to ``model`` (see ``train.loop.feature_caches``) for
    every row of ``inputs`` (input name -> tensor) ahead of the forward passes: length-sorted
    batches and a progress bar for the long frozen-encoder pass. No caches attached: nothing."""
    caches: dict[str, FeatureCache] = getattr(model, "feature_caches", None) or {}
    tied: dict[str, str] = getattr(model, "tied", {})
    for name, cache in caches.items():
        if name in inputs:
            encoder: nn.Module = model.encoders[tied.get(name, name)]  # type: ignore[index,assignment]
            what = f"{name}: frozen {type(encoder).__name__} features"
            cache.warm(encoder, inputs[name], batch_size=batch_size, what=what)


__all__ = [
    "FeatureCache",
    "MappedShards",
    "StageCache",
    "frozen_stage",
    "is_frozen",
    "map_safetensors",
    "namespace",
    "row_hashes",
    "warm_model",
    "weights_digest",
]
