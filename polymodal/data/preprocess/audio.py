"""Audio cells -> fixed-length log-mel spectrograms (or waveforms), decoded once.

soundfile reads WAV/FLAC/OGG; stereo is averaged to mono; resampling is polyphase-free linear
interpolation after an anti-alias low-pass (good enough for speech features, no torchaudio);
log-mel via ``torch.stft`` and the Slaney mel filter bank from ``transformers.audio_utils``.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf
import torch
import torch.nn.functional as F

from polymodal.data.base import Preprocessor, Transformed
from polymodal.data.paths import ANYWHERE, FileAccess
from polymodal.data.preprocess.files import Absent, decode_column
from polymodal.data.stats import Moments, Stats, merge
from polymodal.registry import register


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Resample a mono float waveform; downsampling first low-passes with a windowed sinc."""
    if rate == target or len(wave) == 0:
        return wave
    if target < rate:
        cutoff = target / rate / 2  # normalised to the input rate
        taps = np.arange(-32, 33)
        kernel = 2 * cutoff * np.sinc(2 * cutoff * taps) * np.hamming(len(taps))
        wave = np.convolve(wave, kernel / kernel.sum(), mode="same")
    n_out = max(1, round(len(wave) * target / rate))
    t_out = np.arange(n_out) * rate / target
    return np.interp(t_out, np.arange(len(wave)), wave).astype(np.float32)


FIT_CLIPS = 2000  # distinct clips whose log-mel values give the global mean/std
MAX_RATE = 768_000  # Hz; a header claiming more is not a real recording
MAX_CHANNELS = 64
FILTER_REACH = 64  # input samples past the cut that the resampling filter still reads


@register("preprocessor", "audio")
class AudioPreprocessor(Preprocessor):
    modality = "audio"

    def __init__(
        self,
        sample_rate: int = 16000,  # every clip is resampled to this rate
        max_seconds: float = 2.0,  # clips are cut / zero-padded to this length
        features: str = "logmel",  # "logmel" (B, n_mels, T) or "waveform" (B, S)
        n_fft: int = 400,
        hop_length: int = 160,
        n_mels: int = 64,
        specaugment: bool = False,  # train-time time and frequency masking
        time_mask: int = 10,  # max masked frames
        freq_mask: int = 8,  # max masked mel bins
        normalize: str = "global",  # "global": train-set mean/std; "per_clip": each clip's own
        warp: float = 0.0,  # train-time stretch of the mel and time axes by up to +-warp
    ) -> None:
        if normalize not in ("global", "per_clip"):
            raise ValueError(
                f"audio preprocessing: normalize must be 'global' or 'per_clip', got {normalize!r}"
            )
        if features not in ("logmel", "waveform"):
            raise ValueError(
                f"audio preprocessing: features must be 'logmel' or 'waveform', got {features!r}"
            )
        self.sample_rate, self.max_seconds, self.features = sample_rate, max_seconds, features
        self.n_fft, self.hop_length, self.n_mels = n_fft, hop_length, n_mels
        self.specaugment, self.time_mask, self.freq_mask = specaugment, time_mask, freq_mask
        if not 0.0 <= warp < 1.0:
            raise ValueError(f"audio preprocessing: warp must be in [0, 1), got {warp!r}")
        self.normalize, self.warp = normalize, warp
        self.mean, self.std = 0.0, 1.0
        self._mel: torch.Tensor | None = None

    @property
    def n_samples(self) -> int:
        return round(self.sample_rate * self.max_seconds)

    def mel_filters(self) -> torch.Tensor:
        if self._mel is None:
            from transformers.audio_utils import mel_filter_bank

            fb = mel_filter_bank(
                num_frequency_bins=self.n_fft // 2 + 1,
                num_mel_filters=self.n_mels,
                min_frequency=0.0,
                max_frequency=self.sample_rate / 2,
                sampling_rate=self.sample_rate,
                norm="slaney",
                mel_scale="slaney",
            )
            self._mel = torch.tensor(fb, dtype=torch.float32)  # (F, n_mels)
        return self._mel

    def load_wave(self, target: bytes | Path) -> np.ndarray:
        """Mono float32 waveform at ``sample_rate``, cut / zero-padded to ``n_samples``. Only the
        first ``max_seconds`` (plus the resampling filter's reach) are read, so a long or hostile
        file costs no more than a short one; NaN / infinite samples are refused."""
        src: Any = io.BytesIO(target) if isinstance(target, bytes) else str(target)
        try:
            f = sf.SoundFile(src)
        except (sf.LibsndfileError, RuntimeError) as err:  # not a sound file: a video's track?
            return self._pad(self._track(target, err))
        with f:
            rate, channels = int(f.samplerate), int(f.channels)
            if not 0 < rate <= MAX_RATE or not 0 < channels <= MAX_CHANNELS:
                raise ValueError(
                    f"{rate} Hz and {channels} channels; expected at most {MAX_RATE} Hz and "
                    f"{MAX_CHANNELS} channels"
                )
            frames = math.ceil(self.max_seconds * rate) + FILTER_REACH
            wave = f.read(frames, dtype="float32", always_2d=True)
        if wave.shape[0] == 0:
            raise ValueError("the audio has no samples")
        if not np.isfinite(wave).all():
            raise ValueError("the audio has NaN or infinite samples")
        mono = wave.mean(axis=1)  # stereo / multi-channel -> mono
        return self._pad(resample(mono, rate, self.sample_rate))

    def _pad(self, mono: np.ndarray) -> np.ndarray:
        mono = mono[: self.n_samples]
        return np.pad(mono, (0, self.n_samples - len(mono))).astype(np.float32)

    def _track(self, target: bytes | Path, err: Exception) -> np.ndarray:
        """The audio track of a video container (mp4, mkv, webm, avi: an audio input reading a
        video column), at ``sample_rate``; a clip without one is a missing modality (``Absent``).
        A file that is no container either fails with soundfile's error."""
        from polymodal.data.preprocess.video_io import Limits, read_audio_track

        try:
            wave = read_audio_track(target, self.sample_rate, self.max_seconds, Limits())
        except ValueError:
            raise err from None
        if wave is None:
            raise Absent("the clip has no audio track")
        if not np.isfinite(wave).all():
            raise ValueError("the audio has NaN or infinite samples")
        return wave

    def decode(self, target: bytes | Path) -> torch.Tensor:
        return torch.from_numpy(self.load_wave(target))  # (S,)

    def logmel(self, wave: torch.Tensor) -> torch.Tensor:
        """(S,) or (B, S) waveform -> (n_mels, T) or (B, n_mels, T) log-mel (not standardised)."""
        spec = (
            torch.stft(
                wave,
                self.n_fft,
                self.hop_length,
                window=torch.hann_window(self.n_fft, device=wave.device),
                center=True,
                return_complex=True,
            )
            .abs()
            .pow(2)
        )  # (B, F, T)
        fb = self.mel_filters().to(wave.device)  # (F, n_mels)
        mel = torch.matmul(spec.transpose(-1, -2), fb).transpose(-1, -2)  # (B, n_mels, T)
        return torch.log(mel + 1e-6)

    def finish(self, waves: torch.Tensor) -> torch.Tensor:
        """A chunk of padded waveforms (B, S) -> model inputs: (B, n_mels, T) standardised
        log-mel, or the waveforms themselves."""
        if self.features == "waveform":
            return waves
        mel = self.logmel(waves)  # (B, n_mels, T)
        if self.normalize == "global":
            return (mel - self.mean) / self.std
        return self._per_clip(mel, _lengths(waves))

    def _per_clip(self, mel: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """CMVN over each clip's own frames, so loudness and microphone differences between
        speakers cancel; padding frames become 0 (the clip's mean)."""
        frames = mel.shape[-1]
        valid = (-(-lengths // self.hop_length)).clamp(1, frames)  # (B,) ceil division
        keep = (torch.arange(frames) < valid[:, None])[:, None, :].to(mel.dtype)  # (B, 1, T)
        count = keep.sum((1, 2)) * mel.shape[1]  # (B,)
        mean = (mel * keep).sum((1, 2)) / count
        centred = (mel - mean[:, None, None]) * keep
        var = centred.pow(2).sum((1, 2)) / (count - 1).clamp(min=1)  # unbiased, as Tensor.std
        return centred / var.sqrt().clamp(min=1e-3)[:, None, None]

    def _empty(self) -> torch.Tensor:
        if self.features == "waveform":
            return torch.zeros(self.n_samples)
        frames = self.n_samples // self.hop_length + 1
        return torch.zeros(self.n_mels, frames)

    def partial_fit(
        self,
        frame: pd.DataFrame,
        columns: list[str],
        base_dir: Path,
        stats: Stats | None = None,
        source: str = "<train>",
        access: FileAccess = ANYWHERE,
    ) -> Stats:
        """Log-mel value moments over up to ``FIT_CLIPS`` distinct training clips (per part)."""
        stats = dict(stats or {"clips": 0})
        budget = FIT_CLIPS - stats["clips"]
        if self.features != "logmel" or self.normalize != "global" or budget <= 0:
            return stats
        sample = frame[columns[0]].drop_duplicates().head(budget)
        t = decode_column(
            sample, base_dir, self.decode, self._empty(), "", source, "mask", self.logmel,
            access=access,
        )  # fmt: skip
        assert t.index is not None
        vals = t.values[t.index[t.present].unique()]  # readable clips (slot 0: the placeholder)
        if len(vals):
            part = Moments.of(vals.reshape(-1).double().numpy())
            stats = {
                "clips": stats["clips"] + len(vals),
                "moments": merge(stats.get("moments"), part),
            }
        return stats

    def finish_fit(self, stats: Stats, columns: list[str]) -> AudioPreprocessor:
        """Global log-mel mean/std of the sampled training clips."""
        self.mean, self.std = 0.0, 1.0
        moments: Moments | None = stats.get("moments")
        if moments is not None and moments.count[0] > 0:
            self.mean = float(moments.mean[0])
            self.std = float(np.sqrt(moments.m2[0] / max(moments.count[0] - 1, 1))) or 1.0
        return self

    def transform(
        self,
        frame: pd.DataFrame,
        columns: list[str],
        base_dir: Path,
        source: str = "<table>",
        bad_cells: str = "raise",
        access: FileAccess = ANYWHERE,
    ) -> Transformed:
        return decode_column(
            frame[columns[0]],
            base_dir,
            self.decode,
            self._empty(),
            "a readable, non-empty audio file (WAV/FLAC/OGG)",
            source,
            bad_cells,
            finish=self.finish,
            access=access,
        )

    @property
    def augments(self) -> bool:
        return (self.specaugment or self.warp > 0) and self.features == "logmel"

    def augment(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``warp`` (see :func:`warp_logmel`), then SpecAugment: one random time mask and one
        frequency mask per example."""
        if not self.augments:
            return x
        if self.warp > 0:
            x = warp_logmel(x, self.warp, generator)
        if not self.specaugment:
            return x
        b, n_mels, frames = x.shape

        def band(size: int, limit: int) -> torch.Tensor:  # (B, limit) bool mask of one random band
            width = (torch.rand(b, generator=generator) * (size + 1)).long()
            start = (torch.rand(b, generator=generator) * (limit - width + 1).clamp(min=1)).long()
            pos = torch.arange(limit)
            return (pos >= start[:, None]) & (pos < (start + width)[:, None])

        t_mask = band(self.time_mask, frames).to(x.device)[:, None, :]
        f_mask = band(self.freq_mask, n_mels).to(x.device)[:, :, None]
        return x.masked_fill(t_mask | f_mask, 0.0)

    def spec(self) -> dict[str, Any]:
        if self.features == "waveform":
            return {"sample_rate": self.sample_rate}
        return {"n_mels": self.n_mels}

    def fitted_state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std = float(state["mean"]), float(state["std"])


def warp_logmel(x: torch.Tensor, most: float, generator: torch.Generator | None) -> torch.Tensor:
    """(B, n_mels, T) log-mels, each stretched along the mel axis and along time by its own
    random factors in [1 - most, 1 + most], anchored at the lowest band and the first frame
    (what lies beyond the edges reads 0, the normalised mean). A longer or shorter vocal tract
    scales a voice's formants (vocal tract length perturbation, Jaitly & Hinton 2013), and
    speakers differ in tempo: both help a model hear a voice it was not trained on."""
    b, n_mels, frames = x.shape
    scale = 1 + (torch.rand(b, 2, generator=generator) * 2 - 1) * most  # (B, 2): time, mel
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = 1 / scale[:, 0], 1 / scale[:, 1]
    theta[:, 0, 2], theta[:, 1, 2] = 1 / scale[:, 0] - 1, 1 / scale[:, 1] - 1  # -1 stays -1
    grid = F.affine_grid(theta.to(x), [b, 1, n_mels, frames], align_corners=False)
    return F.grid_sample(x[:, None], grid, align_corners=False)[:, 0]


def _lengths(waves: torch.Tensor) -> torch.Tensor:
    """Samples up to the last non-zero one, per row of (B, S): the clip without its zero padding
    (trailing digital silence counts as padding too, which per-clip statistics should skip)."""
    nonzero = waves != 0
    last = waves.shape[1] - nonzero.flip(1).int().argmax(1)  # (B,)
    return torch.where(nonzero.any(1), last, torch.zeros_like(last))


__all__ = ["AudioPreprocessor", "resample"]
