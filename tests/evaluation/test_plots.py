"""Plot helpers: WordPiece merging, the reliability diagram's numbers, every explanation panel."""

import numpy as np
import pytest

from polymodal.evaluation import plots

PNG = b"\x89PNG\r\n\x1a\n"


def test_merge_pieces_joins_wordpieces():
    words, values = plots.merge_pieces(
        ["[CLS]", "over", "##pr", "##iced", "dress"], [0.1, 1, 2, 3, -1]
    )
    assert words == ["[CLS]", "overpriced", "dress"] and values == [0.1, 6, -1]
    assert plots.merge_pieces(["##x", "y"], [1.0, 2.0]) == (["##x", "y"], [1.0, 2.0])


def test_reliability_bins_and_ece():
    confidence = np.array([0.05, 0.15, 0.95, 0.95])
    correct = np.array([0.0, 1.0, 1.0, 0.0])
    rel = plots.reliability(confidence, correct)
    assert [b[2] for b in rel["bins"]] == [1, 1, 2]  # rows per non-empty bin
    expected = (0.05 * 1 + 0.85 * 1 + 0.45 * 2) / 4  # |confidence - accuracy| weighted by rows
    assert rel["ece"] == pytest.approx(expected)


def test_explanation_figure_draws_every_kind():
    rng = np.random.default_rng(0)
    summary = {
        "row": 3, "output": "label", "prediction": "cat", "actual": "dog", "explained_class": "cat",
        "occlusion": {"photo": 0.3, "voice": -0.1, "review": 0.2, "age": 0.0, "gone": 0.0},
        "modalities": {
            "photo": {"present": True, "kind": "pixels"},
            "voice": {"present": True, "kind": "time_frequency"},
            "review": {"present": True, "kind": "tokens", "tokens": ["a", "lov", "##ely", "dress"] * 40, "values": list(rng.normal(size=160))},
            "age": {"present": True, "kind": "features", "features": ["age"], "inputs": [41.123456], "values": [0.2]},
            "gone": {"present": False},
        },
        "attention": {"tokens": ["[CLS]", "photo", "voice"], "layers": [np.eye(3).tolist()]},
    }  # fmt: skip
    display = {
        "photo": (rng.normal(size=(3, 16, 16)), rng.normal(size=(16, 16))),
        "voice": (rng.normal(size=(8, 20)), rng.normal(size=(8, 20))),
    }
    data = plots.explanation(summary, display)
    assert data[:8] == PNG and len(data) > 20000
