"""Targets of the two tasks that are not one label per row: ``retrieval`` (a pair of inputs, no
target column) and ``caption`` (a text column generated word by word). To the rest of the code
both are :class:`~polymodal.data.targets.TargetEncoder` objects, saved as JSON;
:func:`make_target` / :func:`target_from_state` pick the class for a task.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd
import torch

from polymodal.data.base import DataError, where
from polymodal.data.io import is_missing
from polymodal.data.preprocess.text import WORD
from polymodal.data.targets import TargetEncoder

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]


class PairTargets(TargetEncoder):
    """Retrieval: each row's group ids ``(N, 2)``, one per side of the pair. Rows with equal cells
    on either side (an icon and its skin-tone variants share one name; one photo has five
    captions) are positives of each other in the contrastive loss and the metrics, never
    negatives. A missing cell gets an id of its own."""

    def __init__(self) -> None:
        _plain_state(self, "retrieval")

    @property
    def num_outputs(self) -> int:
        return 0

    def fit(self, frame: Any, source: str = "<train>") -> PairTargets:
        return self

    def transform(self, frame: Any, source: str = "<table>") -> torch.Tensor:
        cols = [_group_ids(frame[c]) for c in frame.columns]
        return torch.stack(cols, dim=1)  # (N, 2)

    def decode(self, pred: torch.Tensor) -> list[Any]:
        """Cosine similarity of each row's two sides (NaN where one is missing)."""
        return [float(v) for v in pred.tolist()]

    def proba_labels(self) -> list[Any]:
        return []

    def state_dict(self) -> dict[str, Any]:
        return {"task": self.task}


def _plain_state(enc: TargetEncoder, task: str) -> None:
    """What TargetEncoder's own methods read, for a task it does not know itself."""
    enc.task, enc.label_separator, enc.classes, enc.mean, enc.std = task, "|", [], 0.0, 1.0


def _group_ids(series: pd.Series) -> torch.Tensor:
    keys = [v if isinstance(v, (str, bytes, int, float)) else repr(v) for v in series]
    ids: dict[Any, int] = {}
    out = []
    for i, (key, raw) in enumerate(zip(keys, series, strict=True)):
        if not isinstance(raw, (bytes, list)) and is_missing(raw):
            out.append(-1 - i)  # never equal to another row's id
        else:
            out.append(ids.setdefault(key, len(ids)))
    return torch.tensor(out, dtype=torch.long)


class CaptionTargets(TargetEncoder):
    """Caption: a word vocabulary fitted on the training captions (lower-cased, words and
    punctuation as in the ``word`` text tokenizer); captions become ``<bos> w1 .. wn <eos>`` id
    rows padded with 0. Words unseen in training map to ``<unk>``, which decoding never emits."""

    def __init__(self, max_tokens: int = 40, min_freq: int = 1, max_vocab: int = 20000) -> None:
        _plain_state(self, "caption")
        self.max_tokens, self.min_freq, self.max_vocab = max_tokens, min_freq, max_vocab
        self.vocab: list[str] = []  # words with ids 4.. (0-3: pad, unk, bos, eos)
        self._lookup: dict[str, int] = {}

    @property
    def num_outputs(self) -> int:
        return len(SPECIALS) + len(self.vocab)

    @staticmethod
    def words(text: str) -> list[str]:
        return WORD.findall(str(text).lower())

    def fit(self, series: pd.Series, source: str = "<train>") -> CaptionTargets:
        _check_present(series, source)
        counts: Counter[str] = Counter()
        for text in series:
            counts.update(self.words(text))
        ranked = sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))
        kept = [w for w, c in ranked if c >= self.min_freq][: self.max_vocab]
        if not kept:
            raise DataError(f"{source}, column {series.name!r}: the captions hold no words")
        self._set_vocab(kept)
        return self

    def _set_vocab(self, vocab: list[str]) -> None:
        self.vocab = list(vocab)
        self._lookup = {w: i + len(SPECIALS) for i, w in enumerate(self.vocab)}

    def encode(self, text: str) -> list[int]:
        ids = [self._lookup.get(w, UNK) for w in self.words(text)[: self.max_tokens]]
        return [BOS, *ids, EOS]

    def transform(self, series: pd.Series, source: str = "<table>") -> torch.Tensor:
        _check_present(series, source)
        rows = [self.encode(t) for t in series]
        out = torch.full((len(rows), max(len(r) for r in rows)), PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r)
        return out  # (N, T)

    def decode(self, pred: torch.Tensor, unknown: str | None = None) -> list[Any]:
        """Token id rows (with or without ``<bos>``) -> text, up to the first ``<eos>``;
        ``unknown``: what an out-of-vocabulary word becomes (default ``<unk>``)."""
        texts = []
        for row in pred.long().tolist():
            words = []
            for i in row:
                if i == EOS:
                    break
                if i not in (PAD, BOS):
                    words.append(unknown if i == UNK and unknown is not None else self.token(i))
            texts.append(" ".join(words))
        return texts

    def token(self, i: int) -> str:
        return SPECIALS[i] if i < len(SPECIALS) else self.vocab[i - len(SPECIALS)]

    def proba_labels(self) -> list[Any]:
        return []

    def state_dict(self) -> dict[str, Any]:
        opts = {"max_tokens": self.max_tokens, "min_freq": self.min_freq}
        return {"task": self.task, **opts, "max_vocab": self.max_vocab, "vocab": self.vocab}


def _check_present(series: pd.Series, source: str) -> None:
    for row, v in series.items():
        if is_missing(v) or not str(v).strip():
            raise DataError(
                f"{where(source, row, str(series.name))}: the caption is missing or empty; "
                "every training/evaluation row needs a text"
            )


def make_target(task: str, label_separator: str = "|") -> TargetEncoder:
    if task == "retrieval":
        return PairTargets()
    if task == "caption":
        return CaptionTargets()
    return TargetEncoder(task, label_separator=label_separator)


def target_from_state(state: dict[str, Any]) -> TargetEncoder:
    if state["task"] == "retrieval":
        return PairTargets()
    if state["task"] == "caption":
        enc = CaptionTargets(state["max_tokens"], state["min_freq"], state["max_vocab"])
        enc._set_vocab(state["vocab"])
        return enc
    return TargetEncoder.from_state(state)
