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

import numpy as np
import pandas as pd
import torch

from polymodal.data.base import DataError, Preprocessor, Transformed, where
from polymodal.data.io import is_missing
from polymodal.data.paths import ANYWHERE, FileAccess
from polymodal.data.stats import Stats, merge
from polymodal.registry import register

PAD, UNK = 0, 1
WORD = re.compile(r"\w+|[^\w\s]")


@register("preprocessor", "text")
class TextPreprocessor(Preprocessor):
    modality = "text"
    sequence = True  # token ids (N, L): L is the longest text of the table, up to max_length

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
        self.vocab: list[str] = []  # word tokenizer: id 2.. in order (0 = pad, 1 = unknown)
        self._lookup: dict[str, int] = {}
        self._char_cache: dict[str, list[int]] = {}
        self._hf: Any = None

    # -- tokenisation ------------------------------------------------------------------------
    def words(self, text: str) -> list[str]:
        return WORD.findall(text.lower() if self.lowercase else text)

    def _hash(self, token: str) -> int:
        return 2 + zlib.crc32(token.encode("utf-8")) % self.buckets  # stable across runs

    def _char_ids(self, word: str) -> list[int]:
        """Hashed character n-grams of ``<word>``, memoised: words repeat far more than texts."""
        ids = self._char_cache.get(word)
        if ids is None:
            padded = f"<{word}>"
            ids = [
                self._hash("c:" + padded[i : i + n])
                for n in range(self.ngram_min, self.ngram_max + 1)
                for i in range(len(padded) - n + 1)
            ]
            if len(self._char_cache) < 500_000:
                self._char_cache[word] = ids
        return ids

    def _ngram_ids(self, text: str) -> list[int]:
        """fastText-style ids, most informative first so truncation to ``max_length`` keeps them:
        words interleaved with the bigrams that end at them, then character n-grams."""
        words = self.words(text)[: self.max_length]
        ids: list[int] = []
        for i, w in enumerate(words):
            ids.append(self._hash("w:" + w))
            if i:
                ids.append(self._hash("b:" + words[i - 1] + " " + w))
        for w in words:
            if len(ids) >= self.max_length:
                break
            ids += self._char_ids(w)
        return ids[: self.max_length]

    def hf(self) -> Any:
        if self._hf is None:
            from transformers import AutoTokenizer

            try:
                self._hf = AutoTokenizer.from_pretrained(self.tokenizer, local_files_only=True)
            except (OSError, ValueError) as err:
                raise DataError(
                    f"text preprocessing: tokenizer {self.tokenizer!r} is neither 'word', "
                    f"'ngram_hash' nor a Hugging Face tokenizer available locally (no downloads): "
                    f"{err}"
                ) from err
        return self._hf

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text, at most ``max_length`` each (no padding)."""
        if self.tokenizer == "word":
            lookup = self._lookup
            return [[lookup.get(w, UNK) for w in self.words(t)[: self.max_length]] for t in texts]
        if self.tokenizer == "ngram_hash":
            return [self._ngram_ids(t) for t in texts]
        enc = self.hf()(texts, truncation=True, max_length=self.max_length)
        return [list(ids) for ids in enc["input_ids"]]

    def tokens(self, text: str) -> list[str]:
        """The token strings behind ``encode([text])[0]``, one per id (for explanations):
        words; ``w:word`` / ``b:word word`` / ``c:<ngram`` for hashed n-grams; WordPieces."""
        if self.tokenizer == "word":
            return self.words(text)[: self.max_length]
        if self.tokenizer == "ngram_hash":
            words = self.words(text)[: self.max_length]
            names: list[str] = []
            for i, w in enumerate(words):  # the order of ``_ngram_ids``
                names.append(f"w:{w}")
                if i:
                    names.append(f"b:{words[i - 1]} {w}")
            for w in words:
                if len(names) >= self.max_length:
                    break
                padded = f"<{w}>"
                names += [
                    "c:" + padded[i : i + n]
                    for n in range(self.ngram_min, self.ngram_max + 1)
                    for i in range(len(padded) - n + 1)
                ]
            return names[: self.max_length]
        hf = self.hf()
        ids = hf(text, truncation=True, max_length=self.max_length)["input_ids"]
        return [str(t) for t in hf.convert_ids_to_tokens(ids)]

    @property
    def pad_id(self) -> int:
        if self.tokenizer in ("word", "ngram_hash"):
            return PAD
        return int(self.hf().pad_token_id or 0)

    # -- fit / transform ---------------------------------------------------------------------
    def partial_fit(
        self,
        frame: pd.DataFrame,
        columns: list[str],
        base_dir: Path,
        stats: Stats | None = None,
        source: str = "<train>",
        access: FileAccess = ANYWHERE,
    ) -> Stats:
        texts = [str(v) for v in frame[columns[0]] if not is_missing(v)]
        part: Stats = {"rows": len(frame), "texts": len(texts)}
        if self.tokenizer == "word":
            counts: Counter[str] = Counter()
            for text, times in Counter(texts).items():  # tokenise each distinct text once
                for w in self.words(text):
                    counts[w] += times
            part["words"] = counts
        return dict(merge(stats, part))

    def finish_fit(self, stats: Stats, columns: list[str]) -> TextPreprocessor:
        if not stats.get("texts"):
            raise DataError(
                f"<train>, column {columns[0]!r}: all {stats.get('rows', 0)} training rows are "
                "empty; expected some text"
            )
        if self.tokenizer == "word":
            counts: Counter[str] = stats.get("words") or Counter()
            ranked = sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))  # ties: alphabetical
            kept = [w for w, c in ranked if c >= self.min_freq][: max(0, self.max_vocab - 2)]
            self.load_fitted_state({"vocab": kept})
        elif self.tokenizer != "ngram_hash":
            self.hf()  # a missing tokenizer fails here, at fit, not mid-way through training
        return self

    def transform(
        self,
        frame: pd.DataFrame,
        columns: list[str],
        base_dir: Path,
        source: str = "<table>",
        bad_cells: str = "raise",
        access: FileAccess = ANYWHERE,
    ) -> Transformed:
        cells = frame[columns[0]].tolist()
        present = np.array([not is_missing(v) for v in cells], dtype=bool)
        texts = [str(v) if ok else "" for v, ok in zip(cells, present, strict=True)]
        unique = list(dict.fromkeys(texts))  # each distinct text tokenised once
        _check_unicode(unique, texts, frame.index, source, columns[0])
        pos = {t: i for i, t in enumerate(unique)}
        filled = [t for t in unique if t]
        encoded = dict(zip(filled, self.encode(filled), strict=True)) if filled else {}
        ids = [encoded.get(t, []) for t in unique]  # missing text: no tokens, all padding
        index = torch.tensor([pos[t] for t in texts], dtype=torch.long)
        return Transformed(_pad(ids, self.pad_id), torch.from_numpy(present), index=index)

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
        self._lookup = {w: i + 2 for i, w in enumerate(self.vocab)}


def _pad(ids: list[list[int]], pad_id: int) -> torch.Tensor:
    """Ragged id lists -> (U, L) LongTensor, L = the longest list (at least 1)."""
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    width = max(1, int(lengths.max(initial=0)))
    out = np.full((len(ids), width), pad_id, dtype=np.int64)
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
    out[np.arange(width) < lengths[:, None]] = flat  # row-major fill keeps each row's order
    return torch.from_numpy(out)


def _check_unicode(unique: list[str], texts: list[str], rows: Any, source: str, col: str) -> None:
    """Text that cannot be written as UTF-8 (a lone surrogate from a JSON ``\\ud800`` escape)
    is an error naming its row, before a tokenizer fails on it without one."""
    try:
        "".join(unique).encode("utf-8")
    except UnicodeEncodeError:
        for row, text in zip(rows, texts, strict=True):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as err:
                raise DataError(
                    f"{where(source, row, col)}: expected text (valid Unicode), got a lone "
                    f"surrogate {text[err.start]!r} at character {err.start}"
                ) from None
