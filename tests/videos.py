"""Tiny video files written with PyAV for tests: a few 16x16 frames, with or without a sound
track, in mp4 (H.264), AVI (MPEG-4 part 2), Matroska and WebM (VP8)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

CODECS = {".mp4": "libx264", ".mov": "libx264", ".avi": "mpeg4", ".mkv": "libx264",
          ".webm": "libvpx"}  # fmt: skip
AUDIO_CODECS = {".mp4": "aac", ".mov": "aac", ".avi": "pcm_s16le", ".mkv": "aac",
                ".webm": "libopus"}  # fmt: skip


def moving_square(label: int, frames: int = 6, size: int = 16, seed: int = 0) -> np.ndarray:
    """(T, size, size, 3) uint8: a 6-pixel square of the label's colour moving right (label 0),
    left (1) or down (2) over a dark, slightly noisy background."""
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 40, (frames, size, size, 3)).astype(np.uint8)
    colour = [(230, 40, 40), (40, 230, 40), (40, 40, 230)][label % 3]
    for t in range(frames):
        step = t * (size - 6) // max(1, frames - 1)
        y, x = [(5, step), (5, size - 6 - step), (step, 5)][label % 3]
        out[t, y : y + 6, x : x + 6] = colour
    return out


def tone(label: int, seconds: float = 0.5, rate: int = 8000) -> np.ndarray:
    """A sine whose pitch follows the label, float32 mono."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * (300 + 400 * label) * t)).astype(np.float32)


def write_clip(
    path: Path,
    frames: np.ndarray,
    fps: int = 8,
    audio: np.ndarray | None = None,
    rate: int = 8000,
    gop: int | None = None,
) -> Path:
    """Encode ``frames`` (T, H, W, 3) uint8 as a video file (codec from the suffix), with
    ``audio`` (mono float32 at ``rate``) as its sound track when given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(CODECS[path.suffix], rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if gop is not None:
            stream.codec_context.gop_size = gop
        sound = None
        if audio is not None:
            sound = out.add_stream(AUDIO_CODECS[path.suffix], rate=48000 if
                                   path.suffix == ".webm" else rate)  # fmt: skip
            sound.layout = "mono"
        for arr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if sound is not None and audio is not None:
            _write_audio(out, sound, audio, rate)
    return path


def _write_audio(out: av.container.OutputContainer, sound: object, audio: np.ndarray,
                 rate: int) -> None:  # fmt: skip
    resampler = av.AudioResampler(format=sound.format.name, layout="mono", rate=sound.rate)  # type: ignore[attr-defined]
    frame = av.AudioFrame.from_ndarray(audio[None, :], format="flt", layout="mono")
    frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
    for piece in resampler.resample(frame) + resampler.resample(None):
        for packet in sound.encode(piece):  # type: ignore[attr-defined]
            out.mux(packet)
    for packet in sound.encode(None):  # type: ignore[attr-defined]
        out.mux(packet)


def write_frame_folder(folder: Path, frames: np.ndarray) -> Path:
    """``frames`` as PNG files frame1.png, frame2.png, ... frame10.png (natural order)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, arr in enumerate(frames, start=1):
        Image.fromarray(arr).save(folder / f"frame{i}.png")
    return folder
