"""Anchor space of the retrieval head (``anchors: k``): two items meet when they resemble the
same training pair each in its own modality; the towers' loss is untouched; the keys are
filled by the trainer from frozen encoders, saved with the weights, exported to ONNX; and the
errors (no keys, bad options, a trainable encoder) say what was expected."""

import numpy as np
import pandas as pd
import pytest
import torch

from polymodal import Predictor
from polymodal.heads.anchors import AnchorSpace
from polymodal.heads.retrieval import RetrievalHead
from polymodal.utils.errors import ArtifactError
from tests.tables import make_table

N, DA, DB = 20, 48, 40


def _keys(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"img": torch.randn(N, DA, generator=g), "txt": torch.randn(N, DB, generator=g)}


def test_items_resembling_the_same_training_pair_meet():
    torch.manual_seed(0)
    space = AnchorSpace({"img": DA, "txt": DB}, ["img", "txt"], k=3, power=8.0)
    keys = _keys()
    space.fill(keys)
    img = space.embed("img", keys["img"][[4, 9]] + 0.05 * torch.randn(2, DA))
    txt = space.embed("txt", keys["txt"][[4, 9]] + 0.05 * torch.randn(2, DB))
    sim = img @ txt.T  # rows: images like pairs 4 and 9; columns: texts like the same pairs
    assert sim[0, 0] > 0.8 and sim[1, 1] > 0.8 and sim[0, 1] < 0.3 and sim[1, 0] < 0.3
    assert ((img > 0).sum(1) <= 3).all()  # only the k nearest anchors are kept
    assert torch.allclose(img.norm(dim=1), torch.ones(2))


def _head(anchors: int = 0, **kw) -> RetrievalHead:
    torch.manual_seed(0)
    return RetrievalHead({"img": DA, "txt": DB}, ["img", "txt"], dim=4, hidden=8, anchors=anchors, **kw)  # fmt: skip


def test_head_mixes_the_anchor_space_outside_training_only():
    plain, head = _head(), _head(anchors=3, anchor_weight=1.0)
    head.fill_anchors(_keys())
    x = torch.randn(5, DA)
    head.train()
    assert head.embed("img", x).shape == (5, 4)
    head.eval(), plain.eval()
    out = head.embed("img", x)
    assert out.shape == (5, 4 + N) and head.out_dim == 4 + N
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-5)
    # the towers' part is the plain head's embedding, scaled by 1 / sqrt(1 + w)
    assert torch.allclose(out[:, :4] * 2**0.5, plain.embed("img", x), atol=1e-6)
    feats = {"img": torch.randn(5, DA), "txt": torch.randn(5, DB)}
    masks = {k: torch.ones(5, dtype=torch.bool) for k in feats}
    ids = torch.arange(5).repeat(2, 1).T
    # the loss reads the towers' part only: the same as without anchors
    assert torch.isclose(head.loss(head(feats, masks), ids), plain.loss(plain(feats, masks), ids))


def test_head_state_round_trips_with_its_keys():
    head = _head(anchors=3)
    head.fill_anchors(_keys())
    fresh = _head(anchors=3)
    fresh.load_state_dict(head.state_dict())
    head.eval(), fresh.eval()
    x = torch.randn(3, DB)
    assert torch.equal(head.embed("txt", x), fresh.embed("txt", x))


def test_anchors_over_the_limit_are_a_fixed_sample():
    space = AnchorSpace({"img": DA, "txt": DB}, ["img", "txt"], k=3, power=8.0, limit=7)
    keys = _keys()
    space.fill(keys)
    assert len(space) == 7
    kept = space.sides["img"].keys
    rows = [int((torch.nn.functional.normalize(keys["img"], dim=-1) @ k).argmax()) for k in kept]
    assert rows == sorted(set(rows))  # distinct training pairs, in table order
    txt = torch.nn.functional.normalize(keys["txt"][rows], dim=-1)
    assert torch.allclose(space.sides["txt"].keys, txt)  # both sides keep the same pairs
    again = AnchorSpace({"img": DA, "txt": DB}, ["img", "txt"], k=3, power=8.0, limit=7)
    again.fill(keys)
    assert torch.equal(again.sides["img"].keys, kept)  # the same sample every time


def test_bad_options_and_missing_keys_are_clear_errors():
    with pytest.raises(ValueError, match="anchors must be >= 1"):
        AnchorSpace({"img": DA, "txt": DB}, ["img", "txt"], k=-1, power=8.0)
    with pytest.raises(ValueError, match=r"max_anchors must be >= anchors \(3\)"):
        _head(anchors=3, max_anchors=2)
    with pytest.raises(ValueError, match="anchor_power must be > 0"):
        _head(anchors=3, anchor_power=0.0)
    with pytest.raises(ValueError, match="anchor_weight must be >= 0"):
        _head(anchors=3, anchor_weight=-1.0)
    head = _head(anchors=3).eval()
    with pytest.raises(ArtifactError, match=r"needs the training pairs' features.*anchors: 0"):
        head.embed("img", torch.randn(2, DA))
    keys = _keys()
    with pytest.raises(ValueError, match=r"expected 'txt' features \(N, 40\)"):
        head.fill_anchors({"img": keys["img"], "txt": keys["img"]})
    with pytest.raises(ValueError, match="both sides need the same rows"):
        head.fill_anchors({"img": keys["img"], "txt": keys["txt"][:5]})
    with pytest.raises(ValueError, match="needs anchors > 0"):
        _head().fill_anchors(keys)


TINY_BERT = {"model_type": "bert", "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 1,
             "num_attention_heads": 2, "intermediate_size": 37}  # fmt: skip


def _config(text_encoder: dict) -> dict:
    return {
        "inputs": [
            {"name": "photo", "type": "image", "encoder": {"type": "efficientnet_lite"},
             "preprocessing": {"image_size": 32}},
            {"name": "review", "type": "text", "encoder": text_encoder},
        ],
        "outputs": [{"name": "match", "task": "retrieval", "pair": ["photo", "review"],
                     "head": {"dim": 8, "hidden": 16, "anchors": 4}}],
        "trainer": {"epochs": 1, "batch_size": 8, "progress": False},
    }  # fmt: skip


def test_trainer_fills_the_keys_saved_reloaded_and_exported(tmp_path):
    frame = make_table(tmp_path, n=16)
    frame.loc[3, "review"] = None  # a row without one side is no anchor
    frame.to_csv(tmp_path / "table.csv", index=False)
    cfg = _config({"type": "hf", "config": TINY_BERT, "freeze": True})
    pred = Predictor(cfg).fit(frame, val=frame, output_dir=tmp_path / "m", base_dir=tmp_path)
    head = pred.artifact_.model.heads["match"]
    assert len(head.anchors) == 15
    assert "R@10" in " ".join(pred.metrics_["val"]["match"])
    loaded = Predictor.load(tmp_path / "m")
    a = pred.evaluate(frame, base_dir=tmp_path)["match"]
    b = loaded.evaluate(frame, base_dir=tmp_path)["match"]
    assert a == b
    report = pred.export_onnx(tmp_path / "table.csv", tmp_path / "m" / "model.onnx", rows=8)
    assert report["max_abs_diff"] <= 1e-4
    assert all(t["max_abs_diff"] <= 1e-4 for t in report["towers"].values())
    pred.index(tmp_path / "table.csv", "photo")
    hits = pred.search(text=["red class1"], k=3, column="photo")
    assert len(hits) == 3 and np.isfinite(hits["score"]).all()
    assert isinstance(hits, pd.DataFrame)


def test_trainable_encoder_is_refused(tmp_path):
    frame = make_table(tmp_path, n=8)
    cfg = _config({"type": "bow", "embed_dim": 8})
    with pytest.raises(ValueError, match=r"input 'review'.*must be frozen.*anchors: 0"):
        Predictor(cfg).fit(frame, base_dir=tmp_path)
