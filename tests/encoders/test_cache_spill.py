"""A feature cache bounded in memory (streaming tables): entries spill to shards on disk, which
are memory-mapped, never loaded whole; the encoder still runs once per unique row."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polymodal.encoders.cache import FeatureCache, map_safetensors
from tests.encoders.test_cache import Counting


def test_spills_past_the_budget_and_serves_from_memory_maps(tmp_path):
    enc = Counting()
    x = torch.randint(0, 3, (400, 4))  # 81 possible rows: many repeats
    cache = FeatureCache("k", tmp_path, max_memory_mb=2e-4)  # ~200 B: 17 rows of 3 floats
    first = torch.cat([cache(enc, x[i : i + 16]) for i in range(0, 400, 16)])
    torch.testing.assert_close(first, enc.lin(x.float()))
    unique = len({tuple(r) for r in x.tolist()})
    assert enc.rows == unique  # each unique row encoded once
    assert len(cache.store) * 3 * 4 <= 2e-4 * 2**20 + 16 * 12  # bounded by the budget + a batch
    assert len(list((tmp_path / "k").glob("*.safetensors"))) > 1
    again = torch.cat([cache(enc, x[i : i + 16]) for i in range(0, 400, 16)])
    torch.testing.assert_close(again, first)
    assert enc.rows == unique  # served from memory or disk, no encoder run
    cache.flush()
    reopened = FeatureCache("k", tmp_path, max_memory_mb=1.0)
    assert reopened.store == {} and len(reopened) >= unique  # nothing loaded, all indexed
    torch.testing.assert_close(reopened(enc, x), first)
    assert enc.rows == unique and reopened.hits == 400


def test_memory_mapped_shards_are_not_read_into_memory(tmp_path):
    cache = FeatureCache("k", tmp_path)
    cache(Counting(), torch.randint(0, 9, (5, 4)))
    shard = cache.flush()
    assert shard is not None
    mapped = map_safetensors(shard)
    assert isinstance(mapped["value"], np.memmap) and mapped["value"].shape == (len(cache), 3)


def test_a_bounded_cache_needs_a_directory():
    with pytest.raises(ValueError, match="give a directory"):
        FeatureCache("k", None, max_memory_mb=1.0)
