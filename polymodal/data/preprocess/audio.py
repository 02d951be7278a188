"""Audio cells -> fixed-length log-mel spectrograms (or waveforms), decoded once.

soundfile reads WAV/FLAC/OGG; stereo is averaged to mono; resampling is polyphase-free linear
interpolation after an anti-alias low-pass (good enough for speech features, no torchaudio);
log-mel via ``torch.stft`` and the Slaney mel filter bank from ``transformers.audio_utils``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf
import torch

from polymodal.data.base import Preprocessor, Transformed
from polymodal.data.preprocess.files import decode_column
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
        self.normalize = normalize
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

    def load_wave(self, target: bytes | Path) -> tuple[np.ndarray, int]:
        """Mono waveform at ``sample_rate``, cut / zero-padded to ``n_samples``; and its length
        before padding."""
        src: Any = io.BytesIO(target) if isinstance(target, bytes) else str(target)
        wave, rate = sf.read(src, dtype="float32", always_2d=True)
        if wave.shape[0] == 0:
            raise ValueError("the audio has no samples")
        mono = wave.mean(axis=1)  # stereo / multi-channel -> mono
        mono = resample(mono, int(rate), self.sample_rate)[: self.n_samples]
        return np.pad(mono, (0, self.n_samples - len(mono))), len(mono)

    def logmel(self, wave: torch.Tensor) -> torch.Tensor:
        """(S,) or (B, S) waveform -> (n_mels, T) or (B, n_mels, T) log-mel (not standardised)."""
        spec = (
            torch.stft(
                wave,
                self.n_fft,
                self.hop_length,
                window=torch.hann_window(self.n_fft),
                center=True,
                return_complex=True,
            )
            .abs()
            .pow(2)
        )
        mel = torch.matmul(spec.transpose(-1, -2), self.mel_filters()).transpose(-1, -2)
        return torch.log(mel + 1e-6)

    def decode(self, target: bytes | Path) -> torch.Tensor:
        wave, length = self.load_wave(target)
        x = torch.from_numpy(wave)
        if self.features == "waveform":
            return x
        mel = self.logmel(x)  # (n_mels, T)
        if self.normalize == "global":
            return (mel - self.mean) / self.std
        # per-clip (CMVN): statistics of the clip's own frames, so loudness and microphone
        # differences between speakers cancel; padding frames become 0 (the clip's mean)
        valid = max(1, min(mel.shape[1], -(-length // self.hop_length)))
        speech = mel[:, :valid]
        out = (mel - speech.mean()) / speech.std().clamp(min=1e-3)
        out[:, valid:] = 0.0
        return out

    def _empty(self) -> torch.Tensor:
        if self.features == "waveform":
            return torch.zeros(self.n_samples)
        frames = self.n_samples // self.hop_length + 1
        return torch.zeros(self.n_mels, frames)

    def fit(self, frame: pd.DataFrame, columns: list[str], base_dir: Path) -> AudioPreprocessor:
        """Global log-mel mean/std from (up to 2,000 distinct) training clips."""
        if self.features == "logmel" and self.normalize == "global":
            self.mean, self.std = 0.0, 1.0
            sample = frame[columns[0]].drop_duplicates().head(2000).to_frame()
            t = decode_column(
                sample[columns[0]], base_dir, self.decode, self._empty(), "", "<train>", "mask"
            )
            vals = t.values[1:]  # slot 0 is the empty placeholder
            if len(vals):
                self.mean, self.std = float(vals.mean()), float(vals.std()) or 1.0
        return self

    def transform(
        self,
        frame: pd.DataFrame,
        columns: list[str],
        base_dir: Path,
        source: str = "<table>",
        bad_cells: str = "raise",
    ) -> Transformed:
        return decode_column(
            frame[columns[0]],
            base_dir,
            self.decode,
            self._empty(),
            "a readable, non-empty audio file (WAV/FLAC/OGG)",
            source,
            bad_cells,
        )

    def augment(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """SpecAugment: one random time mask and one frequency mask per example."""
        if not self.specaugment or self.features != "logmel":
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


__all__ = ["AudioPreprocessor", "resample"]
