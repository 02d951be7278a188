"""Mergeable fitting statistics: what a preprocessor learns from some rows, combinable with what
it learned from other rows (another chunk of a stream, another DataLoader worker, another rank).

A statistics object is a plain dict whose values are ints/floats (summed), ``Counter`` (summed),
:class:`Moments` (Chan et al.'s parallel mean/variance), :class:`Sample` (a bottom-k sample by
content digest), nested dicts or lists of those (merged key by key / element by element). ``to_json`` / ``from_json`` carry them between processes
without pickle.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

Stats = dict[str, Any]


@dataclass
class Moments:
    """Per-column count, mean and sum of squared deviations (``m2``), NaN cells skipped; merging
    two is exact up to float rounding, so a streamed fit equals the in-memory one."""

    count: np.ndarray  # (F,) float64
    mean: np.ndarray  # (F,)
    m2: np.ndarray  # (F,)

    @classmethod
    def of(cls, x: np.ndarray) -> Moments:
        """Moments of the rows of ``x`` (N, F) or (N,), ignoring NaN."""
        x = np.asarray(x, dtype=np.float64)
        x = x.reshape(len(x), -1)
        seen = ~np.isnan(x)
        count = seen.sum(0).astype(np.float64)
        mean = np.where(seen, x, 0.0).sum(0) / np.maximum(count, 1)
        m2 = np.where(seen, (x - mean) ** 2, 0.0).sum(0)
        return cls(count, mean, m2)

    def merge(self, other: Moments) -> Moments:
        n = self.count + other.count
        delta = other.mean - self.mean
        safe = np.maximum(n, 1)
        mean = self.mean + delta * other.count / safe
        m2 = self.m2 + other.m2 + delta**2 * self.count * other.count / safe
        return Moments(n, mean, m2)

    @property
    def var(self) -> np.ndarray:
        """Population variance (ddof 0), 0 where a column had no values."""
        return np.asarray(self.m2 / np.maximum(self.count, 1))


@dataclass
class Sample:
    """Up to ``size`` items, the ones with the smallest keys (digests of their content): the same
    items whatever the order, chunking or process split of the rows they came from, so a streamed
    fit keeps the sample an in-memory fit keeps. Payloads must be JSON-serialisable."""

    size: int
    items: dict[str, Any]  # key (hex digest of the content) -> payload

    def merge(self, other: Sample) -> Sample:
        size = max(self.size, other.size)
        both = {**self.items, **other.items}  # an equal key is equal content
        return Sample(size, {k: both[k] for k in sorted(both)[:size]})


def merge(a: Any, b: Any) -> Any:
    """Merge two statistics of the same shape (see the module docstring)."""
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, (Moments, Sample)):
        return a.merge(b)
    if isinstance(a, Counter):
        out = Counter(a)
        out.update(b)
        return out
    if isinstance(a, dict):
        return {k: merge(a.get(k), b.get(k)) for k in dict.fromkeys([*a, *b])}
    if isinstance(a, list):
        if len(a) != len(b):
            raise ValueError(f"cannot merge statistics lists of lengths {len(a)} and {len(b)}")
        return [merge(x, y) for x, y in zip(a, b, strict=True)]
    if isinstance(a, (int, float)):
        return a + b
    raise TypeError(f"cannot merge statistics of type {type(a).__name__}")


def merge_all(parts: list[Any]) -> Any:
    out = None
    for part in parts:
        out = merge(out, part)
    return out


def to_json(obj: Any) -> Any:
    """JSON-serialisable form (``Counter`` and :class:`Moments` tagged)."""
    if isinstance(obj, Moments):
        return {"__moments__": [obj.count.tolist(), obj.mean.tolist(), obj.m2.tolist()]}
    if isinstance(obj, Sample):
        return {"__sample__": [obj.size, obj.items]}
    if isinstance(obj, Counter):
        return {"__counter__": [[k, int(v)] for k, v in obj.items()]}
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_json(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def from_json(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__moments__"}:
            count, mean, m2 = (np.asarray(v, dtype=np.float64) for v in obj["__moments__"])
            return Moments(count, mean, m2)
        if set(obj) == {"__sample__"}:
            size, items = obj["__sample__"]
            return Sample(int(size), dict(items))
        if set(obj) == {"__counter__"}:
            return Counter({k: v for k, v in obj["__counter__"]})
        return {k: from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_json(v) for v in obj]
    return obj


__all__ = ["Moments", "Sample", "Stats", "from_json", "merge", "merge_all", "to_json"]
