"""Hostile and unusual cells at the preprocessor level: non-finite samples and pixels, high bit
depth and odd image modes, decompression bombs, paths outside the table's folder, duplicated
column headers (issue 17)."""

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
from PIL import Image, PngImagePlugin

from polymodal.config import InputConfig, OutputConfig, resolve_table_paths
from polymodal.data.base import DataError
from polymodal.data.io import read_table
from polymodal.data.paths import FileAccess
from polymodal.data.pipeline import TablePipeline
from polymodal.data.preprocess import AudioPreprocessor, ImagePreprocessor, NumericPreprocessor
from polymodal.data.source import TableSource

AUDIO = {"sample_rate": 8000, "max_seconds": 0.25, "n_fft": 200, "hop_length": 80, "n_mels": 16}


def _wave(n: int = 2000) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 8000)).astype(np.float32)


def _audio(folder: Path, cells: list, bad_cells: str = "raise", **access):
    pre = AudioPreprocessor(**AUDIO)
    frame = pd.DataFrame({"voice": cells})
    return pre.transform(frame, ["voice"], folder, "t.csv", bad_cells, FileAccess(**access))


# -- 1: non-finite samples and pixels ---------------------------------------------------------
@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_audio_samples_are_bad_cells(tmp_path, subtype, value):
    wave = _wave()
    wave[100] = value
    sf.write(tmp_path / "bad.wav", wave, 8000, subtype=subtype)
    sf.write(tmp_path / "ok.wav", _wave(), 8000, subtype=subtype)
    with pytest.raises(DataError, match=r"t.csv, row 1, column 'voice'.*bad.wav.*NaN or inf"):
        _audio(tmp_path, ["ok.wav", "bad.wav"])
    out = _audio(tmp_path, ["ok.wav", "bad.wav", None], "mask")
    assert out.present.tolist() == [True, False, False] and out.n_bad == 1
    assert torch.isfinite(out.values).all()


def test_samples_that_overflow_the_spectrogram_are_bad_cells(tmp_path):
    sf.write(tmp_path / "loud.wav", _wave() * 1e30, 8000, subtype="FLOAT")  # finite, but |x|^2
    with pytest.raises(DataError, match=r"row 0, column 'voice': loud.wav: values out of range"):
        _audio(tmp_path, ["loud.wav"])
    out = _audio(tmp_path, ["loud.wav"], "mask")
    assert out.n_bad == 1 and not out.present[0] and torch.isfinite(out.values).all()


def test_audio_fit_skips_non_finite_clips(tmp_path):
    wave = _wave()
    wave[5] = np.nan
    sf.write(tmp_path / "bad.wav", wave, 8000, subtype="FLOAT")
    sf.write(tmp_path / "ok.wav", _wave(), 8000)
    pre = AudioPreprocessor(**AUDIO).fit(
        pd.DataFrame({"v": ["ok.wav", "bad.wav"]}), ["v"], tmp_path
    )
    assert np.isfinite(pre.mean) and np.isfinite(pre.std)


def test_nan_float_image_is_a_bad_cell(tmp_path):
    Image.fromarray(np.full((8, 8), np.nan, dtype=np.float32)).save(tmp_path / "nan.tif")
    pre = ImagePreprocessor(image_size=8)
    frame = pd.DataFrame({"photo": ["nan.tif"]})
    with pytest.raises(DataError, match=r"row 0, column 'photo'.*nan.tif.*NaN or infinity"):
        pre.transform(frame, ["photo"], tmp_path, "t.csv")
    out = pre.transform(frame, ["photo"], tmp_path, "t.csv", "mask")
    assert out.n_bad == 1 and torch.isfinite(out.values).all()


def test_numeric_values_out_of_range_are_missing_never_nan():
    pre = NumericPreprocessor(clip=None).fit(pd.DataFrame({"a": [1.0, 2.0, 3.0]}), ["a"], Path())
    cells = [1e300, -np.inf, "inf", 2.0, None, "-1e400"]
    out = pre.transform(pd.DataFrame({"a": pd.Series(cells, dtype=object)}), ["a"], Path())
    assert torch.isfinite(out.values).all()
    assert out.present.tolist() == [False, False, False, True, False, False]
    huge = NumericPreprocessor().fit(pd.DataFrame({"a": [1e308, -1e308, 0.0]}), ["a"], Path())
    assert torch.isfinite(huge.transform(pd.DataFrame({"a": [5.0]}), ["a"], Path()).values).all()


# -- 2: bit depth, palette, alpha, CMYK, EXIF orientation ----------------------------------------
def _decode(img: Image.Image, fmt: str, channels: int = 1, **save) -> torch.Tensor:
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    pre = ImagePreprocessor(image_size=8, channels=channels, mean=[0.0] * channels,
                            std=[1.0] * channels)  # fmt: skip
    return pre.decode(buf.getvalue())  # (C, 8, 8) in [0, 1]


@pytest.mark.parametrize(
    ("mode", "fmt", "dtype"),
    [("I;16", "PNG", "<u2"), ("I;16B", "TIFF", ">u2"), ("I;16", "TIFF", "<u2")],
)
def test_16_bit_images_keep_their_brightness(mode, fmt, dtype):
    for level in (0.25, 0.5, 0.75):
        data = np.full((16, 16), round(level * 65535), dtype=dtype)
        x = _decode(Image.frombytes(mode, (16, 16), data.tobytes()), fmt)
        assert x.shape == (1, 8, 8) and x.mean().item() == pytest.approx(level, abs=0.01)
    gradient = (np.arange(256, dtype=np.uint32).reshape(16, 16) * 256).astype(dtype)
    x = _decode(Image.frombytes(mode, (16, 16), gradient.tobytes()), fmt, channels=3)
    assert x.shape == (3, 8, 8) and 0.4 < x.mean().item() < 0.6  # convert("L") made it ~1.0


def test_32_bit_and_float_images_are_scaled_by_their_range():
    ints = Image.fromarray(np.full((8, 8), 32768, dtype=np.int32))  # mode I, 16-bit values
    assert _decode(ints, "TIFF").mean().item() == pytest.approx(0.5, abs=0.01)
    for top in (1.0, 255.0, 65535.0):
        ramp = np.linspace(0, top, 64, dtype=np.float32).reshape(8, 8)
        x = _decode(Image.fromarray(ramp), "TIFF")  # mode F
        assert x.min().item() == pytest.approx(0.0, abs=0.02) and x.max().item() > 0.95
    odd = Image.fromarray(np.linspace(-5, 5, 64, dtype=np.float32).reshape(8, 8))
    x = _decode(odd, "TIFF")
    assert x.min().item() >= 0 and x.max().item() <= 1 and x.max().item() - x.min().item() > 0.9


def test_palette_alpha_cmyk_and_one_bit_images():
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0] * 256)
    assert _decode(pal, "PNG", transparency=0).min().item() == 1.0  # transparent: white
    assert _decode(pal, "PNG").max().item() == 0.0  # opaque black
    la = Image.new("LA", (8, 8), (0, 0))  # black, fully transparent
    assert _decode(la, "PNG").min().item() == 1.0
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # red
    red = _decode(cmyk, "JPEG", channels=3)
    assert red[0].mean() > 0.9 and red[1].mean() < 0.1 and red[2].mean() < 0.1
    one = Image.new("1", (8, 8), 1)
    assert _decode(one, "PNG").min().item() == 1.0 and _decode(one, "BMP").min().item() == 1.0


def test_exif_orientation_is_applied():
    img = Image.new("L", (32, 16), 0)
    img.paste(255, (16, 0, 32, 16))  # left half black, right half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    x = _decode(img, "PNG", exif=exif)[0]  # turned clockwise: the left (black) half on top
    assert x[:3].mean() < 0.1 and x[-3:].mean() > 0.9
    x = _decode(img.convert("RGB"), "JPEG", channels=3, exif=exif)
    assert x[:, :3].mean() < 0.1 and x[:, -3:].mean() > 0.9
    plain = _decode(img, "PNG")[0]
    assert plain[:, :3].mean() < 0.1 and plain[:, -3:].mean() > 0.9


# -- 6: decompression bombs ---------------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 12000) -> bytes:
    """A valid greyscale PNG of ``side`` x ``side`` zeros, compressed without ever holding it."""
    comp, row, parts = zlib.compressobj(9), b"\0" * (side + 1), []
    for _ in range(side):
        parts.append(comp.compress(row))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts))
            + _chunk(b"IEND", b""))  # fmt: skip


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    bomb = png_bomb()
    assert len(bomb) < 300_000  # 144 Mpx in ~140 KB
    (tmp_path / "bomb.png").write_bytes(bomb)

    def no_decoding(self):
        raise AssertionError("the bomb's pixels were decoded")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decoding)
    pre = ImagePreprocessor(image_size=16)
    frame = pd.DataFrame({"photo": ["bomb.png", bomb]})
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"row 0, column 'photo'.*12000x12000 = 144,000,000 pixels"):
        pre.transform(frame, ["photo"], tmp_path, "t.csv")
    out = pre.transform(frame, ["photo"], tmp_path, "t.csv", "mask")
    assert out.n_bad == 2 and not out.present.any()
    assert time.perf_counter() - start < 10  # a guard against a hang, not a benchmark


def test_pixel_cap_is_an_option_and_jpegs_decode_at_reduced_scale():
    img = Image.new("L", (2000, 2000), 128)
    small = ImagePreprocessor(image_size=16, channels=1, max_pixels=500_000)
    with pytest.raises(ValueError, match="over the limit of 500,000"):
        small.decode(_bytes(img, "PNG"))
    jpeg = small.decode(_bytes(img, "JPEG"))  # draft: decoded at 1/8 scale, 250x250
    assert jpeg.shape == (1, 16, 16) and torch.isfinite(jpeg).all()
    assert ImagePreprocessor(image_size=16, max_pixels=5_000_000).decode(_bytes(img, "PNG")).shape
    state = small.state_dict()
    assert state["options"]["max_pixels"] == 500_000
    legacy = {**state, "options": {k: v for k, v in state["options"].items() if k != "max_pixels"}}
    assert ImagePreprocessor.from_state(legacy).max_pixels == 40_000_000


def _bytes(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def test_only_raster_formats_are_opened(tmp_path):
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n"
    with pytest.raises(Exception, match="cannot identify image file"):
        ImagePreprocessor().decode(eps)  # never handed to Ghostscript


def test_hostile_audio_headers_are_bounded(tmp_path):
    sf.write(tmp_path / "many.wav", np.zeros((10, 100), dtype=np.float32), 8000)  # 100 channels
    with pytest.raises(DataError, match="expected at most 768000 Hz and 64 channels"):
        _audio(tmp_path, ["many.wav"])
    long = np.tile(_wave(), 2000)  # 500 s: only max_seconds are read
    sf.write(tmp_path / "long.wav", long, 8000)
    reads = []
    real = sf.SoundFile.read
    sf.SoundFile.read = lambda self, frames=-1, **kw: (
        reads.append(frames) or real(self, frames, **kw)
    )
    try:
        assert torch.isfinite(_audio(tmp_path, ["long.wav"]).values).all()
    finally:
        sf.SoundFile.read = real
    assert reads and 0 < reads[0] <= 0.25 * 8000 + 64


# -- 7: paths outside the table's folder ----------------------------------------------------------
@pytest.fixture
def tree(tmp_path):
    """table/ holds the table and ok.wav; outside/ a file the table must not reach."""
    (tmp_path / "table" / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    sf.write(tmp_path / "table" / "sub" / "ok.wav", _wave(), 8000)
    sf.write(tmp_path / "outside" / "secret.wav", _wave(), 8000)
    (tmp_path / "table" / "link.wav").symlink_to(tmp_path / "outside" / "secret.wav")
    return tmp_path


@pytest.mark.parametrize("cell", ["../outside/secret.wav", "ABS", "link.wav", "sub/../../outside/secret.wav", "~/x.wav"])  # fmt: skip
def test_cells_outside_the_table_folder_are_refused(tree, cell):
    cell = str(tree / "outside" / "secret.wav") if cell == "ABS" else cell
    folder = tree / "table"
    with pytest.raises(
        DataError,
        match=r"t.csv, row 1, column 'voice': .* is outside the table's folder .*data.allow_outside: true.*data.roots",
    ):
        _audio(folder, ["sub/ok.wav", cell])
    out = _audio(folder, ["sub/ok.wav", cell], "mask")
    assert out.present.tolist() == [True, False] and out.n_bad == 1
    if cell != "~/x.wav":
        assert _audio(folder, [cell], allow_outside=True).present.all()
        assert _audio(folder, [cell], roots=(str(tree / "outside"),)).present.all()
        assert _audio(folder, [str(folder / "sub" / "ok.wav")]).present.all()  # absolute, inside


def test_long_path_cells_are_refused_before_resolving(tree):
    cell = "a/" * 500_000  # 1 MB: resolving it would cost minutes
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"a path of 1,000,000 characters; expected a file path"):
        _audio(tree / "table", [cell])
    assert time.perf_counter() - start < 10


def test_pipeline_keeps_the_setting(tree):
    inputs = [InputConfig(name="voice", type="audio", preprocessing=AUDIO)]
    outputs = [OutputConfig(name="y", task="regression")]
    frame = pd.DataFrame({"voice": ["sub/ok.wav", "../outside/secret.wav"], "y": [1.0, 2.0]})
    strict = TablePipeline(inputs, outputs, {"voice": AUDIO})
    strict.fit(frame, tree / "table", "t.csv")  # the fit's clip sample skips refused cells
    with pytest.raises(DataError, match="outside the table's folder"):
        strict.dataset(frame, tree / "table", "t.csv")
    roomy = TablePipeline(inputs, outputs, {"voice": AUDIO}, roots=[str(tree / "outside")])
    roomy.fit(frame, tree / "table", "t.csv")
    state = roomy.state_dict()
    assert state["allow_outside"] is False and state["roots"] == [str(tree / "outside")]
    again = TablePipeline.from_state(state, inputs, outputs)
    assert again.transform_inputs(frame, tree / "table", "t.csv")["voice"].present.all()
    old = {k: v for k, v in state.items() if k not in ("allow_outside", "roots")}
    with pytest.raises(DataError, match="outside"):  # models saved before: the safe default
        TablePipeline.from_state(old, inputs, outputs).transform_inputs(frame, tree / "table")


def test_config_roots_are_relative_to_the_config_file(tmp_path):
    data = {"data": {"train": "t.csv", "roots": ["media", "/abs/media", "~/m"]}}
    tables = resolve_table_paths(data, tmp_path)["data"]
    assert tables["roots"] == [str(tmp_path / "media"), "/abs/media", "~/m"]


# -- 10: duplicated column headers ----------------------------------------------------------------
def test_duplicated_headers_are_errors(tmp_path):
    (tmp_path / "t.csv").write_text("a,a,b\n1,2,3\n")
    (tmp_path / "t.tsv").write_text("a\tb\tb\n1\t2\t3\n")
    (tmp_path / "t.jsonl").write_text('{"a": 1, "b": 2, "a": 3}\n{"a": 1, "b": 2}\n')
    pq.write_table(pa.table([[1], [2]], names=["x", "x"]), tmp_path / "t.parquet")
    for name, column in (("t.csv", "a"), ("t.tsv", "b"), ("t.jsonl", "a"), ("t.parquet", "x")):
        with pytest.raises(DataError, match=rf"{name}: column '{column}' appears 2 times"):
            read_table(tmp_path / name)
    (tmp_path / "fine.csv").write_text(",a.1,a\n0,1,2\n")  # a real "a.1" and an index column
    assert list(read_table(tmp_path / "fine.csv").columns)[1:] == ["a.1", "a"]
    with pytest.raises(DataError, match=r"t.parquet: column 'x' appears 2 times"):
        TableSource(tmp_path / "t.parquet")
    for name, says in (("t.csv", "multiple columns named a"), ("t.jsonl", "specified twice")):
        with pytest.raises(DataError, match=rf"{name}: cannot be read as .*{says}"):
            TableSource(tmp_path / name)
