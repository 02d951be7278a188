"""What the video benchmark trains: the inputs, encoders and budget shared by every method.

Settings were fixed before any test row was scored; choices between methods (which temporal model
the fusion uses) are made on validation rows taken from the training table only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1].parent / "shared" / "data"
TEMPORALS = ("mean", "gru", "transformer", "diff")  # video_frames temporal models
METHODS = (*(f"frames_{t}" for t in TEMPORALS), "r21d")  # picture-only models (two heads)

# A LeNet-style CNN on every grey frame, keeping the 4x4 layout of its last feature map (pool
# "flatten"): where the digit sits is what a temporal model turns into a direction; global
# pooling would throw the position away. Narrow (8-16-32) and on 8 frames of 32x32 (the 48x48
# canvas scaled by FFmpeg's area filter): measured on 2 free cores, this CNN + GRU costs 2.3 CPU
# seconds per batch of 64 clips of 16 frames at 48x48 (360 CPU-s an epoch of 10,000 clips); 8
# frames at 32x32 cut that about 4.5 times, which a shared 2-core machine can afford.
AVMNIST_FRAMES, AVMNIST_SIZE = 8, 32
FRAME_CNN = {"type": "image_cnn", "channels": [8, 16, 32], "out_dim": 64, "pool": "flatten"}


def video_input(
    method: str, size: int, frames: int, augment: bool = False, wide: bool = False
) -> dict[str, Any]:
    """The ``clip`` input for ``frames_<temporal>`` or ``r21d`` on ``frames`` grey ``size`` x
    ``size`` frames (arrow of time only: augmented; a flip keeps the arrow of time); ``wide``:
    the frame CNN of the still-image AV-MNIST benchmark (16-32-64 channels) instead of 8-16-32."""
    if method == "r21d":
        encoder: dict[str, Any] = {"type": "video_r21d", "channels": [8, 16, 32], "out_dim": 64}
    else:
        # "~global": the frame CNN averages its last map over the frame (where the digit sits
        # is lost): the classic mean-pooled frame features, blind to position as to order
        global_pool = method.endswith("~global")
        method = method.removesuffix("~global")
        frame = FRAME_CNN | {"pool": "global"} if global_pool else FRAME_CNN
        frame = frame | {"channels": [16, 32, 64]} if wide else frame
        encoder = {"type": "video_frames", "frame_encoder": frame,
                   "temporal": method.removeprefix("frames_"), "hidden": 64}  # fmt: skip
    pre: dict[str, Any] = {"num_frames": frames, "image_size": size, "channels": 1}
    if augment:
        pre |= {"augment": True, "crop_scale_min": 0.8, "temporal_jitter": 0}
    return {"name": "clip", "type": "video", "columns": ["clip"], "encoder": encoder,
            "preprocessing": pre}  # fmt: skip


# The clip's own sound track (8 kHz AAC of the spoken digit): the AV-MNIST benchmark's audio
# encoder and log-mel settings (benchmarks/avmnist/common.py, chosen there on a speaker-held-out
# split): mel bands kept (pool "freq"), per-clip normalisation, SpecAugment.
SOUND = {
    "name": "sound", "type": "audio", "columns": ["clip"],
    "encoder": {"type": "audio_cnn", "channels": [8, 16, 32], "out_dim": 64, "pool": "freq"},
    "preprocessing": {"sample_rate": 8000, "max_seconds": 1.0, "n_fft": 200, "hop_length": 160,
                      "n_mels": 40, "normalize": "per_clip", "specaugment": True, "time_mask": 10,
                      "freq_mask": 8},
}  # fmt: skip


WARP = 0.15  # ~warp: the sound's log-mel stretch (VTLP-like), not tuned beyond one value


def trainer(epochs: int, patience: int | None = 3, batch_size: int = 64) -> dict[str, Any]:
    """AdamW 2e-3, cosine schedule; early stopping on the validation loss (rows from training)."""
    return {"epochs": epochs, "batch_size": batch_size, "lr": 0.002, "weight_decay": 0.01,
            "schedule": "cosine", "warmup_ratio": 0.05, "early_stopping_patience": patience,
            "seed": 0, "progress": False}  # fmt: skip


def avmnist_config(method: str, epochs: int) -> dict[str, Any]:
    """Moving AV-MNIST: ``frames_<temporal>`` / ``r21d`` (picture only, heads ``digit`` and
    ``direction``), ``audio_only`` (``digit``), ``fusion:<video method>`` (picture + sound,
    late fusion by the product of the experts' probabilities, both heads) or
    ``fusion_concat:<video method>`` (picture + sound trained jointly: their features
    concatenated, modality dropout 0.3, the still-image AV-MNIST benchmark's best, 0.951); a
    method ending in ``@48`` reads all 16 frames at 48x48 instead of 8 at 32x32, one ending in
    ``@48x8`` 8 frames at 48x48; ``~warp`` (last, before any ``*N``) also stretches the sound
    track's log-mels by up to +-15% in training (mel and time axes: voices and tempi the training
    speakers lack); ``~dropNN`` (last, before any ``*N``) sets fusion_concat's modality dropout
    to NN %; ``~wide`` (before those) widens the frame CNN to 16-32-64 channels."""
    heads = [{"name": "digit", "task": "multiclass", "head": {"label_smoothing": 0.1}},
             {"name": "direction", "task": "multiclass", "head": {"label_smoothing": 0.1}}]  # fmt: skip
    sound, dropout = SOUND, 0.3
    if "~drop" in method:  # ~dropNN: fusion_concat's modality dropout NN / 100 instead of 0.3
        method, _, percent = method.partition("~drop")
        dropout = int(percent) / 100
    if method.endswith("~warp"):
        method = method.removesuffix("~warp")
        sound = {**SOUND, "preprocessing": {**SOUND["preprocessing"], "warp": WARP}}
    wide = method.endswith("~wide")
    method = method.removesuffix("~wide")
    if method == "audio_only":
        return {"inputs": [sound], "outputs": heads[:1], "trainer": trainer(epochs)}
    size, frames = AVMNIST_SIZE, AVMNIST_FRAMES
    if method.endswith("@48"):  # the full canvas, all 16 frames (about 4.5 times the cost)
        method, size, frames = method.removesuffix("@48"), 48, 16
    if method.endswith("@48x8"):  # the full canvas, 8 of the 16 frames (2.25 times the cost)
        method, size = method.removesuffix("@48x8"), 48
    if method.endswith("@16"):  # all 16 frames at 32x32: the sampled set is time-symmetric
        method, frames = method.removesuffix("@16"), 16
    if method.startswith("fusion_concat:"):
        inputs = [video_input(method.split(":", 1)[1], size, frames, wide=wide), sound]
        return {"inputs": inputs, "fusion": {"type": "concat"}, "outputs": heads,
                "trainer": trainer(epochs) | {"modality_dropout": dropout}}  # fmt: skip
    if method.startswith("fusion:"):
        inputs = [video_input(method.split(":", 1)[1], size, frames, wide=wide), sound]
        # late product: the best fusion rule of the still-image AV-MNIST benchmark
        return {"inputs": inputs, "fusion": {"type": "late", "rule": "product"},
                "outputs": heads, "trainer": trainer(epochs)}  # fmt: skip
    video = video_input(method, size, frames, wide=wide)
    return {"inputs": [video], "outputs": heads, "trainer": trainer(epochs)}


def budget(method: str, default: int) -> tuple[str, int]:
    """``frames_diff*6`` -> (``frames_diff``, 6 epochs); no ``*``: the run's ``--epochs``."""
    name, _, epochs = method.partition("*")
    return name, int(epochs) if epochs else default


def arrow_config(method: str, epochs: int) -> dict[str, Any]:
    """Arrow of time on real footage: one binary head, the piece's 16 frames at 32x32 grey (the
    64x64 pieces scaled), augmented (random crop, flip, colour jitter: one draw per clip; no
    temporal jitter)."""
    inputs = [video_input(method, 32, 16, augment=True)]
    return {"inputs": inputs, "outputs": [{"name": "arrow", "task": "multiclass"}],
            "trainer": trainer(epochs, patience=4, batch_size=32)}  # fmt: skip


__all__ = ["HERE", "METHODS", "SHARED", "TEMPORALS", "arrow_config", "avmnist_config", "budget"]
