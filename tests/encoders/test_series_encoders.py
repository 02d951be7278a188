"""Time-series encoders beyond the registry-wide contract: outputs independent of trailing
padding, ONNX parity at lengths other than the traced one, and MiniRocket against an independent
NumPy transform (the reference implementation's C_alpha / C_gamma arithmetic)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import polymodal.encoders  # noqa: F401  (registers encoders)
from polymodal import registry
from polymodal.encoders.cache import is_frozen
from polymodal.encoders.minirocket import (
    HALF,
    PACKED_BLOCK,
    MiniRocket,
    count_above,
    fit_dilations,
    lane_sums,
    on_grid,
)
from polymodal.export import onnx as ox
from polymodal.fusion.concat import ConcatFusion
from polymodal.models import MultimodalModel
from tests.encoders.test_encoders import build

SERIES = ["series_cnn", "series_gru", "patchtst", "minirocket"]


def pad(x: torch.Tensor, steps: int) -> torch.Tensor:
    return torch.cat([x, torch.zeros(x.shape[0], steps, x.shape[2])], dim=1)


@pytest.mark.parametrize("name", ["series_cnn", "patchtst", "minirocket"])
def test_output_does_not_depend_on_trailing_padding(name):
    torch.manual_seed(0)
    encoder, x = build(name)
    encoder.eval()
    with torch.no_grad():
        alone = encoder(x[1:2, :7])  # row 1: 7 steps (one a gap), then padding
        padded = encoder(pad(x[1:2], 9))
        in_batch = encoder(x)[1:2]
    assert torch.allclose(alone, padded, atol=1e-5) and torch.allclose(alone, in_batch, atol=1e-5)


@pytest.mark.parametrize("name", SERIES)
def test_onnx_parity_at_other_lengths(name, tmp_path):
    torch.manual_seed(0)
    encoder, x = build(name)
    head = registry.build("head", {"type": "multiclass"}, in_dim=encoder.out_dim + 1, num_outputs=3)
    model = MultimodalModel(
        {"x": encoder}, ConcatFusion({"x": encoder.out_dim}), {"y": head}
    ).eval()
    mask = torch.tensor([True, True, False])
    report = ox.export_checked(model, ({"x": x}, {"x": mask}), tmp_path / "m.onnx", {"x"})
    assert {"shorter", "half"} <= set(report["by_case"]) and report["max_abs_diff"] <= 1e-4
    runner = ox.OnnxModel(tmp_path / "m.onnx")
    for steps in (1, 5, 29):  # shorter and longer than the traced 12 steps
        longer = torch.randn(4, steps, 4)
        longer[..., -1] = (torch.rand(4, steps) > 0.2).float()
        batch = ({"x": longer}, {"x": torch.ones(4, dtype=torch.bool)})
        with torch.no_grad():
            ref = model(*batch)["y"]
        assert (runner(*batch)["y"] - ref).abs().max() <= 1e-4, steps


def test_minirocket_has_no_parameters_and_counts_as_frozen():
    encoder, _ = build("minirocket")
    assert not list(encoder.parameters()) and is_frozen(encoder)
    assert not is_frozen(nn.ReLU())  # no weights at all: nothing to key a cache on
    assert not is_frozen(build("series_cnn")[0])


def test_minirocket_needs_training_series():
    with pytest.raises(ValueError, match="no training series to fit its biases"):
        MiniRocket(in_channels=3, series_reference=None)


def reference_transform(x: np.ndarray, enc: MiniRocket) -> np.ndarray:
    """MiniRocket's transform as the reference implementation computes it (one series at a
    time, C_alpha = -X summed over the 9 taps, C_gamma = 3X at each tap), from the encoder's
    kernels, channel choices and biases: features in the encoder's order."""
    length = x.shape[0]
    out = []
    for i, dilation in enumerate(enc.dilations):
        weight = getattr(enc, f"weight_{i}").numpy()[:, :-1]  # the last channel: the penalty
        bias = getattr(enc, f"bias_{i}").numpy()
        padding = 4 * dilation
        for k in range(weight.shape[0]):
            channels = np.flatnonzero(np.abs(weight[k]).sum(1))
            positions = np.flatnonzero(weight[k, channels[0]] == 2)
            a, g = -x[:, channels].T, 3 * x[:, channels].T  # (c, T)
            c_alpha = a.copy()
            c_gamma = np.zeros((9, len(channels), length))
            c_gamma[4] = g
            start, end = dilation, length - padding
            for j in range(4):
                c_alpha[:, -end:] += a[:, :end]
                c_gamma[j, :, -end:] = g[:, :end]
                end += dilation
            for j in range(5, 9):
                c_alpha[:, :-start] += a[:, start:]
                c_gamma[j, :, :-start] = g[:, start:]
                start += dilation
            conv = (c_alpha + c_gamma[positions].sum(0)).sum(0)
            if k >= HALF:  # the unpadded half: only positions whose taps are all inside
                conv = conv[padding:-padding] if padding else conv
            out += [float((conv > b).mean()) if len(conv) else 0.0 for b in bias[k]]
    return np.array(out)


def test_minirocket_matches_the_reference_transform():
    rng = np.random.default_rng(0)
    reference = [rng.normal(size=(60, 4)).tolist() for _ in range(6)]
    enc = MiniRocket(in_channels=4, series_length=60, series_reference=reference, num_features=840)
    series = rng.normal(size=(3, 60, 4)).astype(np.float32)
    x = torch.cat([torch.from_numpy(series), torch.ones(3, 60, 1)], dim=-1)
    series = on_grid(torch.from_numpy(series)).double().numpy()  # what the kernels see
    with torch.no_grad():
        got = enc.features(x).numpy()
    assert got.shape == (3, enc.out_dim) and enc.out_dim == 840
    for row in range(3):
        want = reference_transform(series[row], enc)
        assert np.abs(got[row] - want).max() <= 1e-6
    for i in range(len(enc.dilations)):  # biases sorted: quantiles of real convolution outputs
        bias = getattr(enc, f"bias_{i}")
        assert torch.equal(bias, bias.sort(-1).values)


def onnx_session(enc: nn.Module, x: torch.Tensor, path) -> ort.InferenceSession:
    """``enc`` exported alone (input ``x``: batch and time axes dynamic), ready to run."""
    torch.onnx.export(
        enc, (x,), str(path), input_names=["x"], output_names=["y"],
        dynamic_axes={"x": {0: "b", 1: "t"}}, opset_version=17, dynamo=False,
    )  # fmt: skip
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_minirocket_onnx_features_equal_torch_even_at_ties(tmp_path):
    """The biases are quantiles of the reference series' outputs, so those series hit them
    exactly: with exact integer convolutions both runtimes compare alike (no 1/T jumps)."""
    rng = np.random.default_rng(1)
    reference = [rng.normal(size=(int(n), 3)).tolist() for n in rng.integers(20, 40, 8)]
    enc = MiniRocket(in_channels=3, series_length=40, series_reference=reference).eval()
    x = torch.zeros(8, 40, 4)
    for r, s in enumerate(reference):
        x[r, : len(s), :3] = torch.tensor(s)
        x[r, : len(s), 3] = 1.0
    runner = onnx_session(enc, x, tmp_path / "m.onnx")
    with torch.no_grad():
        want = enc(x).numpy()
    assert np.array_equal(runner.run(None, {"x": x.numpy()})[0], want)


def test_minirocket_dilations_follow_the_reference():
    dilations, per = fit_dilations(60, 840, 32)  # 2 ** linspace(0, log2(59 / 8), 10), floored
    assert dilations == [1, 2, 3, 4, 5, 7] and per == [4, 1, 2, 1, 1, 1]
    assert fit_dilations(7, 9996, 32) == ([1], [119])  # series shorter than a kernel


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # NumPy's and torch's bytes
@pytest.mark.parametrize("steps", [1, 7, 200, 1017, 2100])
def test_count_above_packed_equals_plain_comparison(steps, dtype):
    g = torch.Generator().manual_seed(steps)
    values = torch.randn(21, 5, steps, generator=g, dtype=dtype).round(decimals=1)  # ties
    values[0, 0, : steps // 2] = float("-inf")
    thresholds = torch.randn(5, 4, generator=g, dtype=dtype).round(decimals=1)
    plain = (values[:, :, None, :] > thresholds[None, :, :, None]).sum(-1)
    assert torch.equal(count_above(values, thresholds), plain)


def test_count_above_chunks_and_lanes_reach_their_limit():
    g = torch.Generator().manual_seed(0)
    values = torch.randn(64, 84, 200, generator=g).round(decimals=1)  # several chunks
    thresholds = torch.randn(84, 6, generator=g).round(decimals=1).sort(-1).values
    plain = (values[:, :, None, :] > thresholds[None, :, :, None]).sum(-1)
    assert torch.equal(count_above(values, thresholds), plain)
    every = torch.full((2, 3, PACKED_BLOCK), 5.0)  # 127 in each byte lane of every word
    assert count_above(every, torch.zeros(3, 2)).eq(PACKED_BLOCK).all()
    assert lane_sums(torch.full((4,), 0x7F7F7F7F7F7F7F7F)).eq(8 * 127).all()


@pytest.mark.parametrize("steps", [60, 20])  # 20: the widest kernels have no inner step
def test_minirocket_gap_free_batches_take_a_shorter_path_to_the_same_features(steps, tmp_path):
    """A batch without gaps (or with padding only after every row's end) skips the penalty
    channel and the unpadded half's edges; the features are the very integers of the general
    path (forced here by one more row with a gap inside), also split over two threads, and ONNX
    (always the general graph) agrees."""
    rng = np.random.default_rng(3)
    reference = [rng.normal(size=(60, 3)).tolist() for _ in range(4)]
    enc = MiniRocket(3, 60, reference, num_features=840, difference=True).eval()
    x = torch.cat([torch.randn(40, steps, 3), torch.ones(40, steps, 1)], dim=-1)
    gapped = torch.cat([torch.randn(1, steps + 1, 3), torch.ones(1, steps + 1, 1)], dim=-1)
    gapped[0, 1, -1] = 0.0
    with torch.no_grad():
        before = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            general = enc(torch.cat([pad(x, 1), gapped]))[:40]  # the general path throughout
            serial, trailing = enc(x), enc(pad(x, 3))
            torch.set_num_threads(2)
            split = enc(x)  # two parts of 20 rows, one thread each
            assert torch.get_num_threads() == 2
        finally:
            torch.set_num_threads(before)
    assert torch.equal(serial, general) and torch.equal(split, general)
    assert torch.equal(trailing, general)
    runner = onnx_session(enc, x[:5], tmp_path / "m.onnx")
    assert np.array_equal(runner.run(None, {"x": x[:5].numpy()})[0], general[:5].numpy())


def test_minirocket_difference_adds_the_features_of_the_first_difference(tmp_path):
    """``difference``: the features of the series, then a second MiniRocket's over its first
    difference (scaled to unit variance on the reference rows; a step real where both ends
    are); ONNX gives the same numbers at another length than the traced one."""
    rng = np.random.default_rng(2)
    reference = [np.cumsum(rng.normal(size=(int(n), 3)), 0).tolist() for n in (30, 36, 40)]
    plain = MiniRocket(
        in_channels=3, series_length=40, series_reference=reference, num_features=168
    )
    enc = MiniRocket(3, 40, reference, num_features=168, difference=True).eval()
    assert enc.out_dim == 2 * plain.out_dim and enc.derivative is not None
    x = torch.zeros(2, 40, 4)
    x[0, :, :3], x[0, :, 3] = torch.tensor(np.cumsum(rng.normal(size=(40, 3)), 0)), 1.0
    x[1, :25, :3], x[1, :25, 3] = torch.tensor(np.cumsum(rng.normal(size=(25, 3)), 0)), 1.0
    x[1, 10, 3] = 0.0  # a gap: the differences on both sides of it do not count
    steps = np.concatenate([np.diff(np.asarray(r), axis=0) for r in reference])
    assert torch.allclose(enc.difference_scale, torch.tensor(1 / steps.std(0)).float())
    diff = torch.zeros(2, 40, 4)
    for r in range(2):
        for t in range(39):
            real = float(x[r, t, 3] * x[r, t + 1, 3])
            diff[r, t, :3] = (x[r, t + 1, :3] - x[r, t, :3]) * enc.difference_scale * real
            diff[r, t, 3] = real
    with torch.no_grad():
        got = enc(x)
        assert torch.equal(got[:, : plain.out_dim], plain(x))
        assert torch.allclose(got[:, plain.out_dim :], enc.derivative(diff), atol=1e-6)
    runner = onnx_session(enc, x, tmp_path / "m.onnx")
    with torch.no_grad():
        assert np.array_equal(runner.run(None, {"x": x[:, :30].numpy()})[0], enc(x[:, :30]).numpy())
