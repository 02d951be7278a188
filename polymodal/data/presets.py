"""Presets: ``fast``, ``medium`` and ``best`` fill a starter config's encoders, preprocessing,
fusion, heads and trainer from what the table holds (image sizes and colours, audio rates and
lengths, class balance, row count). Everything a preset chooses is written into the config, so
nothing is hidden and any choice can be edited afterwards.

Where the choices come from: ``best`` is what won the benchmarks (``benchmarks/clothing``: frozen
MiniLM beside a trainable hashed n-gram branch for text; ``benchmarks/avmnist``: LeNet-style CNNs
that keep the image layout and the mel bands, per-clip normalised log-mel with SpecAugment,
concat fusion with modality dropout, label smoothing); ``fast`` trains in seconds on a laptop.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.infer import Inferred, infer_table
from polymodal.data.paths import FileAccess
from polymodal.data.preprocess.files import read_cell

PRESETS = ("fast", "medium", "best")
PERCEPTUAL = ("image", "audio", "video")  # modalities modality dropout pays off between
INSPECTED = 32  # file cells looked at per column
TARGET_STEPS = 2000  # best: optimizer steps aimed at (epochs follow from the row count)
CONFINED = FileAccess()  # files a table names are peeked at only where training may read them


def _cells(series: pd.Series, n: int = INSPECTED) -> list[Any]:
    """Up to ``n`` distinct filled cells, spread over the column."""
    filled = series.dropna()
    filled = filled[filled.map(lambda v: not (isinstance(v, str) and not v.strip()))]
    step = max(1, len(filled) // n)
    return filled.iloc[::step].head(n).tolist()


def image_facts(series: pd.Series, base_dir: Path, access: FileAccess = CONFINED) -> dict[str, Any]:
    """Median side and whether the images are greyscale, from the headers of a sample (files
    that cannot be opened are skipped: the preprocessor reports them with their row)."""
    from PIL import Image

    sides, grey = [], []
    for cell in _cells(series):
        try:
            target, _ = read_cell(cell, base_dir, access)
            src: Any = io.BytesIO(target) if isinstance(target, bytes) else target
            with Image.open(src) as img:
                sides.append(max(img.size))
                grey.append(img.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "F"))
        except Exception:  # a sample: unreadable cells are the decoder's to report, with their row
            continue
    if not sides:
        return {"side": 64, "grey": False}
    return {"side": int(np.median(sides)), "grey": bool(np.mean(grey) > 0.5)}


def audio_facts(series: pd.Series, base_dir: Path, access: FileAccess = CONFINED) -> dict[str, Any]:
    """Median sample rate and the 95th percentile of clip length, from a sample's headers."""
    import soundfile as sf

    rates, seconds = [], []
    for cell in _cells(series, 8 * INSPECTED):  # headers are cheap; lengths vary more than sizes
        try:
            target, _ = read_cell(cell, base_dir, access)
            info = sf.info(io.BytesIO(target) if isinstance(target, bytes) else str(target))
            rates.append(info.samplerate)
            seconds.append(info.frames / max(info.samplerate, 1))
        except Exception:  # as above
            continue
    if not rates:
        return {"rate": 16000, "seconds": 2.0}
    return {"rate": int(np.median(rates)), "seconds": float(np.percentile(seconds, 95))}


def series_facts(
    series: pd.Series, base_dir: Path, access: FileAccess = CONFINED
) -> dict[str, Any]:
    """The longest series (steps) of a sample of cells (unreadable ones are skipped: the
    preprocessor reports them with their row): padding is masked, cropping loses steps."""
    from polymodal.data.preprocess.series import SeriesPreprocessor

    reader = SeriesPreprocessor()
    steps = []
    for cell in _cells(series, 4 * INSPECTED):
        try:
            steps.append(len(reader.read(cell, base_dir, access).values))
        except Exception:  # as above
            continue
    return {"steps": max(steps) if steps else 512}


def video_facts(series: pd.Series, base_dir: Path, access: FileAccess = CONFINED) -> dict[str, Any]:
    """Median shorter side, greyscale, and whether most clips have a sound track (its rate and
    the 95th percentile clip length), from the headers of a sample of clips."""
    from polymodal.data.preprocess.video_io import Limits, probe

    found = []
    for cell in _cells(series, 8):
        try:
            found.append(probe(read_cell(cell, base_dir, access)[0], Limits()))
        except Exception:  # as above (a folder of frames has no header: skipped too)
            continue
    if not found:
        return {"side": 64, "grey": False, "audio": False, "rate": 16000, "seconds": 2.0}
    sound = [f for f in found if f["audio"]]
    return {
        "side": int(np.median([min(f["width"], f["height"]) for f in found])),
        "grey": bool(np.mean([f["grey"] for f in found]) > 0.5),
        "audio": len(sound) >= len(found) / 2,
        "rate": int(np.median([f["audio_rate"] for f in sound])) if sound else 16000,
        "seconds": float(np.percentile([f["seconds"] for f in found], 95)),
    }


AFFORDABLE_FRAMES = 40_000  # best: frozen EfficientNet-Lite frames (cached once) worth running


def _video(inp: dict[str, Any], facts: dict[str, Any], preset: str, rows: int) -> dict[str, Any]:
    """``fast``: a small (2+1)-D CNN on 8 frames of <= 32 px; ``medium``: a CNN per frame and a
    GRU over 8 augmented frames of <= 64 px; ``best``: frozen EfficientNet-Lite0 per frame (its
    features cached per frame) and a Transformer over 8 frames at 112 px when the table's frames
    are few enough, else the CNN and GRU over 16 frames."""
    grey = facts["grey"]
    size = min(facts["side"], 32 if preset == "fast" else 64)
    pre = {"num_frames": 8, "image_size": size, "channels": 1 if grey else 3}
    if preset == "fast":
        encoder: dict[str, Any] = {"type": "video_r21d", "channels": [8, 16, 32], "out_dim": 64}
        return {**inp, "encoder": encoder, "preprocessing": pre}
    if preset == "best" and rows * 8 <= AFFORDABLE_FRAMES:
        encoder = {"type": "video_frames", "temporal": "transformer", "hidden": 128,
                   "frame_encoder": {"type": "efficientnet_lite", "freeze": True}}  # fmt: skip
        return {**inp, "encoder": encoder, "preprocessing": {"num_frames": 8, "image_size": 112}}
    frames = {"type": "image_cnn", "channels": [16, 32, 64], "out_dim": 64}
    encoder = {"type": "video_frames", "temporal": "gru", "hidden": 64, "frame_encoder": frames}
    pre |= {"num_frames": 16 if preset == "best" else 8, "augment": True}
    return {**inp, "encoder": encoder, "preprocessing": pre}


# series up to this long are kept whole; a table with longer ones is cut into windows of
# SERIES_WINDOW steps every half window (a row's prediction averages its windows): on the watch
# recordings (947-2,618 steps), inner validation folds of benchmarks/timeseries/inner.py gave
# recording accuracy 0.869 cropped at 1,024 steps, 0.902 with 256-step windows
WHOLE_SERIES, SERIES_WINDOW, MAX_WINDOWED = 1024, 256, 8192


def series_length(steps: int, cap: int = WHOLE_SERIES) -> int:
    """``max_length`` for a table whose longest sampled series has ``steps`` steps: 25 % more,
    up to a multiple of 8 (8 to ``cap``), because a sample (and the training table) can miss the
    longest rows, and padding is masked while cropping loses steps."""
    return min(max(8, -(-int(steps * 1.25) // 8) * 8), cap)


def series_preprocessing(steps: int) -> dict[str, Any]:
    """Whole series (see :func:`series_length`) up to WHOLE_SERIES steps; longer recordings in
    windows, so that no step is cropped (up to MAX_WINDOWED) and a window's model sees local
    patterns at the scale of short series."""
    if steps <= WHOLE_SERIES:
        return {"max_length": series_length(steps)}
    return {"max_length": series_length(steps, MAX_WINDOWED), "window": SERIES_WINDOW,
            "stride": SERIES_WINDOW // 2}  # fmt: skip


def _series(inp: dict[str, Any], facts: dict[str, Any], preset: str) -> dict[str, Any]:
    """Series kept whole up to 25 % past the longest sampled one, or cut into windows when
    longer than 1,024 steps (:func:`series_preprocessing`); ``best``: MiniRocket with its
    first-difference features (fixed random-convolution features, cached, a linear or small
    head on top; the difference features scored higher on all three validation splits of
    benchmarks/timeseries), else a residual 1-D CNN (small for ``fast``; ``medium`` with jitter
    / scaling / crop augmentation)."""
    pre = series_preprocessing(int(facts["steps"]))
    if preset == "best":
        encoder = {"type": "minirocket", "difference": True}
        return {**inp, "encoder": encoder, "preprocessing": pre}
    small = {"channels": [16, 32], "kernel_sizes": [5, 3]} if preset == "fast" else {}
    return {
        **inp,
        "encoder": {"type": "series_cnn", **small},
        "preprocessing": {**pre, "augment": preset == "medium"},
    }


def _one_windowed(inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:  # fmt: skip
    """Windows for one series input only (two would cut their rows differently), and only
    for outputs a row's windows can vote on; any other long series is cropped instead."""
    voting = all(o.get("task") in ("binary", "multiclass", "multilabel", "regression")
                 for o in outputs)  # fmt: skip
    out, windowed = [], False
    for inp in inputs:
        pre = inp.get("preprocessing") or {}
        if inp["type"] == "timeseries" and "window" in pre:
            if voting and not windowed:
                windowed = True
            else:
                pre = {k: v for k, v in pre.items() if k not in ("window", "stride")}
                inp = {**inp, "preprocessing": {**pre, "max_length": WHOLE_SERIES}}
        out.append(inp)
    return out


def _text(inputs: list[dict[str, Any]], preset: str) -> list[dict[str, Any]]:
    """Text inputs: ``fast`` a word bag; ``medium`` hashed word and character n-grams
    (fastText-style); ``best`` frozen MiniLM plus the n-gram branch beside it. Several text
    columns share one encoder of each kind (``tied``), as the clothing benchmark's Title and
    Review Text do."""
    texts = [i for i in inputs if i["type"] == "text"]
    if not texts:
        return inputs
    rest = [i for i in inputs if i["type"] != "text"]
    kinds: list[tuple[str, dict[str, Any], dict[str, Any]]] = {
        "fast": [("", {"type": "bow", "embed_dim": 64}, {"min_freq": 2, "max_length": 128})],
        "medium": [("", {"type": "fasttext", "embed_dim": 64}, {"max_length": 256})],
        "best": [
            ("", {"type": "minilm", "freeze": True, "max_length": 128}, {}),
            ("_words", {"type": "fasttext", "embed_dim": 64}, {"max_length": 256}),
        ],
    }[preset]
    out: list[dict[str, Any]] = []
    for suffix, encoder, preprocessing in kinds:
        owner = f"{texts[0]['name']}{suffix}"
        for j, inp in enumerate(texts):
            name = f"{inp['name']}{suffix}"
            block: dict[str, Any] = {"name": name, "type": "text", "columns": [inp["name"]]}
            if j == 0:
                block["encoder"] = dict(encoder)
                if preprocessing:
                    block["preprocessing"] = dict(preprocessing)
            else:
                block["tied"] = owner
            out.append(block)
    return out + rest


def _image(inp: dict[str, Any], facts: dict[str, Any], preset: str) -> dict[str, Any]:
    """Small or greyscale images (digits, icons, scans): a CNN trained from scratch that keeps
    the layout; photos: frozen ImageNet EfficientNet-Lite0 (``best``) or a CNN at 64 px."""
    side, grey = facts["side"], facts["grey"]
    small = side <= 32 or (grey and side <= 64)
    if preset == "best" and not small:
        return {**inp, "encoder": {"type": "efficientnet_lite", "freeze": True}}
    size = min(side, 32 if preset == "fast" else 64)
    widths = [16, 32] if preset == "fast" else [16, 32, 64]
    return {
        **inp,
        "encoder": {"type": "image_cnn", "channels": widths, "out_dim": 64,
                    "pool": "flatten" if size <= 64 else "global"},
        "preprocessing": {"image_size": size, "channels": 1 if grey else 3,
                          "augment": preset != "fast" and not small},
    }  # fmt: skip


def _audio(inp: dict[str, Any], facts: dict[str, Any], preset: str) -> dict[str, Any]:
    """Log-mel with 25 ms windows every 20 ms at the clips' own rate (at most 16 kHz), cut at
    the 95th percentile length (rounded up to half a second); per-clip normalisation (other speakers and microphones) and
    SpecAugment; a CNN that averages over time and keeps the mel bands."""
    rate = min(int(facts["rate"]), 16000)
    seconds = min(max(math.ceil(facts["seconds"] * 2) / 2, 0.5), 10.0)
    return {
        **inp,
        "encoder": {"type": "audio_cnn", "channels": [8, 16, 32], "out_dim": 64, "pool": "freq"},
        "preprocessing": {"sample_rate": rate, "max_seconds": seconds,
                          "n_fft": int(0.025 * rate), "hop_length": int(0.02 * rate),
                          "n_mels": 40 if rate <= 8000 else 64, "normalize": "per_clip",
                          "specaugment": preset != "fast"},
    }  # fmt: skip


def _trainer(preset: str, rows: int, perceptual: int) -> dict[str, Any]:
    batch = 128 if preset == "fast" or rows >= 50_000 else 64
    steps = max(1, math.ceil(rows / batch))
    epochs = {"fast": 3, "medium": 10}.get(preset) or min(10, max(3, round(TARGET_STEPS / steps)))
    return {
        "epochs": epochs, "batch_size": batch, "lr": 2e-3 if batch == 128 else 1e-3,
        "schedule": "cosine", "early_stopping_patience": 2 if preset == "fast" else 3,
        "modality_dropout": 0.3 if preset == "best" and perceptual >= 2 else 0.0,
    }  # fmt: skip


def _frozen(inputs: list[dict[str, Any]]) -> bool:
    """Whether some input feeds frozen pretrained features (per frame for video)."""
    encoders = [i.get("encoder") or {} for i in inputs]
    return any(e.get("freeze") or (e.get("frame_encoder") or {}).get("freeze") for e in encoders)


def _solver(inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """MiniRocket's own classifier: when every encoder is fixed (MiniRocket or frozen) and the
    heads are linear, the heads are solved in closed form and nothing trains (``head_solver:
    ridge``, ``epochs: 0``). Beside trainable inputs, gradient training from the start held out
    better (watch recordings, validation rows: 0.83 against 0.67 after a ridge start)."""
    encoders = [i.get("encoder") or {} for i in inputs if not i.get("tied")]  # {}: default
    linear = all(o.get("head", {}).get("hidden", 0) == 0 for o in outputs)
    fixed = all(e.get("type") == "minirocket" or e.get("freeze") for e in encoders)
    if linear and fixed and any(e.get("type") == "minirocket" for e in encoders):
        return {"head_solver": "ridge", "epochs": 0}
    return {}


def _output(out: dict[str, Any], target: pd.Series, preset: str, frozen: bool) -> dict[str, Any]:
    """A hidden layer in the head only over frozen pretrained features (nothing else there
    combines them non-linearly); encoders trained end to end feed a linear head, which held out
    speakers better on AV-MNIST (0.968 vs 0.946 validation accuracy). ``best``: label smoothing
    for several classes, balanced class weights when the rarest class is under a quarter of the
    commonest."""
    out = {**out, "head": {"hidden": (32 if preset == "fast" else 128) if frozen else 0}}
    if out["task"] in ("binary", "multiclass") and preset == "best":
        counts = target.value_counts()
        if len(counts) >= 2 and counts.min() < 0.25 * counts.max():
            out["class_weights"] = "balanced"
        if out["task"] == "multiclass":
            out["head"]["label_smoothing"] = 0.1
    return out


def apply_preset(
    config: dict[str, Any], frame: pd.DataFrame, base_dir: Path, preset: str
) -> dict[str, Any]:
    """``config`` (a starter config) with every block the preset decides written out."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid choices: {', '.join(PRESETS)}")
    data = config.get("data") or {}
    access = FileAccess.of(bool(data.get("allow_outside", False)), data.get("roots") or [])
    inputs: list[dict[str, Any]] = []
    for inp in config["inputs"]:
        col = (inp.get("columns") or [inp["name"]])[0]
        if inp["type"] == "image":
            inp = _image(inp, image_facts(frame[col], base_dir, access), preset)
        elif inp["type"] == "audio":
            inp = _audio(inp, audio_facts(frame[col], base_dir, access), preset)
        elif inp["type"] == "timeseries":
            inp = _series(inp, series_facts(frame[col], base_dir, access), preset)
        elif inp["type"] == "video":  # its sound track, when most clips have one, as audio
            facts = video_facts(frame[col], base_dir, access)
            sound = {"name": f"{inp['name']}_audio", "type": "audio", "columns": [col]}
            if facts["audio"] and sound["name"] not in {i["name"] for i in config["inputs"]}:
                inputs.append(_audio(sound, facts, preset))
            inp = _video(inp, facts, preset, len(frame))
        inputs.append(inp)
    inputs = _one_windowed(_text(inputs, preset), config["outputs"])
    perceptual = len({i["type"] for i in inputs if i["type"] in PERCEPTUAL})
    frozen = _frozen(inputs)
    outputs = [_output(o, frame[o["name"]], preset, frozen) for o in config["outputs"]]
    trainer = {**config.get("trainer", {}), **_trainer(preset, len(frame), perceptual)}
    trainer |= _solver(inputs, outputs)
    first = outputs[0]
    if first["task"] == "binary":
        trainer["monitor"] = f"{first['name']}.roc_auc"
    return {**config, "inputs": inputs, "fusion": {"type": "concat"}, "outputs": outputs,
            "trainer": trainer, "preset": preset}  # fmt: skip


def starter(
    frame: pd.DataFrame,
    target: str | list[str],
    base_dir: Path,
    preset: str | None = "medium",
    drop: tuple[str, ...] | list[str] = (),
    keep: tuple[str, ...] | list[str] = (),
) -> Inferred:
    """What ``polymodal init`` writes: the inferred config (findings included) with the
    preset's choices spelled out (``preset=None``: the bare component defaults)."""
    inferred = infer_table(frame, target, base_dir, drop, keep)
    if preset is not None:
        inferred.config = apply_preset(inferred.config, frame, base_dir, preset)
    return inferred
