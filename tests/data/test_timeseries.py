"""The timeseries preprocessor: every cell format (inline lists, numpy arrays, JSON text; CSV,
TSV, .npy and Parquet files, as paths or bytes), channel selection, standardisation, crop / pad /
resample, gaps and empty series, every kind of bad cell (an error naming file, row and column, or
masked and counted), a streamed fit equal to the in-memory one, augmentation."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import polymodal.data  # noqa: F401  (registers preprocessors)
from polymodal import registry
from polymodal.data.base import DataError, Preprocessor
from polymodal.data.paths import FileAccess
from polymodal.data.stats import from_json, merge_all, to_json

NAMES = ["ax", "ay", "az"]


def series(n: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(n, channels)) * [1.0, 10.0, 0.1][:channels] + [0.0, 5.0, -1.0][:channels]
    )


def pre(**options: object) -> Preprocessor:
    return registry.build("preprocessor", {"type": "timeseries", **options})


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    a, b = series(10, 1), series(25, 2)
    pd.DataFrame(a, columns=NAMES).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame(b, columns=NAMES).to_csv(tmp_path / "b.tsv", index=False, sep="\t")
    np.save(tmp_path / "a.npy", a)
    pq.write_table(pa.Table.from_pandas(pd.DataFrame(b, columns=NAMES)), tmp_path / "b.parquet")
    pd.DataFrame(a[:, ::-1], columns=NAMES[::-1]).to_csv(tmp_path / "reordered.csv", index=False)
    return tmp_path


def rows(t: object) -> torch.Tensor:
    return t.rows(torch.arange(len(t)))  # type: ignore[attr-defined]


def test_every_cell_format_gives_the_same_tensor(folder):
    a, b = series(10, 1), series(25, 2)
    files = pd.DataFrame({"s": ["a.csv", "b.tsv", "a.npy", "b.parquet", "reordered.csv"]})
    inline = pd.DataFrame(
        {
            "s": [
                a.tolist(),  # a list of steps, each a list of channel values
                np.array([np.array(step) for step in b], dtype=object),  # Parquet via pandas
                a,  # a 2-D float array
                json.dumps(b.tolist()),  # JSON text (a CSV table's way)
                npy_bytes(a),  # bytes, as an upload or base64 cell arrives
            ]
        }
    )
    p = pre()
    p.fit(files, ["s"], folder)
    assert p.n_channels == 3 and p.names == NAMES
    got_files, got_inline = (
        rows(p.transform(files, ["s"], folder)),
        rows(p.transform(inline, ["s"], folder)),
    )
    assert got_files.shape == (5, 25, 4) and got_inline.shape == (5, 25, 4)
    assert torch.allclose(got_files[[0, 1, 2, 3, 0]], got_inline, atol=1e-5)
    assert torch.equal(got_files[4], got_files[0])  # a header in another order is reordered
    assert got_files[0, :10, -1].eq(1).all() and got_files[0, 10:].eq(0).all()  # padded, masked


def test_standardised_with_the_training_rows_moments(folder):
    a, b = series(10, 1), series(25, 2)
    frame = pd.DataFrame({"s": [a.tolist(), b.tolist(), b.tolist(), None]})
    p = pre()
    p.fit(frame, ["s"], folder)
    steps = np.concatenate([a, b, b])  # every row counts once, the repeated one twice
    assert np.allclose(p.mean, steps.mean(0)) and np.allclose(p.std, steps.std(0, ddof=1))
    x = rows(p.transform(frame, ["s"], folder))
    assert torch.allclose(x[1, :, :3], torch.tensor((b - p.mean) / p.std, dtype=torch.float32))
    state = json.loads(json.dumps(p.state_dict()))
    again = Preprocessor.from_state(state)
    assert torch.equal(rows(again.transform(frame, ["s"], folder)), x)


def test_channels_select_and_order_by_name(folder):
    frame = pd.DataFrame({"s": ["a.csv", "b.parquet"]})
    p = pre(channels=["az", "ax"])
    p.fit(frame, ["s"], folder)
    x = rows(p.transform(frame, ["s"], folder))
    assert x.shape[-1] == 3 and p.spec()["in_channels"] == 2
    expected = (series(10, 1)[:, [2, 0]] - p.mean) / p.std
    assert torch.allclose(x[0, :10, :2], torch.tensor(expected, dtype=torch.float32), atol=1e-5)
    with pytest.raises(
        DataError, match=r"t.csv, row 0, column 's'.*a.npy.*expected 2 \['az', 'ax'\]"
    ):
        p.transform(pd.DataFrame({"s": ["a.npy"]}), ["s"], folder, source="t.csv")


@pytest.mark.parametrize(
    ("crop", "kept"), [("center", slice(3, 7)), ("start", slice(0, 4)), ("end", slice(6, 10))]
)
def test_longer_series_are_cropped(crop, kept):
    a = series(10, 1)
    frame = pd.DataFrame({"s": [a.tolist()]})
    p = pre(max_length=4, crop=crop)
    p.fit(frame, ["s"], Path())
    x = rows(p.transform(frame, ["s"], Path()))
    assert x.shape == (1, 4, 4)
    assert torch.allclose(
        x[0, :, :3], torch.tensor((a[kept] - p.mean) / p.std, dtype=torch.float32)
    )


def test_resample_to_a_fixed_length_over_real_steps():
    ramp = np.arange(11, dtype=float)[:, None]  # one channel: 0..10
    gap = ramp.copy()
    gap[5] = np.nan
    p = pre(resample=6)
    p.fit(pd.DataFrame({"s": [ramp.tolist()]}), ["s"], Path())
    x = rows(
        p.transform(pd.DataFrame({"s": [ramp.tolist(), gap.tolist(), [[1.0]]]}), ["s"], Path())
    )
    assert x.shape == (3, 6, 2) and x[..., -1].eq(1).all()
    back = x[0, :, 0].numpy() * p.std[0] + p.mean[0]
    assert np.allclose(back, [0, 2, 4, 6, 8, 10], atol=1e-5)
    assert torch.allclose(x[1], x[0], atol=1e-5)  # the gap interpolated over


def test_gaps_are_masked_and_empty_series_are_missing():
    a = series(6, 1)
    gappy = a.copy()
    gappy[2] = np.nan  # a whole step missing: masked
    gappy[4, 1] = np.nan  # one value missing: the channel's mean
    frame = pd.DataFrame(
        {"s": [a.tolist(), gappy.tolist(), [], [[None, None, None]] * 3, None, float("nan")]}
    )
    p = pre()
    p.fit(frame, ["s"], Path())
    t = p.transform(frame, ["s"], Path())
    x = rows(t)
    assert t.present.tolist() == [True, True, False, False, False, False] and t.n_bad == 0
    assert x[1, :, -1].tolist() == [1, 1, 0, 1, 1, 1] and x[1, 2].eq(0).all()
    assert x[1, 4, 1] == 0 and x[1, 4, 0] == x[0, 4, 0]
    assert x[2:].eq(0).all()  # missing rows: all zero, all masked


def bad_cases(folder: Path) -> dict[str, tuple[object, str]]:
    (folder / "ragged.csv").write_text("ax,ay,az\n1,2,3\n4,5\n")
    (folder / "words.csv").write_text("ax,ay,az\n1,2,3\n4,five,6\n")
    (folder / "inf.csv").write_text("ax,ay,az\n1,2,3\n4,inf,6\n")
    (folder / "two.csv").write_text("ax,ay\n1,2\n")
    (folder / "corrupt.npy").write_bytes(b"\x93NUMPY garbage")
    (folder / "empty.csv").write_bytes(b"")
    np.save(folder / "long.npy", np.zeros((101, 3)))
    np.save(folder / "objects.npy", np.array(["a", "b"]))
    return {
        "missing file": ("nope.csv", r"nope.csv.*expected a series file.*FileNotFoundError"),
        "unreadable file": ("corrupt.npy", r"corrupt.npy.*expected a series file"),
        "empty file": ("empty.csv", r"empty.csv.*an empty file; expected a header row"),
        "ragged csv": ("ragged.csv", r"ragged.csv.*ragged CSV: line 3 has 2 fields, the header 3"),
        "non-numeric csv": ("words.csv", r"line 3, column 'ay': 'five' is not a number"),
        "infinite value": ("inf.csv", r"step 1, channel 1: inf; expected finite numbers"),
        "wrong channels (file)": (
            "two.csv",
            r"channels \['ax', 'ay'\]; expected \['ax', 'ay', 'az'\]",
        ),
        "wrong channels (inline)": ([[1.0, 2.0]], r"2 channel\(s\) per step; expected 3"),
        "ragged inline": ([[1, 2, 3], [4, 5]], r"ragged series: step 1 has 2 values, step 0 has 3"),
        "non-numeric inline": (
            [[1, 2, 3], [4, "x", 6]],
            r"step 1, channel 1: 'x' \(str\) is not a number",
        ),
        "mixed inline": ([[1, 2, 3], 4], r"step 0 is a list but step 1 is not"),
        "nested inline": ([[[1, 2, 3]]], r"shape \(1, 1, 3\); expected \(time steps, channels\)"),
        "bad json": ("[1, 2,", r"text starting with '\[' that is not JSON"),
        "too long": (
            "long.npy",
            r"101 time steps; expected at most 100 \(preprocessing max_steps\)",
        ),
        "not numbers (npy)": ("objects.npy", r"objects.npy.*expected numbers"),
        "outside the folder": ("../outside.csv", r"outside the table's folder.*data.allow_outside"),
    }


def test_each_bad_cell_names_file_row_and_column_or_is_masked(folder):
    cases = bad_cases(folder)
    (folder.parent / "outside.csv").write_text("ax,ay,az\n1,2,3\n")
    p = pre(max_steps=100)
    p.fit(pd.DataFrame({"s": ["a.csv", "b.parquet"]}), ["s"], folder)
    access = FileAccess.of(False)
    for name, (cell, message) in cases.items():
        frame = pd.DataFrame({"s": ["a.csv", cell]}, index=[3, 7])
        with pytest.raises(DataError, match=r"t.csv, row 7, column 's'.*" + message) as err:
            p.transform(frame, ["s"], folder, source="t.csv", access=access)
        assert "\n" not in str(err.value), name
        out = p.transform(frame, ["s"], folder, source="t.csv", bad_cells="mask", access=access)
        assert out.present.tolist() == [True, False] and out.n_bad == 1, name


def test_file_size_limit_reads_nothing(folder):
    p = pre(max_file_mb=1e-5)  # ~10 bytes
    p.fit(pd.DataFrame({"s": [[[1.0, 2.0, 3.0]]]}), ["s"], folder)
    with pytest.raises(DataError, match=r"row 0, column 's'.*a.npy.*bytes; expected at most 10"):
        p.transform(pd.DataFrame({"s": ["a.npy"]}), ["s"], folder)


def test_fit_keeps_the_commonest_channels_and_needs_some_series(folder):
    frame = pd.DataFrame(
        {"s": ["a.csv", "b.parquet", "a.npy", "two.csv", "nope.csv", [[1.0, 2.0]]]}
    )
    (folder / "two.csv").write_text("ax,ay\n1,2\n")
    p = pre()
    p.fit(frame, ["s"], folder)  # bad cells are left to the transform, which names their row
    assert p.n_channels == 3 and p.names == NAMES
    with pytest.raises(DataError, match=r"<train>, column 's': none of the 2 training rows"):
        pre().fit(pd.DataFrame({"s": [None, []]}), ["s"], folder)


def test_streamed_fit_equals_the_in_memory_fit(folder):
    cells = [series(5 + i, i).tolist() for i in range(40)] + ["a.csv", "b.tsv", None]
    frame = pd.DataFrame({"s": cells})
    memory = pre(reference_rows=8)
    memory.fit(frame, ["s"], folder)
    parts = [
        to_json(pre(reference_rows=8).partial_fit(frame.iloc[a:b], ["s"], folder))
        for a, b in [(0, 7), (7, 8), (8, 30), (30, 43)]
    ]  # chunks of a stream (or processes), merged through JSON as between processes
    streamed = pre(reference_rows=8).finish_fit(merge_all([from_json(p) for p in parts]), ["s"])
    a, b = memory.fitted_state(), streamed.fitted_state()
    assert a["names"] == b["names"] and a["n_channels"] == b["n_channels"]
    assert np.allclose(a["mean"], b["mean"], rtol=1e-12) and np.allclose(a["std"], b["std"])
    assert memory.spec() == streamed.spec()  # the same reference sample, whatever the chunks
    reference = memory.spec()["series_reference"]
    assert len(reference) == 8 and all(len(r[0]) == 3 for r in reference)


def test_augment_changes_real_steps_only():
    p = pre(augment=True, time_mask=0.3, crop_min=0.5)
    frame = pd.DataFrame(
        {"s": [series(30, i).tolist() for i in range(6)] + [series(5).tolist(), None]}
    )
    p.fit(frame, ["s"], Path())
    x = rows(p.transform(frame, ["s"], Path()))
    a = p.augment(x.clone(), torch.Generator().manual_seed(0))
    b = p.augment(x.clone(), torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape and not torch.equal(a, x)
    real, kept = x[..., -1], a[..., -1]
    assert set(kept.unique().tolist()) <= {0.0, 1.0}
    assert (kept.sum(1) >= 0.5 * 0.7 * real.sum(1) - 1).all() and (kept.sum(1) <= real.sum(1)).all()
    assert a[..., :-1][kept == 0].eq(0).all()  # padding and masked steps stay zero
    assert a[-1].eq(0).all()  # a missing row stays empty
    assert torch.equal(pre().augment(x), x)  # augment off: the identity


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"crop": "middle"}, "crop must be one of center, start, end"),
        ({"max_length": 0}, "max_length must be at least 1"),
        ({"resample": 1}, "resample must be at least 2"),
        ({"channels": ["a", "a"]}, "channels must be distinct column names"),
        ({"time_mask": 1.0}, "time_mask must be in"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        pre(**options)


def test_init_infers_series_columns(folder):
    from polymodal.data.infer import infer_modality, skip_reason

    (folder / "meta.csv").write_text("name,colour\nshirt,red\n")
    n = 6
    frame = pd.DataFrame(
        {
            "steps": [series(5 + i, i).tolist() for i in range(n)],  # lists of channel values
            "arrays": [
                np.array([np.array(s) for s in series(4, i)], dtype=object) for i in range(n)
            ],
            "flat": [series(7, i)[:, 0].tolist() for i in range(n)],  # one channel
            "files": ["a.csv", "b.tsv", "a.npy", "b.parquet", "a.csv", "a.npy"],
            "absent": ["x.csv"] * n,  # paths to files that are not there
            "tables": ["meta.csv"] * n,  # CSV files that hold no numbers
            "words": [["red", "blue"]] * n,  # lists of labels: not a series
        }
    )
    kinds = {c: infer_modality(frame[c], folder) for c in frame.columns}
    assert kinds == {
        "steps": "timeseries", "arrays": "timeseries", "flat": "timeseries",
        "files": "timeseries", "absent": None, "tables": None, "words": None,
    }  # fmt: skip
    assert "not numeric series" in skip_reason(frame["words"], folder)
    assert "file paths of a kind no input type reads (.csv)" in skip_reason(frame["tables"], folder)


@pytest.mark.parametrize(
    ("preset", "encoder", "augment"),
    [("fast", "series_cnn", False), ("medium", "series_cnn", True), ("best", "minirocket", None)],
)
def test_presets_choose_a_series_encoder_and_length(folder, preset, encoder, augment):
    from polymodal.data.presets import starter

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "signal": [series(int(n), i).tolist() for i, n in enumerate(rng.integers(20, 40, 30))],
            "label": ["a", "b", "c"] * 10,
        }
    )
    cfg = starter(frame, "label", folder, preset).config
    (inp,) = cfg["inputs"]
    assert inp["type"] == "timeseries" and inp["encoder"]["type"] == encoder
    longest = max(map(len, frame["signal"]))  # 25 % headroom, a multiple of 8
    assert inp["preprocessing"]["max_length"] == -(-int(longest * 1.25) // 8) * 8 >= longest
    if preset == "best":  # MiniRocket's own classifier: a ridge head is the whole fit
        assert cfg["trainer"]["head_solver"] == "ridge" and cfg["trainer"]["epochs"] == 0
        frame["size"] = rng.normal(size=30).round(1)  # a trainable input beside it: gradient
        trainer = starter(frame, "label", folder, preset).config["trainer"]
        assert "head_solver" not in trainer and trainer["epochs"] >= 3
    else:
        assert "head_solver" not in cfg["trainer"]
    assert inp["preprocessing"].get("augment") == augment
    if preset == "fast":
        assert inp["encoder"]["channels"] == [16, 32]


def test_robustness_noise_keeps_the_step_mask():
    p = pre()
    frame = pd.DataFrame({"s": [series(10, 1).tolist(), series(4, 2).tolist(), None]})
    p.fit(frame, ["s"], Path())
    x = rows(p.transform(frame, ["s"], Path()))
    noisy = p.noise(x, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(noisy[..., -1], x[..., -1])  # no step added or dropped
    real = x[..., -1] > 0
    assert not torch.equal(noisy[real], x[real]) and torch.equal(noisy[~real], x[~real])


def test_mirror_flips_channels_of_the_chosen_rows_exactly(folder):
    """Rows whose ``side`` is left are fitted and transformed as the series with ``ay``
    negated; the same file read by a left and a right row gives two tensors."""
    frame = pd.DataFrame({"s": ["a.csv", "b.tsv", "a.csv", "b.tsv"],
                          "side": ["left", "right", "right", None]})  # fmt: skip
    option = {"column": "side", "value": "left", "negate": ["ay"]}
    mirrored = pre(mirror=option).fit(frame, ["s"], folder)
    a, b = pd.read_csv(folder / "a.csv").to_numpy(), pd.read_csv(folder / "b.tsv", sep="\t")
    flipped = a * [1, -1, 1]
    inline = pd.DataFrame(
        {"s": [flipped.tolist(), b.to_numpy().tolist(), a.tolist(), b.to_numpy().tolist()]}
    )
    plain = pre().fit(inline, ["s"], folder)
    assert np.allclose(mirrored.mean, plain.mean) and np.allclose(mirrored.std, plain.std)
    got, want = (
        rows(mirrored.transform(frame, ["s"], folder)),
        rows(plain.transform(inline, ["s"], folder)),
    )
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got[0], got[2])  # one file, two sides
    state = json.loads(json.dumps(mirrored.state_dict()))
    again = Preprocessor.from_state(state)
    assert torch.equal(rows(again.transform(frame, ["s"], folder)), got)


def test_mirror_errors_name_what_is_wrong(folder):
    frame = pd.DataFrame({"s": ["a.csv"], "side": ["left"]})
    with pytest.raises(DataError, match=r"<train>, column 's': .* no channel 'wx' to negate"):
        pre(mirror={"column": "side", "value": "left", "negate": ["wx"]}).fit(frame, ["s"], folder)
    with pytest.raises(ValueError, match=r"expected \{column, value, negate\}"):
        pre(mirror={"column": "side", "negate": ["ax"]})
    with pytest.raises(ValueError, match="distinct channel names or positions"):
        pre(mirror={"column": "side", "value": "left", "negate": ["ax", "ax"]})
    fitted = pre(mirror={"column": "side", "value": "left", "negate": [0]}).fit(
        frame, ["s"], folder
    )
    with pytest.raises(DataError, match="<table>: missing column 'side', which timeseries"):
        fitted.transform(frame[["s"]], ["s"], folder)


@pytest.mark.parametrize(
    ("steps", "length"), [(1, 8), (24, 32), (26, 32), (27, 40), (800, 1000), (2618, 1024)]
)
def test_series_length_leaves_headroom_past_the_longest_sampled_series(steps, length):
    from polymodal.data.presets import series_length

    assert series_length(steps) == length


@pytest.mark.parametrize(
    ("steps", "window"), [(900, None), (1024, None), (1025, 256), (2618, 256), (50_000, 256)]
)
def test_init_cuts_series_past_1024_steps_into_windows(steps, window):
    """Long recordings are windowed (a row's prediction averages its windows), not cropped."""
    from polymodal.data.presets import series_preprocessing

    pre = series_preprocessing(steps)
    assert pre.get("window") == window
    if window:
        assert pre["stride"] == window // 2
        assert pre["max_length"] == min(-(-int(steps * 1.25) // 8) * 8, 8192)
    else:
        assert (
            pre["max_length"] == min(-(-int(steps * 1.25) // 8) * 8, 1024) and "stride" not in pre
        )


def test_init_windows_one_long_series_input_and_only_for_voting_outputs(folder):
    """Two windowed inputs would cut their rows differently, and a caption cannot average its
    windows: the second long series, or every one under a caption output, is cropped."""
    from polymodal.data.presets import starter

    long = [series(1500 + 10 * i, i).tolist() for i in range(12)]
    frame = pd.DataFrame({"a": long, "b": long[::-1], "label": ["x", "y"] * 6})
    cfg = starter(frame, "label", folder, "medium").config
    pres = {i["name"]: i["preprocessing"] for i in cfg["inputs"] if i["type"] == "timeseries"}
    assert pres["a"]["window"] == 256 and pres["a"]["max_length"] >= 1610
    assert "window" not in pres["b"] and pres["b"]["max_length"] == 1024
    from polymodal import Predictor

    Predictor(cfg)  # the config validates
