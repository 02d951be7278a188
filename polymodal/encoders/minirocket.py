"""MiniRocket (Dempster, Schmidt & Webb 2021) in torch: random-convolution features that are
nearly as accurate as the best time-series classifiers and need no training.

The 84 kernels of length 9 have weights -1 except three positions with 2 (every choice of 3 of
the 9 positions); each is applied at a few dilations (spread exponentially up to the training
series' length) to a random sum of 1 to 9 channels. Each (dilation, kernel) pair gets biases
from quantiles of its convolution output on one training series, and each bias gives one
feature: the proportion of positive values (PPV) of ``conv - bias`` over the series' real steps
(alternate pairs count only the steps whose whole kernel lies on real steps, as the original's
unpadded half). About ``num_features`` features (default 9,996 = 84 x 119). With
``difference`` as many again come from the series' first difference (steps t+1 - t, scaled to unit
variance on the reference rows, its own kernels and biases), MultiRocket's second series (Tan et
al. 2022): it reads how a signal changes, which generalised better across people on the watch
benchmark's validation folds (see benchmarks/timeseries/README.md).

Steps that must not count (padding, gaps; for the unpadded half also steps whose taps reach a
gap or beyond the ends) are pushed to -1e30 by one more input channel, a penalty that the
convolution itself adds (weight 1 at the centre tap, or at all nine), so no masking pass over
the (B, 84, T) outputs is needed. Inputs are rounded to 1/64 of a standard deviation (clipped at
16) so that every convolution output is an exact integer: ONNX Runtime then gives the very same
features as PyTorch, even where an output equals a bias (see :func:`on_grid`).

Fitting is the preprocessor's: it keeps a seeded bottom-k sample of training series
(``reference_rows``, asked for by :meth:`MiniRocket.input_spec`) and hands it over as the
injected ``series_reference``; the kernels, channel sums, biases and the features' means (the
output is centred for the head) are computed from it here and stored as buffers. No
parameter trains, so the frozen-feature cache runs it once per distinct input; everything is
fixed-shape convolution, pooling and comparison, so it exports to ONNX.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.encoders.series import SeriesEncoder, step_mask
from polymodal.registry import register
from polymodal.utils.threads import split_map

KERNEL_LENGTH = 9
COMBINATIONS = list(itertools.combinations(range(KERNEL_LENGTH), 3))  # 84 kernels
PHI = (np.sqrt(5) + 1) / 2
HALF = len(COMBINATIONS) // 2  # kernels per dilation with zero padding (the other half: none)
PENALTY = -1e30  # a step that must not count: far below every bias, finite in float32
GRID, GRID_CLIP = 64.0, 16.0  # values as exact integers (see on_grid)
PACKED_BLOCK = 1016  # steps summed as packed bytes at once (8 x 127: no carry between lanes)
CHUNK_BYTES = 2**20  # float outputs compared at once (about a core's L2 cache)
COMPARE_BYTES = 2**22  # and comparison bytes


def fit_dilations(
    length: int, num_features: int, max_dilations: int
) -> tuple[list[int], list[int]]:
    """(dilations, features per kernel at each dilation), as the reference implementation."""
    per_kernel = max(1, num_features // len(COMBINATIONS))
    true_max = min(per_kernel, max_dilations)
    multiplier = per_kernel / true_max
    exponent = np.log2((max(length, KERNEL_LENGTH) - 1) / (KERNEL_LENGTH - 1))
    spread = np.logspace(0, exponent, true_max, base=2).astype(np.int32)
    dilations, counts = np.unique(spread, return_counts=True)
    per_dilation = (counts * multiplier).astype(np.int32)
    for i in itertools.islice(
        itertools.cycle(range(len(per_dilation))), per_kernel - int(per_dilation.sum())
    ):
        per_dilation[i] += 1
    return [int(d) for d in dilations], [int(n) for n in per_dilation]


def kernel_weights(mix: np.ndarray, first: int = 0) -> Tensor:
    """(84, C) channel choices -> conv weights (84, C, 9): -1 everywhere, 2 at the kernel's three
    positions, on the chosen channels only (summing convolutions = convolving the sum). Kernels
    are ordered ``first`` (0 / 1) parity first: the reference pads kernel k at dilation i when
    ``i + k`` is even, and here the padded half comes first."""
    order = [k for k in range(len(COMBINATIONS)) if k % 2 == first]
    order += [k for k in range(len(COMBINATIONS)) if k % 2 != first]
    base = -np.ones((len(COMBINATIONS), KERNEL_LENGTH), dtype=np.float32)
    for row, k in enumerate(order):
        base[row, list(COMBINATIONS[k])] = 2.0
    return torch.from_numpy(mix[:, :, None].astype(np.float32) * base[:, None, :])


def on_grid(values: Tensor) -> Tensor:
    """Standardised values clipped to +-16 and rounded to multiples of 1/64, in units of 1/64:
    integers of at most 2**10, so every convolution output (at most 63 terms of weight <= 2) is
    an integer below 2**24, exact in float32 whatever the order of summation. PyTorch and ONNX
    Runtime then compute the same outputs and the same comparisons with the biases, also for a
    series whose output equals a bias (the training series the biases were drawn from)."""
    return torch.round(values.clamp(-GRID_CLIP, GRID_CLIP) * GRID)


def with_penalty(weight: Tensor) -> Tensor:
    """(84, C, 9) kernels -> (84, C + 1, 9): the last input channel is the penalty, read at the
    centre tap by the padded half and at every tap by the unpadded half."""
    penalty = torch.zeros(len(weight), 1, KERNEL_LENGTH)
    penalty[:HALF, 0, KERNEL_LENGTH // 2] = 1.0
    penalty[HALF:, 0] = 1.0
    return torch.cat([weight, penalty], dim=1)


def real_kernel_steps(keep: Tensor, dilation: int) -> Tensor:
    """(B, 1, T) real steps -> (B, 1, T) steps whose nine dilated taps are all real steps."""
    reach = (KERNEL_LENGTH // 2) * dilation
    gaps = F.pad(1 - keep, (reach, reach), value=1.0)  # beyond the ends counts as a gap
    return 1 - F.max_pool1d(gaps, KERNEL_LENGTH, stride=1, dilation=dilation)


@register("encoder", "minirocket")
class MiniRocket(SeriesEncoder):
    """MiniRocket features of a (B, T, C + 1) series batch -> (B, out_dim), centred."""

    differentiable = False  # proportions of steps above biases: no gradient to attribute
    difference_scale: Tensor  # buffer, with ``difference``

    def __init__(
        self,
        in_channels: int,
        series_length: int = 512,
        series_reference: list[Any] | None = None,  # standardised training series (injected)
        num_features: int = 10_000,  # rounded down to a multiple of 84
        max_dilations: int = 32,  # per kernel
        reference_rows: int = 32,  # training series the biases are drawn from
        center: bool = True,  # subtract each feature's mean over the reference rows
        seed: int = 0,
        difference: bool = False,  # also features of the first difference (twice the features)
    ) -> None:
        super().__init__()
        if not series_reference:
            raise ValueError(
                "minirocket: no training series to fit its biases on (series_reference); the "
                "timeseries preprocessing must keep some (reference_rows > 0)"
            )
        self.frozen = True  # no trainable parameter: its features are cached
        reference = [
            torch.tensor(r, dtype=torch.float32).reshape(len(r), -1) for r in series_reference
        ]
        length = min(max(len(r) for r in reference), series_length)
        self.dilations, self.per_dilation = fit_dilations(length, num_features, max_dilations)
        rng = np.random.default_rng(seed)
        quantiles = (np.arange(1, len(COMBINATIONS) * sum(self.per_dilation) + 1) * PHI) % 1
        batch = _pad(reference)  # (R, T, C + 1)
        start = 0
        for i, (dilation, n) in enumerate(zip(self.dilations, self.per_dilation, strict=True)):
            weight = kernel_weights(_channel_choices(rng, in_channels), first=i % 2)
            count = len(COMBINATIONS) * n
            q = torch.from_numpy(quantiles[start : start + count].reshape(len(COMBINATIONS), n))
            bias = _biases(batch, weight, dilation, q, rng)
            self.register_buffer(f"weight_{i}", with_penalty(weight))  # (84, C + 1, 9)
            self.register_buffer(f"bias_{i}", bias)  # (84, n)
            start += count
        self.out_dim = start
        self.register_buffer("feature_mean", torch.zeros(self.out_dim))
        if center:  # per-feature scales from a few dozen rows would be noise: centre only
            with torch.no_grad():
                self.feature_mean = self.features(batch).mean(0)
        self.derivative: MiniRocket | None = None
        if difference:
            self.derivative, scale = _derivative(
                in_channels, series_length, series_reference, num_features, max_dilations,
                center, seed + 1,
            )  # fmt: skip
            self.register_buffer("difference_scale", scale)
            self.out_dim += self.derivative.out_dim

    @classmethod
    def input_spec(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {"reference_rows": int(kwargs.get("reference_rows", 32))}

    def features(self, x: Tensor) -> Tensor:
        """Raw PPV features (B, out_dim) in [0, 1]. At each dilation the first 42 kernels count
        every real step (zero padding beyond the ends), the other 42 only the steps whose nine
        taps are all real (the reference's unpadded half)."""
        keep = step_mask(x).to(x.dtype)  # (B, T)
        if not _exporting():
            length = _gap_free_length(keep)
            if length:  # no gap before the padding every row shares (none, or trailing)
                return self._gap_free(x[:, :length])
        values = on_grid(x[..., :-1]) * keep[..., None]  # (B, T, C), gaps zero
        if not _exporting():
            spare = -x.shape[1] % 8  # whole int64 words for count_above (masked steps)
            values, keep = F.pad(values, (0, 0, 0, spare)), F.pad(keep, (0, spare))
        values = values.transpose(1, 2)  # (B, C, T)
        keep = keep[:, None, :]  # (B, 1, T)
        penalty = (1 - keep) * PENALTY  # (B, 1, T): 0 on real steps
        every = keep.sum(-1, keepdim=True).clamp(min=1.0)  # (B, 1, 1)
        most = (KERNEL_LENGTH // 2) * max(self.dilations)
        padded = torch.cat(
            [F.pad(values, (most, most)), F.pad(penalty, (most, most), value=PENALTY)], 1
        )  # (B, C + 1, T + 2 * most): zero values, penalised steps beyond the ends
        out = []
        for i, dilation in enumerate(self.dilations):
            weight: Tensor = getattr(self, f"weight_{i}")
            bias: Tensor = getattr(self, f"bias_{i}")
            skip = most - (KERNEL_LENGTH // 2) * dilation  # padding this dilation does not reach
            inputs = padded[..., skip : padded.shape[-1] - skip] if skip else padded
            conv = F.conv1d(inputs, weight, dilation=dilation)  # (B, 84, T)
            hits = count_above(conv, bias)  # (B, 84, n)
            inside = real_kernel_steps(keep, dilation).sum(-1, keepdim=True).clamp(min=1.0)
            steps = torch.cat([every.expand(-1, HALF, 1), inside.expand(-1, HALF, 1)], dim=1)
            out.append((hits.to(values.dtype) / steps).flatten(1))  # (B, 84 * n)
        return torch.cat(out, dim=1)

    def _gap_free(self, x: Tensor) -> Tensor:
        """:meth:`features` of a batch with no gap or padding, in eager mode: the same integers
        with less work. No penalty channel is needed, and the unpadded half is convolved and
        counted only where its taps lie inside the series (a third less work on 200 steps)."""
        values = on_grid(x[..., :-1]).transpose(1, 2)  # (B, C, T)
        steps = values.shape[-1]
        out = []
        for i, dilation in enumerate(self.dilations):
            weight = getattr(self, f"weight_{i}")[:, :-1]  # without the penalty channel
            bias: Tensor = getattr(self, f"bias_{i}")
            reach = (KERNEL_LENGTH // 2) * dilation
            conv = F.conv1d(values, weight[:HALF], padding=reach, dilation=dilation)
            ppv = [count_above(conv, bias[:HALF]).to(values.dtype) / steps]
            inside = steps - 2 * reach
            if inside > 0:
                conv = F.conv1d(values, weight[HALF:], dilation=dilation)  # (B, 42, inside)
                ppv.append(count_above(conv, bias[HALF:]).to(values.dtype) / inside)
            else:  # no step has all its taps inside: no hit (as the general path)
                ppv.append(values.new_zeros(len(values), HALF, bias.shape[1]))
            out.append(torch.cat(ppv, dim=1).flatten(1))  # (B, 84 * n)
        return torch.cat(out, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        if _exporting():
            return self._forward(x)
        return split_map(self._forward, x)  # a part of the batch per core (see utils.threads)

    def _forward(self, x: Tensor) -> Tensor:
        out = self.features(x) - self.feature_mean  # (B, out_dim)
        if self.derivative is None:
            return out
        return torch.cat([out, self.derivative(first_difference(x, self.difference_scale))], 1)


def _exporting() -> bool:
    return bool(torch.onnx.is_in_onnx_export() or torch.jit.is_tracing())


def _gap_free_length(keep: Tensor) -> int:
    """L when every row's steps are real up to L and padding after it (trailing padding changes
    no feature, so the batch cut to L has the general path's features); else 0."""
    length = int(keep.any(0).sum())
    return length if length and bool(keep[:, :length].all()) else 0


def first_difference(x: Tensor, scale: Tensor) -> Tensor:
    """(B, T, C + 1) -> (B, T, C + 1): value t+1 - value t (times ``scale`` per channel), a
    real step where both were; the last step is padding (the length, and ONNX's time axis,
    stay as they were)."""
    keep = x[:, 1:, -1:] * x[:, :-1, -1:]  # (B, T - 1, 1)
    steps = (x[:, 1:, :-1] - x[:, :-1, :-1]) * scale * keep
    return F.pad(torch.cat([steps, keep], dim=-1), (0, 0, 0, 1))


def _derivative(
    in_channels: int, series_length: int, reference: list[Any], num_features: int,
    max_dilations: int, center: bool, seed: int,
) -> tuple[MiniRocket, Tensor]:  # fmt: skip
    """The MiniRocket of the first difference, fitted on the reference rows' differences, and
    the per-channel scale that gives those unit variance (values on the 1/64 grid keep their
    resolution: a smooth signal's steps are much smaller than its spread)."""
    steps = [np.diff(np.asarray(r, dtype=np.float64), axis=0) for r in reference]
    steps = [d for d in steps if len(d)] or [np.zeros((1, in_channels))]
    spread = np.nanstd(np.concatenate(steps), 0)
    scale = np.where(np.isfinite(spread) & (spread > 1e-12), 1 / np.maximum(spread, 1e-12), 1.0)
    rows = [(d * scale).tolist() for d in steps]
    encoder = MiniRocket(
        in_channels, series_length, rows, num_features=num_features,
        max_dilations=max_dilations, center=center, seed=seed,
    )  # fmt: skip
    return encoder, torch.tensor(scale, dtype=torch.float32)


def _channel_choices(rng: np.random.Generator, channels: int) -> np.ndarray:
    """(84, C) 0/1: each kernel sums 1 to min(C, 9) random channels (log-uniform count)."""
    most = min(channels, KERNEL_LENGTH)
    counts = (2 ** rng.uniform(0, np.log2(most + 1), len(COMBINATIONS))).astype(np.int64)
    mix = np.zeros((len(COMBINATIONS), channels), dtype=np.int64)
    for k, n in enumerate(np.clip(counts, 1, most)):
        mix[k, rng.choice(channels, int(n), replace=False)] = 1
    return mix


def _pad(series: list[Tensor]) -> Tensor:
    """Reference series (T_i, C) -> (R, T, C + 1) with the step-mask channel."""
    steps = max(len(s) for s in series)
    out = torch.zeros(len(series), steps, series[0].shape[1] + 1)
    for r, s in enumerate(series):
        out[r, : len(s), :-1] = s
        out[r, : len(s), -1] = 1.0
    return out


def _biases(
    batch: Tensor, weight: Tensor, dilation: int, q: Tensor, rng: np.random.Generator
) -> Tensor:
    """(84, n) biases, sorted: quantiles ``q`` (84, n) of each kernel's output over the real
    steps of a random reference series (linear interpolation, as ``numpy.quantile``)."""
    values = on_grid(batch[..., :-1]).transpose(1, 2)  # (R, C, T)
    reach = (KERNEL_LENGTH // 2) * dilation
    conv = F.conv1d(values, weight, padding=reach, dilation=dilation)  # (R, 84, T)
    rows = torch.from_numpy(rng.integers(0, len(batch), len(weight)))
    picked = conv[rows, torch.arange(len(weight))].double()  # (84, T): kernel k on its row
    real = batch[rows, :, -1] > 0  # (84, T)
    ordered = picked.masked_fill(~real, float("inf")).sort(-1).values  # real steps first
    pos = q.double() * (real.sum(-1, keepdim=True) - 1).clamp(min=0)  # (84, n)
    lo, hi = pos.floor().long(), pos.ceil().long()
    low, high = ordered.gather(1, lo), ordered.gather(1, hi)
    out = low + (high - low) * (pos - lo)
    return out.float().sort(-1).values  # feature order within a kernel is free


def count_above(values: Tensor, thresholds: Tensor) -> Tensor:
    """(B, K, T) values and (K, n) thresholds -> (B, K, n) how many values exceed each one.

    An exported graph compares and sums. Eager PyTorch gives the same integers several times
    faster: a sum over a short last axis is slow, so the comparison bytes (0/1) are summed eight
    at a time as int64 words (no carry while a byte lane holds at most 127: blocks of 1,016
    steps) and the eight lanes added at the end, in cache-sized chunks of the batch. On a CPU,
    NumPy compares each kernel's outputs of the whole chunk (rows x steps in one run) with each
    threshold: long inner loops, about three times faster than row by row."""
    if _exporting():
        return (values[:, :, None, :] > thresholds[None, :, :, None]).sum(-1)
    b, k, t = values.shape
    n = thresholds.shape[1]
    cpu = values.device.type == "cpu" and values.dtype == thresholds.dtype == torch.float32
    total = torch.zeros(b, k, n, dtype=torch.long, device=values.device)
    rows = max(1, min(CHUNK_BYTES // (4 * k * t), COMPARE_BYTES // (k * n * t)))

    for start in range(0, b, rows):
        for at in range(0, t, PACKED_BLOCK):
            block = values[start : start + rows, :, at : at + PACKED_BLOCK]
            spare = -block.shape[-1] % 8
            if spare:
                block = F.pad(block, (0, spare), value=float("-inf"))
            counts = _count_cpu(block, thresholds) if cpu else _count_packed(block, thresholds)
            total[start : start + rows] += counts
    return total


def _count_packed(block: Tensor, thresholds: Tensor) -> Tensor:
    """(b, K, T') block (T' a multiple of 8, at most ``PACKED_BLOCK``) -> (b, K, n) counts."""
    above = block[:, :, None, :] > thresholds[None, :, :, None]  # (b, K, n, T')
    return lane_sums(above.view(torch.int64).sum(-1))  # eight byte-lane counts per word


def _count_cpu(block: Tensor, thresholds: Tensor) -> Tensor:
    """:func:`_count_packed` with NumPy's comparison, kernels first: each kernel's outputs over
    the whole chunk (b * T' values in one run) against its n thresholds."""
    b, k, t = block.shape
    kernels_first = np.ascontiguousarray(block.detach().numpy().transpose(1, 0, 2))  # (K, b, T')
    limits = thresholds.detach().numpy()[:, :, None]  # (K, n, 1)
    above = np.greater(kernels_first.reshape(k, 1, b * t), limits)  # (K, n, b * T') bytes
    words = torch.from_numpy(above).view(torch.int64).reshape(k, -1, b, t // 8)
    return lane_sums(words.sum(-1)).permute(2, 0, 1)  # (b, K, n)


def lane_sums(words: Tensor) -> Tensor:
    """int64 words of eight byte lanes, each at most 127 -> the sum of their lanes: pairs of
    lanes added into 16-bit lanes, then all four summed into the top 16 bits by one multiply."""
    pairs = (words & 0x00FF00FF00FF00FF) + ((words >> 8) & 0x00FF00FF00FF00FF)
    return (pairs * 0x0001000100010001) >> 48


__all__ = [
    "MiniRocket",
    "count_above",
    "first_difference",
    "fit_dilations",
    "kernel_weights",
    "lane_sums",
    "with_penalty",
]
