"""Paired bootstrap of corpus BLEU-4 over the test items: a 95 % interval for each captioner and
for the difference between two, resampling the same items for both (Koehn 2004), so close
comparisons (nearest-neighbour copy vs the retrieval-augmented head) come with their noise."""

from __future__ import annotations

from typing import Any

import numpy as np
import sacrebleu
from baselines import words

SAMPLES, SEED = 1000, 0


def _bleu(hyps: list[str], refs: list[str]) -> float:
    return float(sacrebleu.corpus_bleu(hyps, [refs]).score)


def paired(a: list[str], b: list[str], refs: list[str]) -> dict[str, Any]:
    """BLEU-4 of ``a`` and ``b`` (same normalisation as the table) with 95 % intervals, the
    difference ``b - a`` with its interval, and the share of resamples where ``b`` wins."""
    a, b, refs = [words(t) for t in a], [words(t) for t in b], [words(t) for t in refs]
    rng = np.random.default_rng(SEED)
    n = len(refs)
    stats = np.empty((SAMPLES, 2))
    for s in range(SAMPLES):
        at = rng.integers(0, n, n)
        r = [refs[i] for i in at]
        stats[s] = (_bleu([a[i] for i in at], r), _bleu([b[i] for i in at], r))
    diff = stats[:, 1] - stats[:, 0]
    ci = lambda x: [round(float(v), 2) for v in np.percentile(x, [2.5, 97.5])]  # noqa: E731
    return {
        "a_bleu4": round(_bleu(a, refs), 2), "a_ci95": ci(stats[:, 0]),
        "b_bleu4": round(_bleu(b, refs), 2), "b_ci95": ci(stats[:, 1]),
        "b_minus_a": round(_bleu(b, refs) - _bleu(a, refs), 2), "b_minus_a_ci95": ci(diff),
        "b_wins": round(float((diff > 0).mean()), 3), "samples": SAMPLES,
    }  # fmt: skip
