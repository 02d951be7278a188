"""Reading video files with PyAV (FFmpeg bundled in its wheel): a few frames sampled from a clip,
decoding as little as possible, and a clip's audio track; also folders of frame images.

How a clip is sampled (``read_clip``):
1. index: the video stream's packets are demuxed (no decoding) for their timestamps and keyframe
   flags, which gives the exact frames and duration even when the header lies or has no count;
2. the wanted frames: for each sampling time, the frame on screen then (the last one whose
   timestamp is at or before it), so dropped / held frames (AVI) are handled as a player would;
3. decode: only the runs of packets from the keyframe before each wanted frame up to it are fed
   to the decoder (runs that touch are decoded once); frames in a run that nothing references
   (B-frames) and that are not wanted are skipped by the decoder (``skip_frame = NONREF``);
4. every wanted frame is scaled by FFmpeg (swscale, area filter) straight to about the target
   size, then centre-cropped (or squashed) to a square.

Every read is bounded: the file's size (``max_file_bytes``, before opening), the frame size
(``max_pixels``, from the stream header), the duration (``max_seconds``, from the header and again
from the packets) and the packets indexed (``max_frames``); FFmpeg may only use the demuxers of
mp4/mov, AVI and Matroska/WebM and may open no other file or URL (playlists, concat lists and
image sequences are refused), so a hostile file can neither hang the reader nor make it read
something else.
"""

from __future__ import annotations

import bisect
import io
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

VIDEO_EXT = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")
FRAME_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
# FFmpeg demuxers a cell may use: mp4/mov, AVI, Matroska/WebM (never hls, concat, image2...)
FORMATS = "mov,mp4,m4a,3gp,3g2,mj2,avi,matroska,webm"
OPEN_OPTIONS = {"format_whitelist": FORMATS, "protocol_whitelist": "file"}
RESIZES = ("crop", "squash")
KEEP_BYTES = 16 * 2**20  # a clip whose packets fit here is demuxed once, not twice
TAIL_SLACK = 2  # trailing packets that may decode to no frame (see _hold_last)


@dataclass(frozen=True)
class Limits:
    """What one clip may cost; beyond any of these it is a bad cell."""

    max_pixels: int = 10_000_000  # width x height of a frame
    max_seconds: float = 3600.0  # the clip's duration
    max_frames: int = 200_000  # frames (packets) in the clip, or images in a frame folder
    max_file_bytes: int = 1024 * 2**20


@dataclass(frozen=True)
class Sampling:
    """Which frames, at which size: ``num_frames`` spread evenly over the clip (segment centres),
    or ``fps`` frames a second from a window at the clip's centre; a shorter clip repeats frames
    (uniform) or holds its last one (fps)."""

    num_frames: int = 8
    fps: float | None = None
    size: int = 64
    channels: int = 3
    resize: str = "crop"  # crop: shorter side to size, centre crop; squash: both sides to size
    folder_fps: float = 25.0  # the frame rate a folder of frame images is taken to have


# -- opening ------------------------------------------------------------------------------------
@contextmanager
def open_container(target: bytes | Path, limits: Limits) -> Iterator[Any]:
    """A PyAV input container over a file or bytes, after the size check; only the allowed
    demuxers, no other file or URL."""
    import av

    size = len(target) if isinstance(target, bytes) else os.stat(target).st_size
    if size > limits.max_file_bytes:
        raise ValueError(
            f"a file of {size / 2**20:.1f} MiB, over the limit of "
            f"{limits.max_file_bytes / 2**20:g} MiB (preprocessing max_file_mb)"
        )
    if size == 0:
        raise ValueError("an empty file")
    src: Any = io.BytesIO(target) if isinstance(target, bytes) else str(target)
    try:
        container = av.open(src, "r", container_options=OPEN_OPTIONS)
    except av.FFmpegError as err:
        raise ValueError(f"not a video container FFmpeg may open ({FORMATS}): {err}") from None
    try:
        yield container
    finally:
        container.close()


def _stream(container: Any, limits: Limits) -> Any:
    """The first video stream, its header checked against the limits."""
    if not container.streams.video:
        raise ValueError("the file has no video stream")
    stream = container.streams.video[0]
    width, height = int(stream.width or 0), int(stream.height or 0)
    if width * height > limits.max_pixels:
        raise ValueError(
            f"frames of {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{limits.max_pixels:,} (preprocessing max_pixels)"
        )
    seconds = _header_seconds(container, stream)
    if seconds > limits.max_seconds:
        raise ValueError(
            f"a clip of {seconds:,.0f} s, over the limit of {limits.max_seconds:g} s "
            "(preprocessing max_seconds)"
        )
    return stream


def _header_seconds(container: Any, stream: Any) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return float(container.duration or 0) / 1e6


# -- index and choice of frames ----------------------------------------------------------------
@dataclass
class Index:
    """The video packets in decode order: timestamps (stream ticks) and keyframe flags."""

    pts: list[int]
    key: list[bool]
    time_base: float

    def presentation(self) -> list[int]:
        return sorted(set(self.pts))


def _timed(packets: Iterable[Any]) -> Iterator[tuple[Any, int]]:
    """(packet, timestamp) of the packets that carry a frame with a time."""
    for packet in packets:
        stamp = packet.pts if packet.pts is not None else packet.dts
        if packet.size and stamp is not None:  # not a flush packet, not a frame without a time
            yield packet, int(stamp)


def index_packets(
    container: Any, stream: Any, limits: Limits, keep: list[Any] | None = None
) -> Index:
    """Demux (no decoding) every packet of ``stream``: its timestamp and keyframe flag. With
    ``keep``, the packets are kept there too while they stay under ``KEEP_BYTES`` together (a
    short clip is then decoded without demuxing it again); past that, ``keep`` is emptied."""
    pts: list[int] = []
    key: list[bool] = []
    kept = 0
    for packet, stamp in _timed(container.demux(stream)):
        pts.append(stamp)
        key.append(bool(packet.is_keyframe))
        if keep is not None and kept <= KEEP_BYTES:
            kept += packet.size
            keep.append(packet)
            if kept > KEEP_BYTES:
                keep.clear()
        if len(pts) > limits.max_frames:
            raise ValueError(
                f"over {limits.max_frames:,} frames (preprocessing max_frames); expected a "
                "shorter clip"
            )
    if not pts:
        raise ValueError("the video stream has no frames")
    tb = float(stream.time_base) if stream.time_base is not None else 1.0
    order = sorted(set(pts))
    if (order[-1] - order[0]) * tb > limits.max_seconds:
        raise ValueError(
            f"frames over {(order[-1] - order[0]) * tb:,.0f} s, over the limit of "
            f"{limits.max_seconds:g} s (preprocessing max_seconds)"
        )
    return Index(pts, key, tb)


def sample_times(n_slots: int, start: float, span: float, fps: float | None) -> list[float]:
    """Sampling times (in the clip's units) for ``n_slots`` frames over [start, start + span):
    segment centres, or ``fps`` per second (of ``span`` units) from a window at the centre."""
    if fps is None:
        return [start + (k + 0.5) * span / n_slots for k in range(n_slots)]
    window = n_slots / fps
    first = start + max(0.0, (span - window) / 2)
    return [first + (k + 0.5) / fps for k in range(n_slots)]


def on_screen(order: list[float], times: list[float]) -> list[int]:
    """For each time, the position in ``order`` (sorted start times) of the frame shown then."""
    return [max(0, bisect.bisect_right(order, t) - 1) for t in times]


def wanted_frames(index: Index, sampling: Sampling) -> list[int]:
    """The timestamp of the frame each slot shows (slots may share a frame)."""
    order = index.presentation()
    steps = np.diff(order)
    frame = float(np.median(steps)) if len(steps) else 1.0  # one frame's duration, in ticks
    span = order[-1] - order[0] + frame
    fps = None if sampling.fps is None else sampling.fps * index.time_base  # per tick
    times = sample_times(sampling.num_frames, float(order[0]), span, fps)
    return [order[i] for i in on_screen([float(o) for o in order], times)]


# -- decoding ----------------------------------------------------------------------------------
def _runs(index: Index, wanted: set[int]) -> bytearray:
    """1 for each packet (decode order) that must be fed: from the keyframe before a wanted
    frame up to it."""
    need = bytearray(len(index.pts))
    last_key = 0
    starts = []
    for i, k in enumerate(index.key):
        last_key = i if k else last_key
        starts.append(last_key)
    for i, stamp in enumerate(index.pts):
        if stamp in wanted:
            need[starts[i] : i + 1] = b"\x01" * (i + 1 - starts[i])
    return need


def decode_wanted(
    packets: Iterable[Any], stream: Any, index: Index, wanted: set[int], convert: Any
) -> dict[int, np.ndarray]:
    """The wanted frames (timestamp -> converted array) from ``packets`` (the stream's, demuxed
    again or kept from the index), decoding only the runs that lead to them; non-reference
    frames that are not wanted are skipped by the decoder."""
    need = _runs(index, wanted)
    last = max(i for i, n in enumerate(need) if n)
    codec = stream.codec_context
    got: dict[int, np.ndarray] = {}
    awaiting: set[int] = set()  # fed, but still inside the decoder (B-frame reordering)
    fed, i = -2, -1

    def take(frames: list[Any]) -> None:
        for frame in frames:
            if frame.pts in wanted and frame.pts not in got:
                got[frame.pts] = convert(frame)
                awaiting.discard(frame.pts)

    for packet, stamp in _timed(packets):
        i += 1
        if i > last and not awaiting:
            break
        if not need[i] and not awaiting:
            continue
        if i != fed + 1 and not awaiting:  # a new run after skipped packets: a fresh decoder
            codec.flush_buffers()
        codec.skip_frame = "DEFAULT" if stamp in wanted else "NONREF"
        take(codec.decode(packet))
        if stamp in wanted and stamp not in got:
            awaiting.add(stamp)
        fed = i
    codec.skip_frame = "DEFAULT"
    take(codec.decode(None))  # what the decoder still holds
    return got


def decode_in_order(
    container: Any, stream: Any, order: list[int], wanted: set[int], convert: Any
) -> dict[int, np.ndarray]:
    """Fallback for decoders that renumber frames: decode every frame up to the last wanted one
    and give the k-th frame out the k-th timestamp of ``order``."""
    got: dict[int, np.ndarray] = {}
    stop = max(order.index(w) for w in wanted)
    for k, frame in enumerate(container.decode(stream)):
        if k > stop:
            break
        if order[k] in wanted:
            got[order[k]] = convert(frame)
    return got


def frame_size(width: int, height: int, size: int, resize: str) -> tuple[int, int]:
    """(width, height) to scale a frame to before the centre crop."""
    if resize == "squash":
        return size, size
    scale = size / max(1, min(width, height))
    return max(size, round(width * scale)), max(size, round(height * scale))


def centre_crop(arr: np.ndarray, size: int) -> np.ndarray:
    """(H, W, C) -> (size, size, C), the centre kept."""
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return arr[top : top + size, left : left + size]


def converter(sampling: Sampling) -> Any:
    """A decoded frame -> uint8 (size, size, channels), scaled by FFmpeg (area filter). One
    reformatter per clip keeps its scaler (building one per frame costs 25x the scaling)."""
    from av.video.reformatter import VideoReformatter

    fmt = "rgb24" if sampling.channels == 3 else "gray"
    scaler = VideoReformatter()

    def convert(frame: Any) -> np.ndarray:
        w, h = frame_size(frame.width, frame.height, sampling.size, sampling.resize)
        scaled = scaler.reformat(frame, width=w, height=h, format=fmt, interpolation="AREA")
        arr = scaled.to_ndarray()
        arr = arr.reshape(h, w, sampling.channels)
        return np.ascontiguousarray(centre_crop(arr, sampling.size))

    return convert


def read_clip(target: bytes | Path, sampling: Sampling, limits: Limits) -> np.ndarray:
    """(num_frames, size, size, channels) uint8 frames of a video file (bytes or path) or of a
    folder of frame images."""
    if isinstance(target, Path) and target.is_dir():
        return read_folder(target, sampling, limits)
    kept: list[Any] = []
    with open_container(target, limits) as container:
        stream = _stream(container, limits)
        index = index_packets(container, stream, limits, kept)
        slots = wanted_frames(index, sampling)
        wanted, convert = set(slots), converter(sampling)
        if kept:  # a short clip: its packets are here already
            got = decode_wanted(kept, stream, index, wanted, convert)
    if not kept:
        with open_container(target, limits) as container:  # a fresh demuxer, from the start
            stream = _stream(container, limits)
            got = decode_wanted(container.demux(stream), stream, index, wanted, convert)
    if len(got) < len(wanted):
        with open_container(target, limits) as container:
            stream = _stream(container, limits)
            got = decode_in_order(container, stream, index.presentation(), wanted, convert)
    got = _hold_last(got, wanted, index.presentation())
    if len(got) < len(wanted):
        raise ValueError(
            f"{len(wanted) - len(got)} of the {len(wanted)} sampled frames could not be decoded "
            "(a truncated or corrupt clip)"
        )
    return np.stack([got[s] for s in slots])


def _hold_last(
    got: dict[int, np.ndarray], wanted: set[int], order: list[int]
) -> dict[int, np.ndarray]:
    """Some encoders end a stream with packets that decode to no frame (``box.mp4``: its last
    one): wanted frames among the last ``TAIL_SLACK`` show the last decoded one. Any other
    missing frame stays missing (a truncated or corrupt clip: an error)."""
    missing = wanted - got.keys()
    if not missing or not got:
        return got
    last = max(got)
    if all(t > last for t in missing) and sum(t > last for t in order) <= TAIL_SLACK:
        return {**got, **{t: got[last] for t in missing}}
    return got


# -- folders of frame images -------------------------------------------------------------------
def _natural(name: str) -> list[Any]:
    """Sort key: frame2 before frame10."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def folder_frames(folder: Path, limits: Limits) -> list[Path]:
    """The folder's frame images in natural order; at most ``max_frames`` entries are listed."""
    names = []
    with os.scandir(folder) as entries:
        for count, entry in enumerate(entries):
            if count >= limits.max_frames:
                raise ValueError(
                    f"a folder of over {limits.max_frames:,} entries (preprocessing max_frames)"
                )
            if entry.name.lower().endswith(FRAME_EXT):
                names.append(entry.name)
    if not names:
        raise ValueError(f"a folder without frame images ({', '.join(FRAME_EXT)})")
    return [folder / n for n in sorted(names, key=_natural)]


def read_folder(folder: Path, sampling: Sampling, limits: Limits) -> np.ndarray:
    """Frames sampled from a folder of images (``folder_fps`` frames a second), each opened like
    an image cell (raster formats only, ``max_pixels`` from the header) and never followed out
    of the folder by a symlink."""
    from PIL import Image, ImageOps

    from polymodal.data.preprocess.image import open_formats

    files = folder_frames(folder, limits)
    fps = None if sampling.fps is None else sampling.fps / sampling.folder_fps  # per image
    times = sample_times(sampling.num_frames, 0.0, float(len(files)), fps)
    picks = on_screen([float(i) for i in range(len(files))], times)
    real_folder = os.path.realpath(folder)
    out: dict[int, np.ndarray] = {}
    for i in sorted(set(picks)):
        if not os.path.realpath(files[i]).startswith(real_folder + os.sep):
            raise ValueError(f"{files[i].name} links outside the frame folder")
        with Image.open(files[i], formats=open_formats()) as img:
            if img.width * img.height > limits.max_pixels:
                raise ValueError(
                    f"{files[i].name}: {img.width}x{img.height} pixels, over the limit of "
                    f"{limits.max_pixels:,} (preprocessing max_pixels)"
                )
            rgb = ImageOps.exif_transpose(img).convert("RGB" if sampling.channels == 3 else "L")
        w, h = frame_size(rgb.width, rgb.height, sampling.size, sampling.resize)
        arr = np.asarray(rgb.resize((w, h), Image.Resampling.BOX), dtype=np.uint8)
        out[i] = centre_crop(arr.reshape(h, w, sampling.channels), sampling.size)
    return np.stack([out[i] for i in picks])


# -- the audio track ---------------------------------------------------------------------------
def read_audio_track(
    target: bytes | Path, rate: int, seconds: float, limits: Limits
) -> np.ndarray | None:
    """The first audio stream of a video container as mono float32 at ``rate``, its first
    ``seconds`` only; None for a clip without an audio stream (nothing to hear: a missing
    modality). ``ValueError`` for a file that is not a container FFmpeg may open."""
    import av

    from polymodal.data.preprocess.audio import MAX_CHANNELS, MAX_RATE

    with open_container(target, limits) as container:
        if not container.streams.audio:
            if container.streams.video:
                return None
            raise ValueError("the container has neither an audio nor a video stream")
        stream = container.streams.audio[0]
        channels = int(stream.codec_context.channels or 0)
        if not 0 < int(stream.rate or 0) <= MAX_RATE or not 0 < channels <= MAX_CHANNELS:
            raise ValueError(
                f"an audio track of {stream.rate} Hz and {channels} channels; expected at most "
                f"{MAX_RATE} Hz and {MAX_CHANNELS} channels"
            )
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        wanted, parts, have = int(np.ceil(seconds * rate)), [], 0
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                parts.append(out.to_ndarray().reshape(-1))
                have += parts[-1].size
            if have >= wanted:
                break
    if not have:
        raise ValueError("the audio track has no samples")
    return np.concatenate(parts)[:wanted].astype(np.float32)


def probe(target: bytes | Path, limits: Limits) -> dict[str, Any]:
    """Header facts (no decoding): width, height, seconds, frame rate, grey, audio stream."""
    with open_container(target, limits) as container:
        stream = _stream(container, limits)
        rate = float(stream.average_rate or stream.guessed_rate or 0)
        return {
            "width": int(stream.width), "height": int(stream.height),
            "seconds": _header_seconds(container, stream), "fps": rate,
            "grey": str(stream.codec_context.pix_fmt or "").startswith("gray"),
            "audio": bool(container.streams.audio),
            "audio_rate": int(container.streams.audio[0].rate) if container.streams.audio else 0,
        }  # fmt: skip


__all__ = [
    "FORMATS",
    "VIDEO_EXT",
    "Limits",
    "Sampling",
    "probe",
    "read_audio_track",
    "read_clip",
    "read_folder",
]
