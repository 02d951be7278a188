"""Plain-PyTorch reference for the AV-MNIST benchmark: the network of polymodal's `concat` run
(image_cnn with its 4x4 layout flattened + audio_cnn averaged over time only + concat + linear
head), written here without polymodal, trained on the same preprocessed tensors with the same
SpecAugment, label smoothing, optimiser, schedule and batch size, so the framework's overhead is
measured rather than guessed.

    python benchmarks/avmnist/reference.py --tensors T.safetensors --epochs 4 --result out.json
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn


def stack(in_ch: int, widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Conv2d(in_ch, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                   nn.MaxPool2d(2, ceil_mode=True)]  # fmt: skip
        in_ch = w
    return nn.Sequential(*layers)


class Net(nn.Module):
    def __init__(self, n_mels: int = 40) -> None:
        super().__init__()
        self.image = stack(1, [16, 32, 64])  # 28x28 -> 64 x 4 x 4
        self.audio = stack(1, [8, 16, 32])  # 40 mels -> 32 x 5 x T'
        self.image_proj = nn.Sequential(nn.Dropout(0.1), nn.Linear(64 * 4 * 4, 64))
        self.audio_proj = nn.Sequential(nn.Dropout(0.1), nn.Linear(32 * -(-n_mels // 8), 64))
        self.head = nn.Sequential(nn.Dropout(0.1), nn.Linear(64 + 64 + 2, 10))

    def forward(self, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        i = self.image_proj(self.image(image).flatten(1))  # (B, 64)
        a = self.audio_proj(self.audio(audio.unsqueeze(1)).mean(3).flatten(1))  # (B, 64)
        ones = torch.ones(len(i), 2)  # the presence bits polymodal's concat appends
        return self.head(torch.cat([i, a, ones], 1))


def spec_augment(x: torch.Tensor, time_mask: int = 10, freq_mask: int = 8) -> torch.Tensor:
    """One random time band and one mel band per clip, set to 0 (x: (B, n_mels, T))."""
    b, n_mels, frames = x.shape

    def band(size: int, limit: int) -> torch.Tensor:
        width = (torch.rand(b) * (size + 1)).long()
        start = (torch.rand(b) * (limit - width + 1).clamp(min=1)).long()
        pos = torch.arange(limit)
        return (pos >= start[:, None]) & (pos < (start + width)[:, None])

    return x.masked_fill(
        band(time_mask, frames)[:, None, :] | band(freq_mask, n_mels)[:, :, None], 0
    )


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


@torch.no_grad()
def accuracy(net: Net, t: dict[str, torch.Tensor], split: str) -> float:
    net.eval()
    correct = 0
    for s in range(0, len(t[f"{split}.label"]), 512):
        logits = net(t[f"{split}.image"][s : s + 512], t[f"{split}.audio"][s : s + 512])
        correct += int((logits.argmax(1) == t[f"{split}.label"][s : s + 512]).sum())
    net.train()
    return correct / len(t[f"{split}.label"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tensors", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--result", type=Path, required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    t = load_file(str(args.tensors))
    net = Net(n_mels=t["train.audio"].shape[1])
    decay = [p for p in net.parameters() if p.dim() >= 2]
    rest = [p for p in net.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}], lr=args.lr
    )
    n = len(t["train.label"])
    steps = math.ceil(n / args.batch_size)
    total, warmup = args.epochs * steps, int(0.05 * args.epochs * steps)
    step, train_seconds, best_val = 0, 0.0, 0.0
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        for idx in torch.randperm(n).split(args.batch_size):
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, args.lr, warmup)
            audio = spec_augment(t["train.audio"][idx])
            loss = nn.functional.cross_entropy(
                net(t["train.image"][idx], audio), t["train.label"][idx], label_smoothing=0.1
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            step += 1
        train_seconds += time.perf_counter() - t0
        best_val = max(best_val, accuracy(net, t, "val"))
    t0 = time.perf_counter()
    test_acc = accuracy(net, t, "test")
    infer = len(t["test.label"]) / (time.perf_counter() - t0)
    row = {
        "method": "reference",
        "test_accuracy": test_acc,
        "val_accuracy": best_val,
        "epochs": args.epochs,
        "train_seconds": round(train_seconds, 1),
        "train_samples_per_s": round(n * args.epochs / train_seconds, 1),
        "infer_samples_per_s": round(infer, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "params": sum(p.numel() for p in net.parameters()),
        "acc_image_missing": None,
        "acc_audio_missing": None,
    }
    args.result.write_text(json.dumps(row))


if __name__ == "__main__":
    main()
