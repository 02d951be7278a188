"""Baselines written out in the benchmark: ridge maps into a text space (the shared reference:
frozen EfficientNet-Lite0 image features -> frozen MiniLM name embeddings), the same map into a
TF-IDF space and from raw pixels, chance, and a nearest-neighbour caption baseline.

Frozen features are read through the trained model's own encoders and the frozen-feature cache
(same namespace as training), so nothing is computed twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge

from polymodal.data.seq_targets import CaptionTargets
from polymodal.encoders.cache import FeatureCache, namespace
from polymodal.evaluation.metrics import caption_metrics, retrieval_metrics

ALPHAS = (1.0, 10.0, 100.0, 1000.0)


def frozen_features(pred: Any, frame: pd.DataFrame, name: str, base: Path, cache_dir: str) -> np.ndarray:  # fmt: skip
    """One frozen encoder's outputs for ``frame`` (rows in order), through its feature cache."""
    art = pred.artifact_
    enc = art.model.encoders[name]
    pre = art.pipeline.preprocessors[name]
    inp = next(i for i in art.config.inputs if i.name == name)
    data = pre.transform(frame, inp.cols, base, source=name)
    cache = FeatureCache(namespace(enc, enc.build_config, pre.state_dict()), cache_dir)
    values = torch.cat(
        [cache(enc, data.values[i : i + 256]) for i in range(0, len(data.values), 256)]
    )
    cache.flush()
    return values[data.index].numpy() if data.index is not None else values.numpy()


def pixels(frame: pd.DataFrame, base: Path, size: int = 32) -> np.ndarray:
    """Raw RGB pixels of each icon on white, ``size`` x ``size``, flattened."""
    out = []
    for rel in frame["image"]:
        with Image.open(base / rel) as img:
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            rgb = Image.alpha_composite(white, rgba).convert("RGB").resize((size, size))
            out.append(np.asarray(rgb, dtype=np.float32).reshape(-1) / 255.0)
    return np.stack(out)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)


def ridge_retrieval(
    x: dict[str, np.ndarray], y: dict[str, np.ndarray], alphas: tuple[float, ...] = ALPHAS
) -> tuple[dict[str, Any], float]:
    """Ridge from ``x`` (image side) to ``y`` (text space), alpha chosen on val by mean R@10;
    returns the test metrics (image side named ``image``) and the chosen alpha."""
    best: tuple[float, float] = (-1.0, alphas[0])
    for alpha in alphas:
        model = Ridge(alpha=alpha).fit(x["train"], y["train"])
        m = _metrics(model.predict(x["val"]), y["val"])
        best = max(best, (m["mean_R@10"], alpha))
    model = Ridge(alpha=best[1]).fit(x["train"], y["train"])
    return _metrics(model.predict(x["test"]), y["test"]), best[1]


def _metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, Any]:
    ids = np.arange(len(pred))[:, None].repeat(2, 1)
    return retrieval_metrics(_unit(pred), _unit(target), ids, ("image", "text"))


def tfidf_space(texts: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Character 2-4-gram TF-IDF of the names (fitted on the training names)."""
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=1, sublinear_tf=True)
    vec.fit(texts["train"])
    return {k: vec.transform(v).toarray().astype(np.float32) for k, v in texts.items()}


def chance(n: int) -> dict[str, float]:
    return {"R@1": 1 / n, "R@5": 5 / n, "R@10": 10 / n, "median_rank": (n + 1) / 2}


def words(text: str) -> str:
    """Captions as the caption head writes them: lower-case words and punctuation, spaced."""
    return " ".join(CaptionTargets.words(text))


def nn_captions(train_feats: np.ndarray, train_names: list[str], test_feats: np.ndarray) -> list[str]:  # fmt: skip
    """Each test icon gets the name of its nearest training icon (cosine of image features)."""
    nearest = (_unit(test_feats) @ _unit(train_feats).T).argmax(1)
    return [train_names[i] for i in nearest]


def caption_scores(hypotheses: list[str], references: list[str]) -> dict[str, Any]:
    return caption_metrics([words(h) for h in hypotheses], [words(r) for r in references])
