"""Modality importance: the synthetic sanity check, intervals, per-row importance, errors."""

import numpy as np
import pytest
import torch

from polymodal.evaluation.evaluate import score
from polymodal.evaluation.importance import (
    ImportanceError,
    encode_dataset,
    fuse_all,
    importance_table,
    main_metric,
    modality_importance,
    row_importance,
)
from tests.evaluation.conftest import signal_table


@pytest.fixture(scope="module")
def held_out(signal_model):
    art = signal_model.artifact_
    return art, art.pipeline.dataset(signal_table(200, seed=1), base_dir=None)


def test_only_the_informative_modality_matters(held_out):
    art, ds = held_out
    result = modality_importance(art.model, ds, art.pipeline, repeats=10)
    assert result["metric"] == {"label": "roc_auc"} and result["baseline"]["label"] > 0.95
    for method in ("ablation", "permutation"):
        drops = {m: e[method]["label"]["drop"] for m, e in result["modalities"].items()}
        assert max(drops, key=drops.get) == "review", (method, drops)
        assert drops["review"] > 0.3 and abs(drops["numeric"]) < 0.1 and abs(drops["colour"]) < 0.1
        text = result["modalities"]["review"][method]["label"]
        assert 0 < text["ci_low"] <= text["ci_high"]  # a real effect: the interval excludes 0
    assert "| review | label | ablation |" in importance_table(result)


def test_main_metric_matches_the_full_report(held_out):
    art, ds = held_out
    emb, masks = encode_dataset(art.model, ds)
    logits = fuse_all(art.model, emb, masks)
    full = score("binary", art.model.heads["label"].decode(logits["label"]), ds.targets["label"], art.pipeline, "label")  # fmt: skip
    fast = main_metric(art.model, "label", logits["label"], ds.targets["label"], art.pipeline)
    assert fast == pytest.approx(full["roc_auc"])
    # fusion over cached embeddings gives what the whole model gives
    direct = art.model(ds.__getitems__(list(range(len(ds))))["features"], {k: t.present for k, t in ds.inputs.items()})  # fmt: skip
    assert torch.allclose(direct["label"], logits["label"], atol=1e-5)


def test_per_row_importance(held_out):
    art, ds = held_out
    emb, masks = encode_dataset(art.model, ds)
    masks["colour"][:5] = False  # already missing: masking it changes nothing
    per_row = row_importance(art.model, emb, masks, art.pipeline, "label")
    assert set(per_row) == {"review", "numeric", "colour"}
    assert all(v.shape == (len(ds),) for v in per_row.values())
    assert np.all(per_row["colour"][:5] == 0)
    means = {k: float(np.abs(v).mean()) for k, v in per_row.items()}
    assert means["review"] > 2 * max(means["numeric"], means["colour"]), means


def test_errors_name_what_is_expected(held_out, signal_model):
    art, ds = held_out
    with pytest.raises(ImportanceError, match=r"no output 'price'.*label"):
        row_importance(art.model, *encode_dataset(art.model, ds), art.pipeline, "price")
    unlabelled = art.pipeline.dataset(signal_table(20, seed=2), None, with_targets=False)
    with pytest.raises(ImportanceError, match=r"target column\(s\) \['label'\]"):
        modality_importance(art.model, unlabelled, art.pipeline)
    with pytest.raises(ValueError, match=r"missing column.*'label'"):
        signal_model.importance(signal_table(20, seed=2).drop(columns=["label"]))
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        modality_importance(art.model, ds, art.pipeline, repeats=0)
