"""Property test (issue 17): random bytes, base64, paths, hostile headers and odd values thrown
at every cell decoder give either finite tensors or a clear DataError naming the cell, never
another exception, and stay within a time and memory budget."""

import base64
import io
import resource
import struct
import zlib
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from polymodal.data.base import DataError
from polymodal.data.paths import FileAccess
from polymodal.data.preprocess import (
    AudioPreprocessor,
    CategoricalPreprocessor,
    ImagePreprocessor,
    NumericPreprocessor,
    TextPreprocessor,
)

BUDGET = settings(
    max_examples=60,
    deadline=timedelta(seconds=5),  # one example; a bomb or a 1 MB path would take minutes
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same examples on every run: a failure reproduces
)


def _wav(fmt: int, channels: int, rate: int, bits: int, body: bytes) -> bytes:
    """A WAV header with any field values (often impossible ones), then ``body``."""
    block = max(1, channels * bits // 8) & 0xFFFF
    fmt_chunk = struct.pack(
        "<HHIIHH", fmt, channels, rate, (rate * block) & 0xFFFFFFFF, block, bits
    )
    data = b"fmt " + struct.pack("<I", 16) + fmt_chunk + b"data" + struct.pack("<I", len(body))
    return b"RIFF" + struct.pack("<I", 4 + len(data) + len(body)) + b"WAVE" + data + body


def _png(width: int, height: int, depth: int, colour: int, body: bytes) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + payload))
        return struct.pack(">I", len(payload)) + kind + payload + crc

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(body))
            + chunk(b"IEND", b""))  # fmt: skip


wavs = st.builds(
    _wav,
    st.sampled_from([1, 3, 0xFFFE, 2, 0]),
    st.integers(0, 65535),
    st.integers(0, 2**32 - 1),
    st.sampled_from([0, 8, 16, 24, 32, 64, 7]),
    st.binary(max_size=4096),
)
pngs = st.builds(
    _png,
    st.integers(0, 2**31 - 1) | st.integers(1, 64),
    st.integers(0, 2**31 - 1) | st.integers(1, 64),
    st.sampled_from([1, 2, 4, 8, 16, 3]),
    st.sampled_from([0, 2, 3, 4, 6, 5]),
    st.binary(max_size=4096),
)


def _float_wav(samples: list[float], rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.asarray(samples, dtype=np.float32), rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def _image(values: list[float], mode: str) -> bytes:
    side = int(len(values) ** 0.5)
    arr = np.asarray(values[: side * side], dtype=np.float64).reshape(side, side)
    buf = io.BytesIO()
    if mode == "F":  # float TIFF: NaN, inf and any range
        Image.fromarray(arr.astype(np.float32)).save(buf, "TIFF")
    else:  # 16-bit greyscale PNG
        ints = np.nan_to_num(arr, nan=0, posinf=65535, neginf=0).clip(0, 65535).astype(np.uint16)
        Image.fromarray(ints).save(buf, "PNG")
    return buf.getvalue()


floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
float_wavs = st.builds(_float_wav, st.lists(floats, min_size=1, max_size=600),
                       st.sampled_from([8000, 16000, 44100, 1]))  # fmt: skip
images = st.builds(
    _image, st.lists(floats, min_size=1, max_size=256), st.sampled_from(["F", "I;16"])
)
raw_bytes = st.binary(max_size=4096)
base64_text = st.binary(max_size=2048).map(lambda b: base64.b64encode(b).decode())
paths = st.text(max_size=300) | st.sampled_from(
    ["/", ".", "..", "~", "/etc/passwd", "/dev/zero", "/proc/self/mem", "a/" * 5000, "x\0y",
     "../../../../etc/hostname", "data:image/png;base64,AAAA", "  ", "\ud800.png"]
)  # fmt: skip
file_cells = float_wavs | images | raw_bytes | base64_text | paths | wavs | pngs | st.none()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("property")


def _ok(values: torch.Tensor) -> None:
    assert torch.isfinite(values).all(), "a decoded value is NaN or infinite"


@pytest.mark.parametrize(
    "pre",
    [
        ImagePreprocessor(image_size=16),
        ImagePreprocessor(image_size=8, channels=1, max_pixels=100_000),
        AudioPreprocessor(sample_rate=8000, max_seconds=0.25, n_fft=200, hop_length=80, n_mels=16),
        AudioPreprocessor(sample_rate=16000, max_seconds=0.5, features="waveform"),
    ],
    ids=["image", "image-grey-capped", "audio-logmel", "audio-waveform"],
)
@BUDGET
@given(cell=file_cells)
def test_file_cells_decode_or_raise_data_error(folder, pre, cell):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    frame = pd.DataFrame({"c": pd.Series([cell], dtype=object)})
    try:
        _ok(pre.transform(frame, ["c"], folder, "t.csv", "raise", FileAccess()).values)
    except DataError as err:
        assert str(err).startswith("t.csv, row 0, column 'c': ")
    out = pre.transform(frame, ["c"], folder, "t.csv", "mask", FileAccess())  # never raises
    _ok(out.values)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB on Linux
    assert grown < 1_000_000, f"decoding one cell raised peak memory by {grown / 1024:.0f} MB"


numbers = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-(2**80), 2**80)
    | st.sampled_from(["inf", "-inf", "1e400", " ", "", "1,5", "nan", "\ud800", "0x10"])
    | st.text(max_size=8)
    | st.none()
)
oddities = (
    st.text(max_size=40)
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.binary(max_size=20)
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
    | st.none()
    | st.booleans()
)


@BUDGET
@given(train=st.lists(st.floats(-1e308, 1e308), min_size=1, max_size=8),
       cells=st.lists(numbers, min_size=1, max_size=12), clip=st.sampled_from([None, 5.0]),
       log=st.booleans())  # fmt: skip
def test_numeric_cells(train, cells, clip, log):
    pre = NumericPreprocessor(clip=clip, log_transform=log)
    pre.fit(pd.DataFrame({"c": train}), ["c"], Path())
    assert np.isfinite(pre.mean).all()
    try:
        out = pre.transform(pd.DataFrame({"c": pd.Series(cells, dtype=object)}), ["c"], Path())
    except DataError as err:
        assert ", column 'c': expected a number" in str(err)
        return
    _ok(out.values)


@pytest.mark.parametrize(
    "pre",
    [
        CategoricalPreprocessor(),
        TextPreprocessor(),
        TextPreprocessor(tokenizer="ngram_hash", buckets=1000),
    ],
    ids=["categorical", "text-word", "text-ngram"],
)
@BUDGET
@given(train=st.lists(oddities, min_size=1, max_size=8), cells=st.lists(oddities, min_size=1, max_size=12))  # fmt: skip
def test_categorical_and_text_cells(pre, train, cells):
    frame = pd.DataFrame({"c": pd.Series(["a b", *train], dtype=object)})
    try:
        pre.fit(frame, ["c"], Path())
        out = pre.transform(pd.DataFrame({"c": pd.Series(cells, dtype=object)}), ["c"], Path())
    except DataError as err:
        assert ", column 'c': expected" in str(err)
        return
    assert not out.values.is_floating_point() or torch.isfinite(out.values).all()
    assert len(out) == len(cells)
