"""Validation only: the retrieval-augmented caption head (the benchmark's RAG_HEAD settings) in a
plain loop over the cached frozen EfficientNet-Lite0 features, scored after every epoch by
greedy and beam BLEU-4 on the validation emoji, then the brevity of its captions and a rerank of
candidates (beam, greedy and the m nearest training names) by the head's own log-probability.

    python benchmarks/twemoji/rag_loop.py [--epochs 8] [--k 3] [--label-smoothing 0.1] [--report-test]

The test split is never read, except with ``--report-test``: after everything above, the same
head and the nearest-neighbour caption are scored on the test emoji too (flags and the rest
apart), to compare the two splits; nothing is chosen from it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import baselines as B  # noqa: E402
from common import DATA, caption_config, load_splits  # noqa: E402

from polymodal import Predictor  # noqa: E402
from polymodal.data.seq_targets import CaptionTargets  # noqa: E402
from polymodal.heads.caption import PAD, CaptionHead  # noqa: E402


def features(cache: str, splits: tuple[str, ...] = ("train", "val")) -> dict[str, Any]:
    """Frozen image features and names of the emoji of ``splits`` (via the cache)."""
    frames = load_splits()
    pred = Predictor(caption_config(0, cache)).fit(
        frames["train"].head(64), val=frames["val"].head(32), base_dir=DATA
    )
    out: dict[str, Any] = {}
    for split in splits:
        out[split] = B.frozen_features(pred, frames[split], "image", DATA, cache)
        out[split + "_text"] = frames[split]["text"].tolist()
    return out


def brevity(caps: list[str], refs: list[str]) -> str:
    import sacrebleu

    b = sacrebleu.corpus_bleu([B.words(c) for c in caps], [[B.words(r) for r in refs]])
    precisions = [round(p, 1) for p in b.precisions]
    return f"BLEU-4 {b.score:.2f}, brevity {b.bp:.3f} ({b.sys_len}/{b.ref_len} words), {precisions}"


def train(d: dict[str, Any], args: argparse.Namespace) -> tuple[CaptionHead, CaptionTargets]:
    torch.manual_seed(args.seed)
    tgt = CaptionTargets().fit(pd.Series(d["train_text"]))
    y = tgt.transform(pd.Series(d["train_text"]))
    x = torch.tensor(d["train"]).float()
    head = CaptionHead(
        1280, tgt.num_outputs, in_dims={"image": 1280}, source="image", retrieve=args.k,
        retrieve_layers=0, leave_out="caption", label_smoothing=args.label_smoothing,
        max_length=16,
    )  # fmt: skip
    head.fill_index(x, y)
    opt = torch.optim.AdamW(head.parameters(), lr=2e-3, weight_decay=0.01)
    steps = args.epochs * -(-len(x) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps, pct_start=0.05)
    for epoch in range(args.epochs):
        head.train()
        for i in torch.randperm(len(x)).split(128):
            loss = head.loss(head({"image": x[i]}), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        scores = [B.caption_scores(decode(head, tgt, d["val"], m), d["val_text"])["bleu4"]
                  for m in ("greedy", "beam")]  # fmt: skip
        print(f"epoch {epoch + 1}: validation BLEU-4 greedy {scores[0]:.2f}, beam "
              f"{scores[1]:.2f}", flush=True)  # fmt: skip
    return head, tgt


def decode(head: CaptionHead, tgt: CaptionTargets, feats: np.ndarray, method: str) -> list[str]:
    head.eval()
    with torch.no_grad():
        return tgt.decode(head.decode(head({"image": torch.tensor(feats).float()}), method)["pred"])


def rerank(d: dict[str, Any], decoded: dict[str, list[str]], m: int) -> list[list[str]]:
    """Per validation emoji: its beam and greedy captions and its m nearest distinct training
    names."""
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    order = np.argsort(-(unit(d["val"]) @ unit(d["train"]).T), axis=1)[:, :200]
    beam, greedy = decoded["beam"], decoded["greedy"]
    out = []
    for i, row in enumerate(order):
        names: list[str] = []
        for j in row:
            if d["train_text"][j] not in names:
                names.append(d["train_text"][j])
            if len(names) == m:
                break
        out.append([beam[i] or "?", greedy[i] or "?", *names])
    return out


@torch.no_grad()
def pick(head: CaptionHead, tgt: CaptionTargets, d: dict[str, Any], cands: list[list[str]],
         alpha: float) -> list[str]:  # fmt: skip
    """The candidate with the highest log-probability / length ** alpha under the head."""
    head.eval()
    head.label_smoothing = 0.0
    memory = head({"image": torch.tensor(d["val"]).float()})
    scores = []
    for j in range(len(cands[0])):
        t = tgt.transform(pd.Series([c[j] for c in cands]))
        gold = t[:, 1:]
        logp = -F.cross_entropy(head.logits(memory, t[:, :-1]).transpose(1, 2), gold,
                                ignore_index=PAD, reduction="none").sum(1)  # fmt: skip
        scores.append(logp / (gold != PAD).sum(1).float() ** alpha)
    best = torch.stack(scores, 1).argmax(1).tolist()
    return [c[b] for c, b in zip(cands, best, strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report-test", action="store_true", help="also score the test emoji")
    ap.add_argument("--cache-dir", default=str(Path.home() / ".cache/polymodal/features"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    d = features(args.cache_dir, ("train", "val", "test") if args.report_test else ("train", "val"))
    head, tgt = train(d, args)
    refs = d["val_text"]
    print("nearest neighbour:", brevity(B.nn_captions(d["train"], d["train_text"], d["val"]), refs))
    decoded = {method: decode(head, tgt, d["val"], method) for method in ("beam", "greedy")}
    for method, caps in decoded.items():
        print(f"{method}:", brevity(caps, refs))
    for m in (1, 3, 5):
        cands = rerank(d, decoded, m)
        width = max(map(len, cands))
        cands = [c + [c[0]] * (width - len(c)) for c in cands]
        for alpha in (0.0, 0.6, 1.0):
            print(f"rerank m {m} alpha {alpha}:", brevity(pick(head, tgt, d, cands, alpha), refs))
    if args.report_test:
        for split in ("val", "test"):
            report(head, tgt, d, split)


def report(head: CaptionHead, tgt: CaptionTargets, d: dict[str, Any], split: str) -> None:
    """Beam captions and nearest-neighbour captions of ``split``: all, flags, the rest."""
    refs = d[split + "_text"]
    caps = {"nearest neighbour": B.nn_captions(d["train"], d["train_text"], d[split]),
            "beam": decode(head, tgt, d[split], "beam")}  # fmt: skip
    flag = [r.endswith(" flag") for r in refs]
    for part, keep in (("all", [True] * len(refs)), ("flags", flag), ("other", [not f for f in flag])):  # fmt: skip
        kept_refs = [r for r, k in zip(refs, keep, strict=True) if k]
        for name, c in caps.items():
            kept = [x for x, k in zip(c, keep, strict=True) if k]
            print(f"{split} {part} ({sum(keep)}) {name}:", brevity(kept, kept_refs))


if __name__ == "__main__":
    main()
