"""Twemoji (icon <-> emoji name): contrastive retrieval in a shared space, captioning, the 10-way
category as a sanity row, a COCO-mini end-to-end smoke run, and the ANN index target.

    python benchmarks/twemoji/run.py            # full run: writes results.json and results.md
    python benchmarks/twemoji/run.py --quick    # 160 rows per split, 2 epochs, 20k ANN vectors
    python benchmarks/twemoji/run.py --part caption   # only the captioning rows, merged in
    python benchmarks/twemoji/run.py --part style     # retrieval, restyled icons, index + search

Every polymodal model trains through the public API on the split of ``common.py``; hyper-
parameters were chosen on the validation split (see README.md), the test split is scored once.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import ann  # noqa: E402
import baselines as B  # noqa: E402
import restyle as R  # noqa: E402
from bootstrap import paired  # noqa: E402
from common import (  # noqa: E402
    DATA,
    caption_config,
    category_config,
    load_splits,
    retrieval_config,
)

from polymodal import Predictor  # noqa: E402

COCO = DATA.parent / "coco_mini"
# chosen on the validation split (README.md): dropout 0.5 and short-name rows matter most; the
# anchor space (similarity to the training pairs, k 50, power 8, weight 1.5) helps most on restyled icons
RETRIEVAL_HEAD = {"dim": 256, "hidden": 1024, "dropout": 0.5, "temperature": 0.05,
                  "anchors": 50, "anchor_power": 8.0, "anchor_weight": 1.5}  # fmt: skip
TOWERS_ONLY = "the same model, towers only (anchor_weight 0)"
# validation decodes greedily (cheap, every epoch); the test rows are decoded both ways
CAPTION_HEAD = {"d_model": 256, "layers": 2, "ff_dim": 512, "dropout": 0.1, "max_length": 16,
                "decoding": "greedy"}  # fmt: skip
# retrieval-augmented captioning, chosen on the validation split (README.md)
RAG_HEAD = {**CAPTION_HEAD, "retrieve": 3, "retrieve_layers": 0, "leave_out": "caption"}
EPOCHS = {"retrieval": 10, "caption": 30, "rag_caption": 8, "category": 8}
# tasks (table rows) each --part recomputes; the other rows of results.json are kept
PARTS = {"caption": ("captioning", "captioning, paired bootstrap (test)"),
         "style": ("retrieval", "retrieval, restyled test icons (grey)",
                   "retrieval, restyled test icons (outline)", "index + search (saved model, test emoji)")}  # fmt: skip


class Rows:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, task: str, model: str, metrics: dict[str, Any], seconds: float | None) -> None:
        for metric, value in metrics.items():
            if isinstance(value, (int, float)) and metric != "n_pairs":
                self.rows.append({"task": task, "model": model, "metric": metric,
                                  "value": round(float(value), 4), "train_seconds": seconds})  # fmt: skip
        print(
            task,
            model,
            {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)},
            flush=True,
        )


def directions(m: dict[str, Any]) -> dict[str, Any]:
    """``image_to_text_R@1`` ... from polymodal's retrieval metrics, in a fixed order."""
    keys = [f"{d}_{s}" for d in ("text_to_image", "image_to_text")
            for s in ("R@1", "R@5", "R@10", "median_rank")]  # fmt: skip
    return {k: m[k] for k in keys}


def retrieval(frames: dict[str, pd.DataFrame], args: argparse.Namespace, rows: Rows) -> Predictor:
    cfg = retrieval_config(args.epochs or EPOCHS["retrieval"], args.cache_dir, RETRIEVAL_HEAD)
    pred = Predictor(cfg).fit(
        frames["train_alt"], val=frames["val"], test=frames["test"], base_dir=DATA
    )
    seconds = round(pred.metrics_["train_seconds"], 1)
    print("validation:", directions(pred.metrics_["val"]["match"]), flush=True)
    rows.add("retrieval", "polymodal contrastive (frozen EfficientNet-Lite0 + MiniLM, MLP towers + anchor space k 50)",
             directions(pred.metrics_["test"]["match"]), seconds)  # fmt: skip
    with towers_only(pred):
        rows.add("retrieval", TOWERS_ONLY, directions(pred.evaluate(frames["test"], base_dir=DATA)["match"]), None)  # fmt: skip
    return pred


@contextlib.contextmanager
def towers_only(pred: Predictor) -> Iterator[None]:
    """Score with the trained towers' space alone (the anchor space weighted 0)."""
    head = pred.artifact_.model.heads["match"]
    weight, head.anchor_weight = head.anchor_weight, 0.0
    try:
        yield
    finally:
        head.anchor_weight = weight


def retrieval_baselines(pred: Predictor, frames: dict[str, pd.DataFrame], args: argparse.Namespace, rows: Rows) -> dict[str, Any]:  # fmt: skip
    parts = {k: frames[k] for k in ("train", "val", "test")}
    img = {k: B.frozen_features(pred, f, "image", DATA, args.cache_dir) for k, f in parts.items()}
    txt = {k: B.frozen_features(pred, f, "text", DATA, args.cache_dir) for k, f in parts.items()}
    tfidf = B.tfidf_space({k: f["text"].tolist() for k, f in parts.items()})
    pix = {k: B.pixels(f, DATA) for k, f in parts.items()}
    for label, x, y in (
        ("ridge EfficientNet-Lite0 -> MiniLM (shared reference)", img, txt),
        ("ridge EfficientNet-Lite0 -> TF-IDF char n-grams", img, tfidf),
        ("ridge raw pixels 32x32 -> MiniLM", pix, txt),
    ):
        t0 = time.perf_counter()
        metrics, alpha = B.ridge_retrieval(x, y)
        rows.add("retrieval", f"{label} (alpha {alpha:g})", directions(metrics),
                 round(time.perf_counter() - t0, 1))  # fmt: skip
    n = len(frames["test"])
    c = B.chance(n)
    rows.add("retrieval", f"chance ({n} test emoji)",
             {f"{d}_{s}": v for d in ("text_to_image", "image_to_text") for s, v in c.items()}, None)  # fmt: skip
    return img


def captioning(frames: dict[str, pd.DataFrame], img: dict[str, Any] | None, args: argparse.Namespace, rows: Rows) -> None:  # fmt: skip
    """The caption head without and with retrieval, against the nearest-neighbour caption."""
    refs = frames["test"]["text"].tolist()
    beam: dict[str, list[str]] = {}
    for label, head, epochs in (("", CAPTION_HEAD, EPOCHS["caption"]),
                                (f", retrieval-augmented (k={RAG_HEAD['retrieve']})", RAG_HEAD, EPOCHS["rag_caption"])):  # fmt: skip
        cfg = caption_config(args.epochs or epochs, args.cache_dir, head)
        pred = Predictor(cfg).fit(frames["train"], val=frames["val"], base_dir=DATA)
        for method in ("beam", "greedy"):
            pred.artifact_.model.heads["text"].decoding = method
            hyps = pred.predict(frames["test"], base_dir=DATA)["text"].tolist()
            beam[label] = beam.get(label) or hyps
            rows.add("captioning", f"polymodal caption head{label} ({method}), frozen EfficientNet-Lite0",
                     B.caption_scores(hyps, refs), round(pred.metrics_["train_seconds"], 1))  # fmt: skip
    if img is None:  # the same frozen features the caption models read (same cache)
        img = {k: B.frozen_features(pred, frames[k], "image", DATA, args.cache_dir) for k in ("train", "test")}  # fmt: skip
    nn = B.nn_captions(img["train"], frames["train"]["text"].tolist(), img["test"])
    rows.add("captioning", "nearest-neighbour caption (EfficientNet-Lite0 cosine)", B.caption_scores(nn, refs), 0.0)  # fmt: skip
    rag = beam[next(k for k in beam if k)]
    boot = paired(nn, rag, refs)
    rows.add("captioning, paired bootstrap (test)", "a: nearest-neighbour caption, b: retrieval-augmented head (beam)",
             {"a_bleu4_ci95_low": boot["a_ci95"][0], "a_bleu4_ci95_high": boot["a_ci95"][1],
              "b_bleu4_ci95_low": boot["b_ci95"][0], "b_bleu4_ci95_high": boot["b_ci95"][1],
              "b_minus_a": boot["b_minus_a"], "b_minus_a_ci95_low": boot["b_minus_a_ci95"][0],
              "b_minus_a_ci95_high": boot["b_minus_a_ci95"][1], "b_wins_share": boot["b_wins"]}, None)  # fmt: skip
    print("examples:", list(zip(refs[:8], beam[""][:8], rag[:8], nn[:8], strict=True)), flush=True)


def restyled(pred: Predictor, frames: dict[str, pd.DataFrame], img: dict[str, Any], args: argparse.Namespace, rows: Rows) -> None:  # fmt: skip
    """Retrieval on the test icons drawn in styles training never saw, beside the clean split:
    the trained space and the ridge reference, R@1 / R@10 both ways and the drop of R@10."""
    clean = pred.metrics_["test"]["match"]
    parts = {k: frames[k] for k in ("train", "val", "test")}
    txt = {k: B.frozen_features(pred, f, "text", DATA, args.cache_dir) for k, f in parts.items()}
    ridge_clean, alpha = B.ridge_retrieval(img, txt)
    with towers_only(pred):  # the clean split once, not once per style
        base = pred.evaluate(frames["test"], base_dir=DATA)["match"]
    for style in R.STYLES:
        out = Path(args.tmp) / "restyled"
        frame = R.restyle(frames["test"], DATA, out, style)
        styled = pred.evaluate(frame, base_dir=out)["match"]
        task = f"retrieval, restyled test icons ({style})"
        rows.add(task, "polymodal contrastive (as above)", R.with_drops(clean, styled), None)
        with towers_only(pred):
            rows.add(task, TOWERS_ONLY, R.with_drops(base, pred.evaluate(frame, base_dir=out)["match"]), None)  # fmt: skip
        feats = B.frozen_features(pred, frame, "image", out, args.cache_dir)
        ridge = B.ridge_retrieval({**img, "test": feats}, txt, alphas=(alpha,))[0]
        rows.add(task, f"ridge EfficientNet-Lite0 -> MiniLM (alpha {alpha:g})", R.with_drops(ridge_clean, ridge), None)  # fmt: skip


def category(frames: dict[str, pd.DataFrame], args: argparse.Namespace, rows: Rows) -> None:
    cfg = category_config(args.epochs or EPOCHS["category"], args.cache_dir)
    seen = set(frames["train"]["category"])  # "Component" has 5 emoji: it may miss training
    val, test = (frames[k][frames[k]["category"].isin(seen)] for k in ("val", "test"))
    pred = Predictor(cfg).fit(frames["train"], val=val, test=test, base_dir=DATA)
    test = pred.metrics_["test"]["category"]
    rows.add("category (10-way)", "polymodal image + name, concat fusion",
             {"accuracy": test["accuracy"], "macro_f1": test["macro_f1"]},
             round(pred.metrics_["train_seconds"], 1))  # fmt: skip


def index_and_search(pred: Predictor, frames: dict[str, pd.DataFrame], tmp: Path, rows: Rows) -> None:  # fmt: skip
    """The saved model's index/search path end to end on the test emoji."""
    pred.save(tmp / "retrieval")
    loaded = Predictor.load(tmp / "retrieval")
    t0 = time.perf_counter()
    info = loaded.index(frames["test"], "image", base_dir=DATA, id_column="text")
    seconds = time.perf_counter() - t0
    queries = frames["test"]["text"].tolist()
    t0 = time.perf_counter()
    hits = loaded.search(text=queries, k=10)
    qps = len(queries) / (time.perf_counter() - t0)
    top = hits[hits["rank"] == 1]
    r1 = float((top["id"].to_numpy() == pd.Series(queries).to_numpy()[top["query"]]).mean())
    rows.add("index + search (saved model, test emoji)", f"FAISS {info['kind']}",
             {"text_to_image_R@1": r1, "index_seconds": seconds, "queries_per_s": qps}, None)  # fmt: skip


def coco_frames() -> dict[str, pd.DataFrame]:
    out = {}
    for split in ("train", "val"):
        ann_ = json.loads((COCO / "annotations" / f"captions_{split}2017.json").read_text())
        files = {im["id"]: f"{split}2017/{im['file_name']}" for im in ann_["images"]}
        out[split] = pd.DataFrame(
            [
                {"image": files[a["image_id"]], "text": a["caption"].strip()}
                for a in ann_["annotations"]
            ]
        )
    return out


def coco_smoke(args: argparse.Namespace, rows: Rows) -> None:
    """Photos + COCO captions through retrieval and captioning, one epoch each: a smoke test."""
    frames = coco_frames()
    for name, cfg in (("retrieval", retrieval_config(1, args.cache_dir, {"dim": 64, "hidden": 0})),
                      ("captioning", caption_config(1, args.cache_dir, {"d_model": 64, "ff_dim": 128, "layers": 1}))):  # fmt: skip
        cfg["trainer"]["batch_size"] = 32
        pred = Predictor(cfg).fit(frames["train"], val=frames["val"], base_dir=COCO)
        key = "match" if name == "retrieval" else "text"
        metrics = pred.metrics_["val"][key]
        rows.add(f"coco_mini smoke ({name}, 1 epoch, val)", "polymodal",
                 {k: v for k, v in metrics.items() if k in ("mean_R@10", "bleu4", "exact_match")},
                 round(pred.metrics_["train_seconds"], 1))  # fmt: skip


def merge(old: list[dict[str, Any]], new: list[dict[str, Any]], tasks: tuple[str, ...]) -> list[dict[str, Any]]:  # fmt: skip
    """``old`` rows with those of ``tasks`` replaced by ``new``, placed where they were."""
    kept = [r for r in old if r["task"] not in tasks]
    first = next((i for i, r in enumerate(old) if r["task"] in tasks), len(old))
    at = sum(1 for r in old[:first] if r["task"] not in tasks)
    return kept[:at] + new + kept[at:]


def write(rows: Rows, ann_rows: list[dict[str, Any]], args: argparse.Namespace, seconds: float) -> None:  # fmt: skip
    for r in ann_rows:
        rows.rows.append({"task": f"ANN {r['n']:,} {r['data']} 384-d vectors", "model": f"FAISS {r['kind']} {r['params']}",
                          "metric": "queries_per_s | recall@10", "value": [r["queries_per_s"], r["recall@10"]],
                          "train_seconds": r["build_seconds"]})  # fmt: skip
    command = "python benchmarks/twemoji/run.py" + (" --quick" if args.quick else "")
    run = {"command": command + (f" --part {args.part}" if args.part else ""),
           "date": dt.date.today().isoformat(), "total_seconds": round(seconds)}  # fmt: skip
    suffix = "_quick" if args.quick else ""
    path = HERE / f"results{suffix}.json"
    if args.part:  # this part's rows replace the earlier ones; the rest stay as they were
        result = json.loads(path.read_text())
        result["rows"] = merge(result["rows"], rows.rows, PARTS[args.part])
        result.setdefault("parts", {})[args.part] = run
    else:
        result = {**run, "rows": rows.rows}
    path.write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Twemoji results\n\n`{result['command']}` on {result['date']}, {result['total_seconds'] / 60:.1f} min on this machine."]  # fmt: skip
    for part, info in result.get("parts", {}).items():
        lines.append(f"The {', '.join(PARTS[part])} rows: `{info['command']}` on {info['date']}, {info['total_seconds'] / 60:.1f} min.")  # fmt: skip
    lines += ["", "| task | model | metric | value | train s |", "|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['task']} | {r['model']} | {r['metric']} | {r['value']} | {r['train_seconds'] if r['train_seconds'] is not None else ''} |")  # fmt: skip
    (HERE / f"results{suffix}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small slices, 2 epochs")
    parser.add_argument("--epochs", type=int, default=None, help="override every model's epochs")
    parser.add_argument("--part", choices=sorted(PARTS), default=None,
                        help="recompute only these rows and merge them into the results")  # fmt: skip
    parser.add_argument(
        "--cache-dir", default=str(Path.home() / ".cache" / "polymodal" / "features")
    )
    parser.add_argument(
        "--tmp", default="/tmp/polymodal-twemoji", help="saved model for index/search"
    )
    args = parser.parse_args()
    if args.quick and args.epochs is None:
        args.epochs = 2
    t0 = time.perf_counter()
    frames = load_splits(quick=args.quick)
    rows = Rows()
    if args.part == "caption":
        captioning(frames, None, args, rows)
    else:
        pred = retrieval(frames, args, rows)
        img = retrieval_baselines(pred, frames, args, rows)
        restyled(pred, frames, img, args, rows)
        index_and_search(pred, frames, Path(args.tmp), rows)
    if args.part is None:
        captioning(frames, img, args, rows)
        category(frames, args, rows)
        coco_smoke(args, rows)
    ann_rows = ann.bench(20_000 if args.quick else 100_000) if args.part is None else []
    write(rows, ann_rows, args, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
