"""Plots for reports and explanations, drawn with matplotlib's Agg backend (no display needed) and
returned as PNG bytes, so they can be written to files or embedded in HTML."""

from __future__ import annotations

import io
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from sklearn import metrics as skm

DPI = 100
POS, NEG = "#d62728", "#1f77b4"  # attribution colours: for / against the explained class


def png(fig: Figure, layout: bool = True) -> bytes:
    buf = io.BytesIO()
    if layout:
        fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def _main_value(report: Any, output: str, metric: str) -> float | None:
    value = report.get(output, {}).get(metric) if isinstance(report, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def training_curves(history: list[dict[str, Any]], monitors: dict[str, str]) -> bytes | None:
    """Loss (train and validation) and each output's validation metric, per epoch."""
    if not history:
        return None
    epochs = [int(r["epoch"]) for r in history]
    fig, axes = plt.subplots(1, 1 + len(monitors), figsize=(4.6 * (1 + len(monitors)), 3.4))
    axes = np.atleast_1d(axes)
    axes[0].plot(epochs, [r.get("train_loss") for r in history], marker="o", label="train")
    val = [r["val"].get("loss") if isinstance(r.get("val"), dict) else None for r in history]
    if any(v is not None for v in val):
        axes[0].plot(epochs, val, marker="o", label="validation")
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss")
    axes[0].legend(fontsize=8)
    for ax, (output, metric) in zip(axes[1:], monitors.items(), strict=True):
        values = [_main_value(r.get("val"), output, metric) for r in history]
        ax.plot(epochs, values, marker="o", color="#2ca02c")
        ax.set(xlabel="epoch", ylabel=metric, title=f"validation {output} {metric}")
        if all(v is None for v in values):
            ax.text(0.5, 0.5, "no validation set", ha="center", transform=ax.transAxes)
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
    return png(fig)


def confusion(matrix: list[list[int]], labels: list[str], title: str) -> bytes:
    """Counts, coloured by the share of each true class (row)."""
    cm = np.asarray(matrix, dtype=float)
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    side = min(9.0, 2.4 + 0.3 * len(labels))
    fig, ax = plt.subplots(figsize=(side + 1, side))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, rotation=45 if len(labels) > 4 else 0, ha="right")
    ax.set_yticks(ticks, labels)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if len(labels) <= 20:
        for i in ticks:
            for j in ticks:
                color = "white" if share[i, j] > 0.6 else "black"
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", color=color, fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of true class")
    return png(fig)


def roc_pr(target: np.ndarray, proba: np.ndarray, positive: str) -> bytes:
    """ROC and precision-recall curves of a binary output (``proba``: positive class)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.8))
    fpr, tpr, _ = skm.roc_curve(target, proba)
    a.plot(fpr, tpr, label=f"AUC {skm.auc(fpr, tpr):.3f}")
    a.plot([0, 1], [0, 1], color="grey", linestyle=":")
    a.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC ({positive})")
    prec, rec, _ = skm.precision_recall_curve(target, proba)
    ap = skm.average_precision_score(target, proba)
    b.plot(rec, prec, label=f"AP {ap:.3f}")
    b.axhline(float(np.mean(target)), color="grey", linestyle=":", label="base rate")
    b.set(xlabel="recall", ylabel="precision", title=f"precision-recall ({positive})")
    for ax in (a, b):
        ax.legend(fontsize=8, loc="lower right" if ax is a else "lower left")
    return png(fig)


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Per confidence bin: mean confidence, accuracy, count; and the expected calibration error."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        sel = which == b
        if sel.any():
            rows.append((float(confidence[sel].mean()), float(correct[sel].mean()), int(sel.sum())))
    n = max(len(confidence), 1)
    ece = sum(c * abs(conf - acc) for conf, acc, c in rows) / n
    return {"bins": rows, "ece": float(ece)}


def calibration(confidence: np.ndarray, correct: np.ndarray, title: str) -> bytes:
    """Reliability diagram: observed frequency against predicted probability, with counts."""
    rel = reliability(confidence, correct)
    fig, (a, b) = plt.subplots(
        2, 1, figsize=(5, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    conf, acc, count = (np.array(v) for v in zip(*rel["bins"], strict=True))
    a.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    a.plot(conf, acc, marker="o", label=f"model (ECE {rel['ece']:.3f})")
    a.set(ylabel="observed frequency", title=title, xlim=(0, 1), ylim=(0, 1))
    a.legend(fontsize=8)
    b.bar(conf, count, width=0.06, color="#7f7f7f")
    b.set(xlabel="predicted probability", ylabel="rows")
    return png(fig)


def scatter(target: np.ndarray, pred: np.ndarray, title: str) -> bytes:
    """Regression: predictions against true values."""
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.scatter(target, pred, s=8, alpha=0.5)
    lo, hi = float(min(target.min(), pred.min())), float(max(target.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle=":")
    ax.set(xlabel="true", ylabel="predicted", title=title)
    return png(fig)


def importance(result: dict[str, Any]) -> bytes:
    """Per output, the metric drop per modality for ablation and permutation, with 95% CIs."""
    outputs = list(result["metric"])
    names = sorted(result["modalities"])
    fig, axes = plt.subplots(
        1, len(outputs), figsize=(6 * len(outputs), 1.2 + 0.55 * len(names)), squeeze=False
    )
    y = np.arange(len(names))
    for ax, output in zip(axes[0], outputs, strict=True):
        for k, (kind, color) in enumerate((("ablation", "#1f77b4"), ("permutation", "#ff7f0e"))):
            stats = [result["modalities"][n][kind][output] for n in names]
            drop = np.array([s["drop"] if s["drop"] is not None else np.nan for s in stats])
            lo = np.array([s["ci_low"] if s["ci_low"] is not None else np.nan for s in stats])
            hi = np.array([s["ci_high"] if s["ci_high"] is not None else np.nan for s in stats])
            err = np.vstack([np.clip(drop - lo, 0, None), np.clip(hi - drop, 0, None)])
            ax.barh(y + (k - 0.5) * 0.38, drop, height=0.36, color=color, label=kind)
            ax.errorbar(drop, y + (k - 0.5) * 0.38, xerr=np.nan_to_num(err), fmt="none", ecolor="k")
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_yticks(y, names)
        metric = result["metric"][output]
        ax.set(xlabel=f"drop in {metric} (higher = more important)", title=output)
        ax.legend(fontsize=8)
    return png(fig)


def channel_importance(result: dict[str, Any]) -> bytes:
    """Per series input (a panel each), the drop of each output's main metric when one channel
    is occluded (set to its training mean)."""
    inputs = list(result["inputs"])
    outputs = list(result["metric"])
    fig, axes = plt.subplots(1, len(inputs), figsize=(6 * len(inputs), 3.2), squeeze=False)
    for ax, name in zip(axes[0], inputs, strict=True):
        channels = result["inputs"][name]["channels"]
        y = np.arange(len(channels))[::-1]
        height = 0.8 / max(len(outputs), 1)
        for k, output in enumerate(outputs):
            drops = [np.nan if v is None else v for v in result["inputs"][name]["drop"][output]]
            label = f"{output} {result['metric'][output]}"
            ax.barh(y - k * height, drops, height=height, label=label)
        ax.set_yticks(y - (len(outputs) - 1) * height / 2, channels, fontsize=8)
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set(xlabel="drop when the channel is occluded (higher = more important)", title=name)
        ax.legend(fontsize=8)
    return png(fig)


def _unit(display: np.ndarray) -> np.ndarray:
    """A preprocessed image (C, H, W) as (H, W) or (H, W, 3) in [0, 1] for display."""
    img = display.transpose(1, 2, 0) if display.ndim == 3 else display
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    lo, hi = float(img.min()), float(img.max())
    return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)


def _overlay(
    ax: Axes, background: np.ndarray, heat: np.ndarray, origin: Literal["upper", "lower"] = "upper"
) -> None:
    """Signed attribution over a grey background: red for, blue against the explained class.
    Images keep their aspect ratio (``origin`` upper); spectrograms fill the panel."""
    if background.ndim == 3:  # colour image: grey, so the heat-map colours stand out
        background = background.mean(-1)
    aspect: Literal["equal", "auto"] = "equal" if origin == "upper" else "auto"
    ax.imshow(background, cmap="gray", origin=origin, aspect=aspect)
    bound = float(np.abs(heat).max()) or 1.0
    norm = TwoSlopeNorm(0.0, -bound, bound)
    ax.imshow(heat, cmap="RdBu_r", norm=norm, alpha=0.55, origin=origin, aspect=aspect)
    ax.set_xticks([])
    ax.set_yticks([])


def _bars(ax: Axes, labels: list[str], values: list[float], title: str) -> None:
    y = np.arange(len(labels))[::-1]
    ax.barh(y, values, height=0.6, color=[POS if v >= 0 else NEG for v in values])
    ax.set_ylim(-0.5 - max(0, 3 - len(labels)) / 2, len(labels) - 0.5 + max(0, 3 - len(labels)) / 2)
    ax.set_yticks(y, labels, fontsize=8)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_title(title, fontsize=10)


def merge_pieces(tokens: list[str], values: list[float]) -> tuple[list[str], list[float]]:
    """WordPiece continuations (``##ing``) joined to the token before them, values summed."""
    words: list[str] = []
    sums: list[float] = []
    for tok, v in zip(tokens, values, strict=False):
        if tok.startswith("##") and words:
            words[-1] += tok[2:]
            sums[-1] += v
        else:
            words.append(tok)
            sums.append(v)
    return words, sums


def _token_lines(tokens: list[str]) -> int:
    """Rough line count of a token panel (about 150 monospace characters per line)."""
    return 1 + sum(len(t) + 1 for t in tokens) // 150


def _tokens(ax: Axes, tokens: list[str], values: list[float], title: str) -> None:
    """Tokens in reading order on a background whose colour and strength follow their value.
    Call after the figure's layout is final: each token is measured to wrap the lines."""
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    renderer = ax.figure.canvas.get_renderer()  # type: ignore[attr-defined]
    to_axes = ax.transAxes.inverted()
    bound = max((abs(v) for v in values), default=0.0) or 1.0
    x, y, gap = 0.0, 1.0, 0.004
    for tok, v in zip(tokens, values, strict=False):
        colour = matplotlib.colors.to_rgba(POS if v >= 0 else NEG, alpha=min(1.0, abs(v) / bound))
        box = {"facecolor": colour, "edgecolor": "none", "pad": 1.0}
        style: dict[str, Any] = {"fontsize": 9, "family": "monospace", "va": "top", "bbox": box}
        text = ax.text(x, y, tok, transform=ax.transAxes, **style)
        extent = text.get_window_extent(renderer).transformed(to_axes)
        if extent.x1 > 1.0 and x > 0:  # wrap
            x, y = 0.0, y - 1.5 * extent.height
            text.set_position((x, y))
            extent = text.get_window_extent(renderer).transformed(to_axes)
        x = extent.x1 + gap


def _attention(ax: Axes, attention: dict[str, Any]) -> None:
    last = np.asarray(attention["layers"][-1])  # (T, T), mean over heads
    ax.imshow(last, cmap="viridis", vmin=0, vmax=max(float(last.max()), 1e-6))
    ticks = range(len(attention["tokens"]))
    ax.set_xticks(ticks, attention["tokens"], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, attention["tokens"], fontsize=8)
    ax.set(xlabel="key", ylabel="query")
    ax.set_title("cross-modal attention (last layer, mean of heads)", fontsize=10)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 24 else text[:23] + "…"


def _input_panel(
    ax: Axes, name: str, info: dict[str, Any], display: tuple[np.ndarray, np.ndarray] | None
) -> None:
    kind = info.get("kind")
    title = f"{name}: {kind}"
    if kind == "features":
        labels = [
            f"{f} = {_short(v)}" for f, v in zip(info["features"], info["inputs"], strict=True)
        ]
        _bars(ax, labels, info["values"], title)
    elif kind == "pixels" and display is not None:
        _overlay(ax, _unit(display[0]), display[1])
        ax.set_title(title, fontsize=10)
    elif kind == "time_frequency" and display is not None:
        _overlay(ax, display[0], display[1], origin="lower")
        ax.set(xlabel="time frame", ylabel="mel band")
        ax.set_title(title, fontsize=10)
    elif kind == "frames":  # a clip: one attribution per frame
        _bars(ax, [f"frame {t}" for t in range(len(info["values"]))], info["values"], title)
    elif kind == "waveform" and display is not None:
        ax.plot(display[0], color="grey", linewidth=0.5)
        ax.plot(display[1] / (np.abs(display[1]).max() or 1.0), color=POS, linewidth=0.5)
        ax.set_title(title, fontsize=10)
    elif kind == "time_channel" and display is not None:
        series_map(ax, display[0], display[1], list(info["channels"]))
        ax.set_title(f"{name}: time x channel attribution", fontsize=10)
    elif kind == "channel_importance":
        names = list(info["channels"])
        _bars(ax, names, [info["channel_occlusion"][c] for c in names], f"{name}: channels")
        ax.set_xlabel("fall in the explained probability when the channel is occluded", fontsize=8)


def series_map(ax: Axes, values: np.ndarray, heat: np.ndarray, channels: list[str]) -> None:
    """A series' (T, C) attributions as a channel x time heat-map (red for, blue against the
    explained class), each channel's standardised signal drawn across its band."""
    bound = float(np.abs(heat).max()) or 1.0
    ax.imshow(heat.T, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -bound, bound), aspect="auto",
              interpolation="nearest")  # fmt: skip
    steps = np.arange(len(values))
    for c in range(values.shape[1]):
        scale = float(np.abs(values[:, c]).max()) or 1.0
        ax.plot(steps, c - 0.4 * values[:, c] / scale, color="black", linewidth=0.6)
    ax.set_yticks(range(len(channels)), channels, fontsize=8)
    ax.set_xlabel("time step", fontsize=8)


def _text_of(info: dict[str, Any]) -> tuple[list[str], list[float]]:
    """Display tokens: words for hashed n-grams, whole words for WordPieces."""
    if "words" in info:
        return list(info["words"]), list(info["word_values"])
    return merge_pieces(list(info["tokens"]), list(info["values"]))


def explanation(summary: dict[str, Any], display: dict[str, Any]) -> bytes:
    """One row's explanation: modality occlusion, attention (if any), a panel per input; text
    inputs get full-width rows of highlighted tokens."""
    names = list(summary["modalities"])
    kinds = {n: summary["modalities"][n].get("kind") for n in names}
    texts = [n for n in names if kinds[n] == "tokens"]
    others: list[tuple[str, str]] = []  # (input, panel kind); a series: its map, its channels
    for n in names:
        if kinds[n] and kinds[n] not in ("tokens", "channels"):
            others.append((n, str(kinds[n])))
        if kinds[n] in ("time_channel", "channels"):
            others.append((n, "channel_importance"))
    grid_panels = 1 + (summary.get("attention") is not None) + len(others)
    grid_rows = int(np.ceil(grid_panels / 2))
    text_heights = [0.6 + 0.26 * _token_lines(_text_of(summary["modalities"][n])[0]) for n in texts]
    heights = [3.3] * grid_rows + text_heights
    fig = plt.figure(figsize=(12.4, sum(heights) + 0.5))
    gs = fig.add_gridspec(len(heights), 2, height_ratios=heights)
    cells = [fig.add_subplot(gs[r, c]) for r in range(grid_rows) for c in range(2)]
    occl = summary["occlusion"]
    labels = [n if summary["modalities"][n]["present"] else f"{n} (missing)" for n in names]
    _bars(cells[0], labels, [occl[n] for n in names], "modality importance (occlusion)")
    cells[0].set_xlabel("fall in the explained probability when masked", fontsize=8)
    k = 1
    if summary.get("attention") is not None:
        _attention(cells[k], summary["attention"])
        k += 1
    for name, kind in others:
        info = {**summary["modalities"][name], "kind": kind}
        _input_panel(cells[k], name, info, display.get(name))
        k += 1
    for ax in cells[k:]:
        ax.axis("off")
    text_axes = [fig.add_subplot(gs[grid_rows + i, :]) for i in range(len(texts))]
    for ax in text_axes:
        ax.axis("off")
    explained = summary.get("explained_class", summary.get("prediction"))
    fig.suptitle(
        f"row {summary['row']}: {summary['output']} predicted {summary['prediction']!r}"
        f" (actual {summary.get('actual')!r}); attributions for {explained!r},"
        " red = for, blue = against",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (sum(heights) + 0.5)))  # room for the title
    for ax, name in zip(text_axes, texts, strict=True):  # after the layout: tokens are measured
        _tokens(ax, *_text_of(summary["modalities"][name]), f"{name}: tokens")
    return png(fig, layout=False)
