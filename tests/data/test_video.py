"""The video preprocessor on small generated clips: which frames are sampled (uniform, fps,
short clips, frame folders), sizes and channels, clip-level augmentation, the sound track read
by an audio input, every kind of bad clip (raised with file, row and column, or masked), hostile
files (limits, playlists, paths outside the table's folder), init and presets; and every real
clip in ../shared/data/video decoded through the input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from polymodal import registry
from polymodal.data.base import DataError
from polymodal.data.infer import infer_modality, sniff
from polymodal.data.paths import FileAccess
from polymodal.data.presets import starter
from tests.tables import add_video, make_table
from tests.videos import moving_square, tone, write_clip, write_frame_folder

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "video"


def video(**opts):
    return registry.build("preprocessor", {"type": "video", "image_size": 8, **opts})


def greys(n: int, size: int = 16) -> np.ndarray:
    """n frames, frame k a flat grey of level 20 * k (easy to tell apart after compression)."""
    return (
        np.repeat(np.arange(n, dtype=np.uint8)[:, None, None, None] * 20, size, 1)
        .repeat(size, 2)
        .repeat(3, 3)
    )


def levels(pre, cells, folder: Path) -> list[int]:
    """The grey level of each sampled frame of the first cell, as its frame number."""
    out = pre.transform(pd.DataFrame({"c": cells}), ["c"], folder)
    pixels = (out.rows(torch.arange(1))[0] * 0.5 + 0.5) * 255  # (T, C, H, W) back to 0..255
    return [round(float(f.mean()) / 20) for f in pixels]


def test_uniform_fps_short_and_folder_sampling(tmp_path):
    write_clip(tmp_path / "twelve.mp4", greys(12), fps=8)
    write_clip(tmp_path / "three.mp4", greys(3), fps=8)
    write_frame_folder(tmp_path / "frames", greys(12))  # frame1.png ... frame12.png
    assert levels(video(num_frames=4), ["twelve.mp4"], tmp_path) == [1, 4, 7, 10]  # centres
    # 4 frames a second from the middle second of 1.5 s: 0.375, 0.625, 0.875, 1.125 s
    assert levels(video(num_frames=4, fps=4), ["twelve.mp4"], tmp_path) == [3, 5, 7, 9]
    assert levels(video(num_frames=6), ["three.mp4"], tmp_path) == [0, 0, 1, 1, 2, 2]
    assert levels(video(num_frames=4, fps=8), ["three.mp4"], tmp_path) == [0, 1, 2, 2]  # held
    assert levels(video(num_frames=4), ["frames"], tmp_path) == [1, 4, 7, 10]  # natural order


def test_size_crop_squash_channels_and_bytes(tmp_path):
    wide = np.zeros((2, 16, 32, 3), dtype=np.uint8)
    wide[:, :, :8] = 255  # a white left quarter: cropped away, squashed in
    write_clip(tmp_path / "wide.mp4", wide)
    frame = pd.DataFrame({"c": ["wide.mp4", (tmp_path / "wide.mp4").read_bytes()]})
    crop = video(num_frames=2).transform(frame, ["c"], tmp_path).rows(torch.arange(2))
    squash = video(num_frames=2, resize="squash").transform(frame, ["c"], tmp_path)
    assert crop.shape == (2, 2, 3, 8, 8) and torch.equal(crop[0], crop[1])  # bytes = the file
    assert float(crop[0].max()) < -0.8 and float(squash.values[1, 0, :, :, 0].min()) > 0.8
    grey = video(num_frames=2, channels=1).transform(frame, ["c"], tmp_path)
    assert grey.values.shape[2] == 1


def test_augmentation_is_one_draw_per_clip_and_keeps_frame_order():
    pre = video(num_frames=4, augment=True, color_jitter=0.3)
    same = torch.rand(2, 1, 3, 8, 8).repeat(1, 4, 1, 1, 1)  # each clip: one frame, 4 times
    out = pre.augment(same, torch.Generator().manual_seed(0))
    assert not torch.allclose(out, same)
    assert torch.allclose(out, out[:, :1].expand_as(out), atol=1e-6)  # every frame alike
    ramp = torch.arange(8.0).view(1, 8, 1, 1, 1).expand(16, 8, 3, 8, 8)
    plain = video(num_frames=8, augment=True, crop_scale_min=1.0, flip=False, color_jitter=0.0)
    order = plain.augment(ramp, torch.Generator().manual_seed(1))[:, :, 0, 0, 0]  # (16, 8)
    assert (order.diff(dim=1) >= 0).all() and ((order - torch.arange(8.0)).abs() <= 1).all()
    assert not torch.equal(order, ramp[:, :, 0, 0, 0])


BAD = {  # name -> (how to make it, what the error says)
    "missing.mp4": (None, "No such file"),
    "text.mp4": (lambda p: p.write_text("just some notes\n"), "video container"),
    "noise.mkv": (lambda p: p.write_bytes(os.urandom(3000)), "video container"),
    "empty.mp4": (lambda p: p.write_bytes(b""), "an empty file"),
    "sound_only.mkv": ("sound_only", "no video stream"),
    "no_frames.mkv": ("no_frames", "no frames"),
    "truncated.mp4": ("truncated", "video container|could not be decoded"),
    "playlist.mp4": ("playlist", "video container"),
}


def _make_bad(folder: Path, name: str, how) -> None:
    path = folder / name
    if how is None:
        return
    if callable(how):
        how(path)
    elif how in ("sound_only", "no_frames"):  # a sound track; a video stream without frames
        import av

        with av.open(str(path), "w") as out:
            if how == "no_frames":
                picture = out.add_stream("libx264", rate=8)
                picture.width = picture.height = 16
                picture.pix_fmt = "yuv420p"
            stream = out.add_stream("aac", rate=8000)
            frame = av.AudioFrame.from_ndarray(tone(0)[None, :1024], format="fltp", layout="mono")
            frame.sample_rate = 8000
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                out.mux(packet)
    elif how == "truncated":
        write_clip(folder / "whole.mp4", moving_square(0, 12))
        data = (folder / "whole.mp4").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:  # an HLS playlist named .mp4, pointing at a real clip: FFmpeg must not follow it
        write_clip(folder / "real.mp4", moving_square(0))
        path.write_text(f"#EXTM3U\n#EXTINF:1,\n{folder / 'real.mp4'}\n#EXT-X-ENDLIST\n")


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_clips_name_file_row_and_column_or_are_masked(tmp_path, name):
    how, why = BAD[name]
    _make_bad(tmp_path, name, how)
    write_clip(tmp_path / "ok.mp4", moving_square(1))
    frame = pd.DataFrame({"clip": ["ok.mp4", name]}, index=[7, 8])
    pre = video(num_frames=3)
    with pytest.raises(DataError, match=rf"t\.csv, row 8, column 'clip'.*{name}.*({why})"):
        pre.transform(frame, ["clip"], tmp_path, source="t.csv")
    out = pre.transform(frame, ["clip"], tmp_path, bad_cells="mask")
    assert out.present.tolist() == [True, False] and out.n_bad == 1


@pytest.mark.parametrize(
    ("opts", "why"),
    [
        ({"max_pixels": 100}, "max_pixels"),
        ({"max_seconds": 1.0}, "max_seconds"),
        ({"max_frames": 5}, "max_frames"),
        ({"max_file_mb": 0.0001}, "max_file_mb"),
    ],
)
def test_limits_refuse_clips_before_decoding_them(tmp_path, opts, why):
    write_clip(tmp_path / "long.mp4", moving_square(2, 12), fps=8)  # 1.5 s, 12 frames, 16x16
    frame = pd.DataFrame({"clip": ["long.mp4"]})
    with pytest.raises(DataError, match=rf"row 0, column 'clip'.*{why}"):
        video(**opts).transform(frame, ["clip"], tmp_path)


def test_paths_stay_inside_the_table_folder(tmp_path):
    inside, outside = tmp_path / "table", tmp_path / "elsewhere"
    write_clip(outside / "clip.mp4", moving_square(0))
    write_frame_folder(inside / "frames", moving_square(1, 3))
    (inside / "frames" / "frame9.png").symlink_to(outside / "clip.mp4")
    frame = pd.DataFrame({"clip": ["../elsewhere/clip.mp4", "frames"]})
    confined = FileAccess.of(False)
    with pytest.raises(DataError, match="outside the table's folder"):
        video().transform(frame.head(1), ["clip"], inside, access=confined)
    with pytest.raises(DataError, match="links outside the frame folder"):
        video(num_frames=4).transform(frame.tail(1), ["clip"], inside, access=confined)


def test_audio_input_reads_the_sound_track(tmp_path):
    write_clip(tmp_path / "loud.mp4", moving_square(0), audio=tone(2), rate=8000)
    write_clip(tmp_path / "silent.webm", moving_square(0))
    (tmp_path / "notes.mp4").write_text("not a clip")
    opts = {"sample_rate": 8000, "max_seconds": 0.5, "features": "waveform"}
    audio = registry.build("preprocessor", {"type": "audio", **opts})
    frame = pd.DataFrame({"c": ["loud.mp4", "silent.webm", None]})
    out = audio.transform(frame, ["c"], tmp_path)
    assert out.present.tolist() == [True, False, False] and out.n_bad == 0  # no track: missing
    wave = out.rows(torch.arange(1))[0].numpy()
    peak = np.argmax(np.abs(np.fft.rfft(wave))) * 8000 / len(wave)
    assert abs(peak - 1100) < 30  # the label-2 tone (300 + 2 * 400 Hz)
    with pytest.raises(DataError, match=r"row 0, column 'c'.*notes\.mp4"):
        audio.transform(pd.DataFrame({"c": ["notes.mp4"]}), ["c"], tmp_path)


def test_init_infers_video_columns_and_presets_fill_them(tmp_path):
    frame = add_video(make_table(tmp_path, n=10), tmp_path)
    assert infer_modality(frame["clip"], tmp_path) == "video"
    head = (tmp_path / "clips" / "0.mp4").read_bytes()[:16]
    assert sniff(head) == "video" and infer_modality(pd.Series([head] * 3)) == "video"
    types = {}
    for preset in ("fast", "medium", "best"):
        cfg = starter(frame[["clip", "label"]], "label", tmp_path, preset).config
        inputs = {i["name"]: i for i in cfg["inputs"]}
        types[preset] = inputs["clip"]["encoder"]["type"]
        assert (
            inputs["clip_audio"]["columns"] == ["clip"] and inputs["clip_audio"]["type"] == "audio"
        )
    assert types == {"fast": "video_r21d", "medium": "video_frames", "best": "video_frames"}


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/video is not here")
def test_every_real_clip_decodes():
    clips = sorted(p.name for p in REAL.iterdir() if p.suffix in (".mp4", ".avi"))
    assert len(clips) == 8
    pre = video(num_frames=16, image_size=32)
    out = pre.transform(pd.DataFrame({"clip": clips}), ["clip"], REAL)
    x = out.rows(torch.arange(len(clips)))
    assert out.present.all() and x.shape == (8, 16, 3, 32, 32) and torch.isfinite(x).all()
    assert all(float((clip[1:] - clip[:-1]).abs().mean()) > 0 for clip in x)  # frames differ


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/video is not here")
def test_a_clip_whose_last_packet_holds_no_frame_decodes_every_frame():
    """box.mp4 indexes 456 packets; the last decodes to no frame: it shows the one before."""
    from polymodal.data.preprocess.video_io import Limits, Sampling, read_clip

    frames = read_clip(REAL / "box.mp4", Sampling(num_frames=456, size=16), Limits())
    assert frames.shape == (456, 16, 16, 3) and (frames[-1] == frames[-2]).all()
