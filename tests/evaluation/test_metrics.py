import numpy as np
import pytest

from polymodal.evaluation import metrics as M


def test_binary_perfect_and_undefined_auc():
    y = np.array([0, 1, 1, 0])
    m = M.binary_metrics(y, np.array([0.1, 0.9, 0.8, 0.3]))
    assert m["accuracy"] == 1.0 and m["roc_auc"] == 1.0 and m["f1"] == 1.0
    assert m["confusion_matrix"] == [[2, 0], [0, 2]]
    assert M.binary_metrics(np.array([1, 1]), np.array([0.2, 0.9]))["roc_auc"] is None


def test_multiclass_macro():
    y = np.array([0, 1, 2, 2])
    p = np.eye(3)[[0, 1, 1, 2]]
    m = M.multiclass_metrics(y, p * 0.9 + 0.1 / 3)
    assert m["accuracy"] == 0.75
    assert m["macro_recall"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert np.array(m["confusion_matrix"]).sum() == 4


def test_multilabel_and_regression():
    y = np.array([[1, 0], [0, 1]])
    m = M.multilabel_metrics(y, np.array([[0.9, 0.2], [0.1, 0.4]]))
    assert m["subset_accuracy"] == 0.5 and m["micro_f1"] == pytest.approx(2 / 3)
    r = M.regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert r["mae"] == pytest.approx(2 / 3) and r["rmse"] == pytest.approx(np.sqrt(4 / 3))


def test_caption_score_reads_an_unseen_reference_word_as_one_word():
    """A validation caption's word outside the training vocabulary is encoded as <unk>; BLEU
    must score the generated text as against the real caption (the word cannot be matched,
    but it is one word long), not against "<unk>", which sacrebleu splits into three tokens."""
    import pandas as pd

    from polymodal.data.seq_targets import CaptionTargets
    from polymodal.evaluation.evaluate import score

    enc = CaptionTargets().fit(pd.Series(["red flag", "face with tears of laughter"]))
    refs = ["armenia flag", "face with tears of joy"]
    hyps = ["red flag", "face with tears of laughter"]
    target = enc.transform(pd.Series(refs))
    pred = enc.transform(pd.Series(hyps))[:, 1:]  # without <bos>, as a head decodes
    pipeline = type("Pipeline", (), {"targets": {"text": enc}})()
    got = score("caption", {"pred": pred}, target, pipeline, "text")  # type: ignore[arg-type]
    assert got == pytest.approx(M.caption_metrics(hyps, refs))
    assert got["bleu4"] > 0
