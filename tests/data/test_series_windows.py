"""Windows of long series (``window`` / ``stride`` on the timeseries preprocessing): where windows
start, short / gapped / missing series, the window -> row map, windows equal to slices of the
whole series, the saved options, the reference sample drawn from windows (alike when streamed),
and the dataset that repeats the other inputs and the targets per window."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

import polymodal.data  # noqa: F401  (registers preprocessors)
from polymodal import registry
from polymodal.data.base import Preprocessor, Transformed
from polymodal.data.dataset import TableDataset
from polymodal.data.pipeline import check_windows
from polymodal.data.stats import from_json, merge_all, to_json


def pre(**options: object) -> Preprocessor:
    return registry.build("preprocessor", {"type": "timeseries", **options})


def table() -> pd.DataFrame:
    """Rows of 5 steps (shorter than a window), 23 steps, 40 steps with a gap over steps
    10-24, and a missing series."""
    rng = np.random.default_rng(0)
    cells: list[object] = [rng.normal(size=(n, 2)).tolist() for n in (5, 23, 40)]
    gapped = cells[2]
    assert isinstance(gapped, list)
    gapped[10:25] = [[None, None]] * 15
    return pd.DataFrame({"s": [*cells, None]})


def rows_of(t: Transformed, r: int) -> torch.Tensor:
    assert t.row_of is not None
    return t.rows(torch.nonzero(t.row_of == r).flatten())


def test_windows_cover_each_row_and_map_back_to_it():
    frame = table()
    p = pre(max_length=64, window=10, stride=5).fit(frame, ["s"], Path())
    t = p.transform(frame, ["s"], Path())
    assert t.row_of is not None
    # 23 steps: starts 0, 5, 10 (a tail of 3 left out); 40 steps with a gap over 10-24: the
    # windows at 10 and 15 hold only gap steps and are left out
    assert t.row_of.tolist() == [0, 1, 1, 1, 2, 2, 2, 2, 2, 3]
    assert t.present.tolist() == [True] * 9 + [False]  # the missing row: one masked window
    short = rows_of(t, 0)[0]  # 5 steps: one window, zero-padded, masked after them
    assert short.shape == (10, 3) and short[:, -1].tolist() == [1.0] * 5 + [0.0] * 5
    whole = p.whole().transform(frame, ["s"], Path())  # windows are slices of the whole series
    for r, starts in ((1, [0, 5, 10]), (2, [0, 5, 20, 25, 30])):
        series = whole.rows(torch.tensor([r]))[0]
        want = torch.stack([series[s : s + 10] for s in starts])
        assert torch.equal(rows_of(t, r), want) and torch.equal(p.cut(series), want)
    assert p.spec()["series_length"] == 10


def test_equal_cells_share_windows_and_options_are_saved():
    frame = table()
    frame = pd.concat([frame, frame.iloc[[1]]], ignore_index=True)  # row 4 repeats row 1
    p = pre(max_length=64, window=10).fit(frame, ["s"], Path())  # stride: the window
    t = p.transform(frame, ["s"], Path())
    assert t.row_of is not None and t.index is not None
    assert t.index[t.row_of == 4].tolist() == t.index[t.row_of == 1].tolist()
    assert len(t.values) == int(t.index.max()) + 1  # windows stored once
    assert (t.row_of == 1).sum() == 2  # 23 steps: windows at 0 and 10
    loaded = Preprocessor.from_state(p.state_dict())
    again = loaded.transform(frame, ["s"], Path())
    assert torch.equal(again.values, t.values) and torch.equal(again.row_of, t.row_of)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"window": 600}, "longer than max_length"),
        ({"window": 8, "resample": 16}, "exclude each other"),
        ({"stride": 4}, "needs a window"),
        ({"window": 8, "stride": 0}, "at least 1"),
    ],
)
def test_bad_window_options(options, message):
    with pytest.raises(ValueError, match=message):
        pre(**options)


def test_reference_sample_is_drawn_from_windows_alike_when_streamed():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {"s": [rng.normal(size=(int(n), 3)).tolist() for n in rng.integers(5, 60, 24)]}
    )
    options = {"max_length": 64, "window": 12, "stride": 6, "reference_rows": 6}
    memory = pre(**options).fit(frame, ["s"], Path())
    assert len(memory.reference_) == 6  # type: ignore[attr-defined]
    assert all(1 <= len(r) <= 12 for r in memory.reference_)  # type: ignore[attr-defined]
    streamed = pre(**options)
    parts = [streamed.partial_fit(frame.iloc[a : a + 8], ["s"], Path()) for a in (0, 8, 16)]
    merged = merge_all([from_json(to_json(s)) for s in parts])
    streamed.finish_fit(merged, ["s"])
    assert streamed.reference_ == memory.reference_  # type: ignore[attr-defined]


def test_the_dataset_repeats_other_inputs_and_targets_per_window():
    frame = table()
    p = pre(max_length=64, window=10, stride=5).fit(frame, ["s"], Path())
    windows = p.transform(frame, ["s"], Path())
    numeric = Transformed(torch.arange(4.0)[:, None], torch.tensor([True, False, True, True]))
    ds = TableDataset({"s": windows, "n": numeric}, {"y": torch.tensor([7, 8, 9, 6])})
    assert len(ds) == 10 and ds.n_rows == 4
    batch = ds.__getitems__(list(range(10)))
    assert batch["targets"]["y"].tolist() == [7, 8, 8, 8, 9, 9, 9, 9, 9, 6]
    assert batch["features"]["n"][:, 0].tolist() == [0, 1, 1, 1, 2, 2, 2, 2, 2, 3]
    assert batch["masks"]["n"].tolist() == [True, False, False, False] + [True] * 6
    other = p.transform(frame.iloc[[1, 0, 2, 3]], ["s"], Path())  # other windows per row
    with pytest.raises(ValueError, match="cut into different windows"):
        TableDataset({"s": windows, "t": other}, {})


def test_outputs_that_cannot_be_averaged_per_row_are_refused():
    windowed = {"s": pre(window=8)}
    check_windows(windowed, [SimpleNamespace(name="y", task="multiclass")])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"'s' is cut into windows.*caption \(caption\)"):
        check_windows(windowed, [SimpleNamespace(name="caption", task="caption")])  # type: ignore[list-item]
    check_windows({"s": pre()}, [SimpleNamespace(name="caption", task="caption")])  # type: ignore[list-item]
