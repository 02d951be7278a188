"""The frozen-feature cache: runs the encoder only on unseen unique rows, survives a restart from
disk, and never serves features across a change of weights, options or preprocessing."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from polymodal import Predictor
from polymodal.encoders.cache import FeatureCache, is_frozen, namespace
from tests.tables import make_table


class Counting(nn.Module):
    """A frozen linear map that counts the rows it encodes."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3).requires_grad_(False)
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return self.lin(x.float())


def test_encodes_each_unique_row_once_and_matches_the_encoder(tmp_path):
    enc = Counting()
    x = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8], [1, 2, 3, 4]])
    cache = FeatureCache("k", tmp_path)
    out = cache(enc, x)
    torch.testing.assert_close(out, enc(x))
    assert enc.rows == 2 + 3  # two unique rows through the cache, then the direct call
    cache(enc, x.flip(0))
    assert enc.rows == 5 and cache.hits == 1 + 3 and cache.misses == 2


def test_flush_then_a_new_cache_reads_from_disk(tmp_path):
    enc, x = Counting(), torch.randint(0, 9, (5, 4))
    first = FeatureCache("k", tmp_path)
    expected = first(enc, x)
    assert first.flush() is not None and first.flush() is None  # nothing new the second time
    again = FeatureCache("k", tmp_path)
    assert len(again) == 5
    torch.testing.assert_close(again(enc, x), expected)
    assert enc.rows == 5  # the second cache never ran the encoder
    assert len(FeatureCache("other", tmp_path)) == 0  # another namespace shares nothing


def test_namespace_changes_with_weights_options_and_preprocessing():
    enc = Counting()
    base = namespace(enc, {"pooling": "mean"}, {"max_length": 32})
    assert namespace(enc, {"pooling": "mean"}, {"max_length": 32}) == base
    assert namespace(enc, {"pooling": "cls"}, {"max_length": 32}) != base
    assert namespace(enc, {"pooling": "mean"}, {"max_length": 64}) != base
    with torch.no_grad():
        enc.lin.weight[0, 0] += 1e-3
    assert namespace(enc, {"pooling": "mean"}, {"max_length": 32}) != base


def test_is_frozen():
    assert is_frozen(Counting())
    assert not is_frozen(nn.Linear(2, 2))
    assert not is_frozen(nn.Identity())  # no parameters: nothing worth caching


TINY_BERT = {"model_type": "bert", "vocab_size": 30522, "hidden_size": 32,
             "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 37}  # fmt: skip


def _config(cache_dir, cache=True, freeze=True):
    return {
        "inputs": [
            {"name": "review", "type": "text",
             "encoder": {"type": "hf", "config": TINY_BERT, "freeze": freeze}},
            {"name": "numeric", "type": "numeric", "columns": ["age"]},
        ],
        "fusion": {"type": "concat"},
        "outputs": [{"name": "label", "task": "multiclass"}],
        "trainer": {"epochs": 2, "batch_size": 8, "progress": False, "seed": 3,
                    "feature_cache": cache, "feature_cache_dir": str(cache_dir)},
    }  # fmt: skip


@pytest.mark.parametrize("freeze", [True, False])
def test_training_uses_the_cache_only_for_frozen_encoders(tmp_path, freeze):
    frame = make_table(tmp_path, n=40)
    pred = Predictor(_config(tmp_path / "cache", freeze=freeze)).fit(
        frame, val=frame, base_dir=tmp_path
    )
    hist = pred.artifact_.history
    if not freeze:
        assert "feature_cache" not in hist[0]
        return
    assert hist[0]["feature_cache"]["review"][1] > 0  # epoch 1 computes
    hits, misses = hist[1]["feature_cache"]["review"]
    hits0, misses0 = hist[0]["feature_cache"]["review"]
    assert misses == misses0 and hits - hits0 == 2 * len(frame)  # epoch 2: train + val all hits
    assert not pred.artifact_.model.feature_caches  # detached: artifacts run the encoder
    # a second run reads the shards written by the first and never runs the encoder
    again = Predictor(_config(tmp_path / "cache")).fit(frame, val=frame, base_dir=tmp_path)
    assert again.artifact_.history[0]["feature_cache"]["review"][1] == 0


def test_cached_training_predicts_like_uncached(tmp_path):
    frame = make_table(tmp_path, n=40)
    cached = Predictor(_config(tmp_path / "c")).fit(frame, base_dir=tmp_path)
    plain = Predictor(_config(tmp_path / "c", cache=False)).fit(frame, base_dir=tmp_path)
    a = cached.predict_proba(frame, base_dir=tmp_path)
    b = plain.predict_proba(frame, base_dir=tmp_path)
    pd.testing.assert_frame_equal(a, b, atol=1e-4)


def test_warm_encodes_unique_unseen_rows_sorted_by_length():
    class Tokens(Counting):
        pad_id = 0

        def forward(self, x):
            self.seen = [*getattr(self, "seen", []), (x != 0).sum(1).tolist()]
            return super().forward(x)

    enc = Tokens()
    x = torch.tensor([[5, 5, 5, 0], [7, 0, 0, 0], [5, 5, 5, 0], [8, 8, 0, 0]])
    cache = FeatureCache("k")
    assert cache.warm(enc, x, batch_size=2) == 3 and cache.warm(enc, x) == 0
    assert sorted(enc.seen) == [[1, 2], [3]]  # batches of two of similar length
    torch.testing.assert_close(cache(enc, x), enc.lin(x.float()))
    assert cache.hits == 4  # everything was warm


def test_hf_text_ignores_all_pad_columns():
    from polymodal.encoders.hf import HFEncoder

    enc = HFEncoder(modality="text", config=TINY_BERT).eval()
    x = torch.tensor([[101, 7, 8, 102], [101, 9, 102, 0]])
    padded = torch.cat([x, torch.zeros(2, 6, dtype=torch.long)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(enc(padded), enc(x), atol=1e-5, rtol=1e-5)


def test_predict_and_evaluate_reuse_the_cache(tmp_path):
    frame = make_table(tmp_path, n=40)
    Predictor(_config(tmp_path / "cache")).fit(frame, base_dir=tmp_path).save(tmp_path / "m")
    new = make_table(tmp_path / "new", n=12, seed=5)
    loaded = Predictor.load(tmp_path / "m")
    first = loaded.predict_proba(new, base_dir=tmp_path / "new")  # unseen rows: encoded, cached

    def refuse(*args, **kwargs):
        raise AssertionError("the frozen encoder ran again")

    loaded.artifact_.model.encoders["review"].forward = refuse
    again = loaded.predict_proba(new, base_dir=tmp_path / "new")
    pd.testing.assert_frame_equal(first, again)
    assert loaded.evaluate(new, base_dir=tmp_path / "new")["n_rows"] == 12
    assert not loaded.artifact_.model.feature_caches  # detached again after the call


def test_weights_digest_is_remembered_until_a_weight_changes(monkeypatch):
    """A served model's digest (every search request checks it) is computed once; an in-place
    update (an optimiser step, load_state_dict) or a replaced tensor gives a new one."""
    from polymodal.encoders.cache import weights_digest

    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    first = weights_digest(model)
    calls = []
    real = nn.Module.state_dict
    monkeypatch.setattr(
        nn.Module, "state_dict", lambda self, *a, **k: calls.append(1) or real(self, *a, **k)
    )
    assert weights_digest(model) == first and not calls  # remembered: nothing hashed again
    with torch.no_grad():
        model[0].weight.add_(1.0)  # in place
    changed = weights_digest(model)
    assert changed != first and calls
    model[1].running_mean = torch.ones(3)  # a replaced buffer
    assert weights_digest(model) not in (first, changed)
    model.load_state_dict(nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).state_dict())
    assert weights_digest(model) == weights_digest(nn.Sequential(*[m for m in model]))
