"""Text columns -> padded token ids. Three tokenisers: a word vocabulary fitted on the training
rows, fastText-style hashed word + character n-grams, or a Hugging Face tokenizer (a local folder
or cached hub id) for pretrained encoders."""

from __future__ import annotations

import itertools
import re
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from polymodal.data.base import DataError, Preprocessor, Transformed
from polymodal.data.io import is_missing
from polymodal.registry import register

PAD, UNK = 0, 1
WORD = re.compile(r"\w+|[^\w\s]")


@register("preprocessor", "text")
class TextPreprocessor(Preprocessor):
    modality = "text"

    def __init__(
        self,
        tokenizer: str = "word",  # "word" | "ngram_hash" | path or id of a Hugging Face tokenizer
        max_length: int = 128,  # tokens kept per cell (longer texts are truncated)
        lowercase: bool = True,
        min_freq: int = 1,  # word vocab: rarer words -> unknown
        max_vocab: int = 30000,
        buckets: int = 2**18,  # ngram_hash: hash space
        ngram_min: int = 3,  # ngram_hash: character n-gram sizes
        ngram_max: int = 5,
    ) -> None:
        self.tokenizer, self.max_length, self.lowercase = tokenizer, max_length, lowercase
        self.min_freq, self.max_vocab = min_freq, max_vocab
        self.buckets, self.ngram_min, self.ngram_max = buckets, ngram_min, ngram_max
        self.vocab: list[str] = []
        self._hf: Any = None

    # -- tokenisation ------------------------------------------------------------------------
    def words(self, text: str) -> list[str]:
        return WORD.findall(text.lower() if self.lowercase else text)

    def _hash(self, token: str) -> int:
        return 2 + zlib.crc32(token.encode("utf-8")) % self.buckets  # stable across runs

    def _ngram_ids(self, text: str) -> list[int]:
        words = self.words(text)[: self.max_length]
        ids = [self._hash("w:" + w) for w in words]
        ids += [self._hash("b:" + a + " " + b) for a, b in itertools.pairwise(words)]
        for w in words:
            padded = f"<{w}>"
            for n in range(self.ngram_min, self.ngram_max + 1):
                ids += [self._hash("c:" + padded[i : i + n]) for i in range(len(padded) - n + 1)]
        return ids[: self.max_length * 8]

    def hf(self) -> Any:
        if self._hf is None:
            from transformers import AutoTokenizer

            try:
                self._hf = AutoTokenizer.from_pretrained(self.tokenizer, local_files_only=True)
            except OSError as err:
                raise DataError(
                    f"tokenizer {self.tokenizer!r} not found locally (no downloads): {err}"
                ) from err
        return self._hf

    def encode(self, texts: list[str]) -> list[list[int]]:
        if self.tokenizer == "word":
            lookup = {w: i + 2 for i, w in enumerate(self.vocab)}
            return [[lookup.get(w, UNK) for w in self.words(t)[: self.max_length]] for t in texts]
        if self.tokenizer == "ngram_hash":
            return [self._ngram_ids(t) for t in texts]
        enc = self.hf()(texts, truncation=True, max_length=self.max_length)
        return [list(ids) for ids in enc["input_ids"]]

    @property
    def pad_id(self) -> int:
        if self.tokenizer in ("word", "ngram_hash"):
            return PAD
        return int(self.hf().pad_token_id or 0)

    # -- fit / transform ---------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame, columns: list[str], base_dir: Path) -> TextPreprocessor:
        col = columns[0]
        texts = [str(v) for v in frame[col] if not is_missing(v)]
        if not texts:
            raise DataError(
                f"<train>, column {col!r}: all {len(frame)} training rows are empty; expected some text"
            )
        if self.tokenizer == "word":
            counts = Counter(w for t in set(texts) for w in self.words(t))
            kept = [w for w, c in counts.most_common(self.max_vocab - 2) if c >= self.min_freq]
            self.vocab = sorted(kept)
        return self

    def transform(
        self,
        frame: pd.DataFrame,
        columns: list[str],
        base_dir: Path,
        source: str = "<table>",
        bad_cells: str = "raise",
    ) -> Transformed:
        cells = frame[columns[0]].tolist()
        present = torch.tensor([not is_missing(v) for v in cells], dtype=torch.bool)
        texts = [str(v) if ok else "" for v, ok in zip(cells, present.tolist(), strict=True)]
        unique = list(dict.fromkeys(texts))  # each distinct text tokenised once
        pos = {t: i for i, t in enumerate(unique)}
        ids = self.encode(unique)
        width = max(1, max((len(x) for x in ids), default=1))
        out = torch.full((len(unique), width), self.pad_id, dtype=torch.long)
        for i, (text, row) in enumerate(zip(unique, ids, strict=True)):
            if text and row:
                out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        index = torch.tensor([pos[t] for t in texts], dtype=torch.long)
        return Transformed(out, present, index=index)

    def spec(self) -> dict[str, Any]:
        if self.tokenizer == "word":
            vocab = len(self.vocab) + 2
        elif self.tokenizer == "ngram_hash":
            vocab = self.buckets + 2
        else:
            vocab = len(self.hf())
        return {"vocab_size": vocab, "pad_id": self.pad_id}

    def fitted_state(self) -> dict[str, Any]:
        return {"vocab": self.vocab}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        self.vocab = list(state["vocab"])
