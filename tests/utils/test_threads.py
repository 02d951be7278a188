"""Batch splitting over single-threaded workers (polymodal.utils.threads)."""

from __future__ import annotations

import torch

from polymodal.utils.threads import split_map


def test_split_map_gives_the_rows_of_one_call_and_leaves_the_callers_threads():
    seen: list[tuple[int, int]] = []

    def fn(part: torch.Tensor) -> torch.Tensor:
        seen.append((len(part), torch.get_num_threads()))
        return part * 2 + part.sum(1, keepdim=True)  # rows independent

    x = torch.randn(50, 3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert torch.equal(split_map(fn, x), fn(x))
        assert sorted(seen[:2]) == [(25, 1), (25, 1)]  # two parts, one thread each
        assert torch.get_num_threads() == 2  # the caller's setting is untouched
        seen.clear()
        split_map(fn, x[:20])  # too few rows for two parts of 16: one call, here
        assert seen == [(20, 2)]
        torch.set_num_threads(1)
        seen.clear()
        split_map(fn, x)
        assert seen == [(50, 1)]
    finally:
        torch.set_num_threads(before)


def test_split_map_works_in_a_forked_child():
    """A child forked after the pool started has none of its threads: it must start its own,
    not queue work for threads that do not exist (a hang)."""
    import multiprocessing as mp

    x = torch.randn(40, 3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        split_map(torch.neg, x)  # the parent's pool exists
        with mp.get_context("fork").Pool(1) as pool:
            result = pool.apply_async(_child_sum, (x,))
            assert result.get(timeout=60) == float(-x.sum())
    finally:
        torch.set_num_threads(before)


def _child_sum(x: torch.Tensor) -> float:
    torch.set_num_threads(2)
    return float(split_map(torch.neg, x).sum())
