"""A FAISS vector index over one column, embedded by a trained retrieval head, stored beside the
model: ``MODEL_DIR/index/<column>.faiss`` (FAISS's own format, no pickle) and
``<column>.json`` (row ids, the cells, the index kind and parameters, and the fingerprint of the
model that embedded them, so an index never silently serves another model's vectors).

Small collections get an exact inner-product index (``flat``); from ``exact_below`` rows on, by
default an ``ivf`` one (k-means cells) probing as few cells as keep Recall@10 >= 0.95 on a sample
of the collection itself (on 100k clustered 384-d vectors 1/16 of the cells kept Recall@10 = 1.0
at several times the exact index's speed, where HNSW at efSearch 256 was slower than exact; see
benchmarks/twemoji), or exact when the vectors have no cluster structure for IVF to use (i.i.d.
random vectors); ``hnsw`` (graph, no training) on request. Vectors are unit length, so inner
product is cosine similarity.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from polymodal.config import InputConfig
from polymodal.data.base import DataError
from polymodal.data.io import TableLike, read_any
from polymodal.data.paths import ANYWHERE, FileAccess
from polymodal.encoders.cache import weights_digest
from polymodal.export.artifact import Artifact
from polymodal.export.towers import load_tower
from polymodal.utils.errors import PolymodalError
from polymodal.utils.io import atomic_write_text, read_json
from polymodal.utils.progress import progress

INDEX_DIR = "index"
KINDS = ("auto", "flat", "hnsw", "ivf")
EXACT_BELOW = 50_000  # rows; an exact scan of fewer unit vectors is fast enough on a CPU
MIN_RECALL = 0.95  # Recall@10 against exact search that an automatically chosen IVF index keeps
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 100, 256
BATCH_SIZE = 64  # rows per encoder pass (as the training cache's warm-up): fast, little memory


class SearchError(PolymodalError, ValueError):
    """An index that cannot answer a query: another model built it, the query has the wrong
    modality, no retrieval output..."""


@dataclass
class SearchIndex:
    index: Any  # faiss.Index
    meta: dict[str, Any]

    @property
    def size(self) -> int:
        return int(self.index.ntotal)


# -- the model side ---------------------------------------------------------------------------
def fingerprint(art: Artifact) -> str:
    """Digest of the weights and the fitted preprocessing: any change gives another value."""
    h = hashlib.blake2b(digest_size=16)
    h.update(weights_digest(art.model).encode())
    h.update(json.dumps(art.pipeline.state_dict(), sort_keys=True, default=str).encode())
    return h.hexdigest()


def retrieval_head(art: Artifact, output: str | None = None) -> tuple[str, Any]:
    """The (name, head) of the model's retrieval output (``output`` picks one of several)."""
    heads = {n: h for n, h in art.model.heads.items() if getattr(h, "task", "") == "retrieval"}
    if not heads:
        tasks = {o.name: o.task for o in art.config.outputs}
        raise SearchError(
            f"this model has no retrieval output (outputs: {tasks}); train one with "
            "outputs: [{name: ..., task: retrieval, pair: [image_col, text_col]}]"
        )
    if output is None and len(heads) > 1:
        raise SearchError(f"the model has several retrieval outputs {sorted(heads)}: name one")
    name = output if output is not None else next(iter(heads))
    if name not in heads:
        raise SearchError(f"{name!r} is not a retrieval output; valid choices: {sorted(heads)}")
    return name, heads[name]


def pair_input(art: Artifact, head: Any, column: str) -> InputConfig:
    """The input of the retrieval pair that reads ``column`` (or is named ``column``)."""
    inputs = {i.name: i for i in art.config.inputs if i.name in head.pair}
    for inp in inputs.values():
        if column in (inp.name, inp.cols[0]):
            return inp
    cols = [inputs[n].cols[0] for n in head.pair]
    raise SearchError(
        f"column {column!r} is not a side of the retrieval pair; valid choices: {cols}"
    )


@contextlib.contextmanager
def one_thread(on: bool = True) -> Iterator[None]:
    """PyTorch on one intra-op thread inside the block. Decoding files is thousands of tiny
    tensor ops (normalise, check for NaN) that gain nothing from threads, and on a busy machine
    each op waits for the other thread to be scheduled: 40 ms instead of 0.4 ms per 224 px image
    check on 2 shared cores, so `index` of 1,911 icons took 140 s instead of 19 s with a warm
    cache. Process-wide: not for a server's request threads (search queries do not use it)."""
    threads = torch.get_num_threads()
    if not on or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def embed(
    art: Artifact,
    head: Any,
    inp: InputConfig,
    frame: pd.DataFrame,
    base_dir: Path,
    source: str,
    bad_cells: str = "raise",
    batch_size: int = BATCH_SIZE,
    access: FileAccess = ANYWHERE,
    runner: Any = None,
    serial_decode: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors (N, dim) of one input's column, and which rows were present (N,).

    ``batch_size`` rows at a time are read, decoded and encoded in one encoder pass, so memory
    stays bounded by a batch (1,911 icons at 224 px are 1.1 GB of pixels) whatever the table's
    size. A frozen encoder goes through its feature cache when one is attached (see
    :func:`build_index`). ``runner``: an ONNX tower (:mod:`polymodal.export.towers`) in place
    of the PyTorch encoder and tower. ``access``: the folders path cells may name.
    ``serial_decode``: decode files on one thread (see :func:`one_thread`)."""
    pre = art.pipeline.preprocessors[inp.name]
    encoder = art.model.encoders[art.model.tied.get(inp.name, inp.name)]
    cache = art.model.feature_caches.get(inp.name)
    art.model.eval()
    chunks, present = [], []
    shown = len(frame) if len(frame) > batch_size else 0  # a few queries: no bar
    with progress(shown, f"{inp.name}: embedding for the index") as bar:
        for start in range(0, len(frame), batch_size):
            part = frame.iloc[start : start + batch_size]
            with one_thread(serial_decode):
                data = pre.transform(
                    part, inp.cols, base_dir, source=source, bad_cells=bad_cells, access=access
                )
            x = data.rows(torch.arange(len(part)))
            if runner is not None:
                vectors = next(iter(runner({inp.name: x}, {inp.name: data.present}).values()))
            else:
                features = cache(encoder, x) if cache is not None else encoder(x)
                vectors = head.embed(inp.name, features)
            chunks.append(vectors.float())
            present.append(data.present)
            bar.advance(len(part))
    if not chunks:
        return np.zeros((0, head.out_dim), dtype=np.float32), np.zeros(0, dtype=bool)
    return torch.cat(chunks).numpy(), torch.cat(present).numpy()


# -- building, saving, loading ----------------------------------------------------------------
def make_index(
    vectors: np.ndarray, kind: str = "auto", exact_below: int = EXACT_BELOW
) -> tuple[Any, str, dict[str, Any]]:
    """A FAISS inner-product index holding ``vectors``; returns (index, kind, parameters).
    ``auto``: exact below ``exact_below`` rows; above, IVF probing as few cells as keep Recall@10
    >= ``MIN_RECALL`` on a sample of the collection, or exact when IVF would have to probe so many
    cells that it saves nothing (vectors without cluster structure)."""
    import faiss

    if kind not in KINDS:
        raise ValueError(f"index kind must be one of {KINDS}, got {kind!r}")
    n, dim = vectors.shape
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if kind == "auto" and n < exact_below:
        kind = "flat"
    params: dict[str, Any] = {}
    index: Any
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
        params = {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION, "efSearch": HNSW_EF_SEARCH}
    else:
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))  # FAISS wants >= 39 points per cell
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(x)
        index.nprobe = min(nlist, max(8, nlist // 16))
        index.add(x)
        if kind == "auto":
            return _calibrated(index, x, nlist)
        return index, kind, {"nlist": nlist, "nprobe": index.nprobe}
    index.add(x)
    return index, kind, params


def _calibrated(index: Any, x: np.ndarray, nlist: int) -> tuple[Any, str, dict[str, Any]]:
    """The IVF index with the smallest power-of-two ``nprobe`` whose Recall@10 against exact
    search, on up to 256 of the collection's own vectors (each query's own row left out), is at
    least ``MIN_RECALL``; an exact index instead when that takes more than a quarter of the cells."""
    import faiss

    rng = np.random.default_rng(0)
    queries = x[rng.choice(len(x), size=min(256, len(x)), replace=False)]
    exact = np.argsort(-(queries @ x.T), axis=1)[:, 1:11]  # column 0: the query itself
    nprobe = index.nprobe
    while nprobe <= nlist // 4:
        index.nprobe = nprobe
        found = index.search(queries, 11)[1][:, 1:]
        recall = float(
            np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)])
        )
        if recall >= MIN_RECALL:
            return (
                index,
                "ivf",
                {"nlist": nlist, "nprobe": nprobe, "sample_recall@10": round(recall, 4)},
            )
        nprobe *= 2
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    return (
        flat,
        "flat",
        {
            "reason": f"IVF needed more than {nlist // 4} of {nlist} cells for Recall@10 >= {MIN_RECALL}"
        },
    )


def build_index(
    art: Artifact,
    frame: pd.DataFrame,
    column: str,
    base_dir: Path,
    source: str,
    output: str | None = None,
    kind: str = "auto",
    id_column: str | None = None,
    exact_below: int = EXACT_BELOW,
    batch_size: int = BATCH_SIZE,
) -> SearchIndex:
    """Embed ``frame[column]`` with the retrieval head's tower for it and index the vectors.
    Rows whose cell is missing (or unreadable, with ``data.bad_cells: mask``) are left out.
    A frozen encoder runs only on rows the frozen-feature cache has not seen (the trainer's
    ``feature_cache`` settings): indexing the training images again costs no encoder pass."""
    from polymodal.train.loop import feature_caches  # here: serving never loads training code

    out_name, head = retrieval_head(art, output)
    inp = pair_input(art, head, column)
    if id_column is not None and id_column not in frame.columns:
        raise DataError(
            f"{source}: no id column {id_column!r}; the table has {list(frame.columns)}"
        )
    # a frozen encoder's features come from (and go to) the cache training and predict use
    with feature_caches(art.model, art.pipeline, art.config.trainer):
        vectors, present = embed(
            art, head, inp, frame, base_dir, source, art.pipeline.bad_cells, batch_size,
            access=art.pipeline.access, serial_decode=True,
        )  # fmt: skip
    if not present.any():
        raise DataError(f"{source}, column {inp.cols[0]!r}: no row has a value to index")
    index, chosen, params = make_index(vectors[present], kind, exact_below)
    ids = frame[id_column] if id_column is not None else pd.Series(frame.index, index=frame.index)
    meta = {
        "output": out_name,
        "input": inp.name,
        "column": inp.cols[0],
        "modality": inp.type,
        "kind": chosen,
        "params": params,
        "dim": int(vectors.shape[1]),
        "size": int(present.sum()),
        "skipped": int((~present).sum()),
        "fingerprint": fingerprint(art),
        "ids": [_jsonable(v) for v in ids[present].tolist()],
        "values": [_jsonable(v) for v in frame[inp.cols[0]][present].tolist()],
    }
    return SearchIndex(index, meta)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def index_name(column: str) -> str:
    return re.sub(r"[^\w.-]", "_", column)


def save_index(model_dir: str | Path, si: SearchIndex) -> Path:
    import faiss

    folder = Path(model_dir) / INDEX_DIR
    folder.mkdir(parents=True, exist_ok=True)
    name = index_name(si.meta["column"])
    tmp = folder / f".{name}.faiss.tmp"
    faiss.write_index(si.index, str(tmp))
    tmp.replace(folder / f"{name}.faiss")
    atomic_write_text(folder / f"{name}.json", json.dumps(si.meta, ensure_ascii=False))
    return folder / f"{name}.faiss"


def list_indexes(model_dir: str | Path) -> list[str]:
    return sorted(p.stem for p in (Path(model_dir) / INDEX_DIR).glob("*.faiss"))


def load_index(model_dir: str | Path, column: str | None = None) -> SearchIndex:
    import faiss

    names = list_indexes(model_dir)
    if not names:
        raise FileNotFoundError(
            f"{model_dir} has no index: build one with `polymodal index {model_dir} TABLE --column COL`"
        )
    if column is None and len(names) > 1:
        raise SearchError(f"{model_dir} holds several indexes {names}: pick one with its column")
    name = index_name(column) if column is not None else names[0]
    if name not in names:
        raise FileNotFoundError(f"{model_dir} has no index of column {column!r}; it has {names}")
    folder = Path(model_dir) / INDEX_DIR
    return SearchIndex(
        faiss.read_index(str(folder / f"{name}.faiss")), read_json(folder / f"{name}.json")
    )


# -- searching --------------------------------------------------------------------------------
def query_input(art: Artifact, si: SearchIndex, modality: str) -> InputConfig:
    """The pair's other side, which queries the index; it must read ``modality``."""
    if si.meta["fingerprint"] != fingerprint(art):
        raise SearchError(
            f"index of column {si.meta['column']!r} was built with a different model (fingerprint "
            f"{si.meta['fingerprint'][:12]}, this model {fingerprint(art)[:12]}): rebuild it with "
            f"`polymodal index MODEL_DIR TABLE --column {si.meta['column']}`"
        )
    _, head = retrieval_head(art, si.meta["output"])
    other = next(n for n in head.pair if n != si.meta["input"])
    inp = next(i for i in art.config.inputs if i.name == other)
    if inp.type != modality:
        raise SearchError(
            f"the index holds {si.meta['modality']} embeddings of column {si.meta['column']!r}: "
            f"query it with {inp.type} (the other side of the pair, input {inp.name!r}), "
            f"not with {modality}"
        )
    return inp


def search(
    art: Artifact,
    si: SearchIndex,
    queries: list[Any],
    modality: str,
    k: int = 10,
    base_dir: Path | None = None,
    onnx: Path | None = None,
) -> pd.DataFrame:
    """Top-``k`` rows of the index for each query (text strings, or image paths / bytes):
    columns ``query, rank, id, score, <column>``. ``onnx``: the exported ``model.onnx``, whose
    retrieval tower beside it embeds the queries (the ONNX backend)."""
    inp = query_input(art, si, modality)
    if not queries:
        raise ValueError("no query given: expected at least one text or image")
    if modality == "text":
        for q in queries:
            if not isinstance(q, str) or not q.strip():
                raise ValueError(f"empty text query {q!r}: expected some text to search for")
    if not 1 <= k <= si.size:
        raise ValueError(
            f"k={k} must be between 1 and the collection size ({si.size} rows in the index of column {si.meta['column']!r})"
        )
    _, head = retrieval_head(art, si.meta["output"])
    frame = pd.DataFrame({inp.cols[0]: queries})
    runner = load_tower(onnx, si.meta["output"], inp.name) if onnx is not None else None
    where = base_dir or Path.cwd()
    vectors, present = embed(art, head, inp, frame, where, f"<{modality} query>", runner=runner)
    if not present.all():
        raise ValueError(f"query {int(np.argmin(present))} is empty: expected a {modality} value")
    scores, rows = si.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
    out = []
    for qi, (srow, rrow) in enumerate(zip(scores, rows, strict=True)):
        for rank, (score, row) in enumerate(zip(srow, rrow, strict=True), start=1):
            if row < 0:  # an approximate index found fewer than k
                continue
            out.append(
                {
                    "query": qi,
                    "rank": rank,
                    "id": si.meta["ids"][row],
                    "score": float(score),
                    si.meta["column"]: si.meta["values"][row],
                }
            )
    return pd.DataFrame(out)


# -- what Predictor.index and Predictor.search run --------------------------------------------
def index_table(
    art: Artifact,
    data: TableLike,
    column: str,
    where: str | Path | None,
    kind: str = "auto",
    id_column: str | None = None,
    output: str | None = None,
    base_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Index ``column`` of ``data`` (a DataFrame or a table's path) into ``where``/index/;
    returns the index's description (``meta`` without the ids and cells) and its path."""
    if where is None:  # before minutes of embedding, not after
        raise ValueError("no model directory to store the index in: pass model_dir")
    frame, base, src = read_any(data, "index", base_dir)
    si = build_index(art, frame, column, base, src, output, kind, id_column)
    path = save_index(where, si)
    described = {k: v for k, v in si.meta.items() if k not in ("ids", "values")}
    return {**described, "path": str(path)}


def search_saved(
    art: Artifact,
    where: str | Path | None,
    text: str | list[str] | None,
    image: str | Path | bytes | list[Any] | None,
    k: int = 10,
    column: str | None = None,
    onnx: Path | None = None,
) -> pd.DataFrame:
    """:func:`search` of the index stored in ``where`` with the text or the image queries."""
    if (text is None) == (image is None):
        raise ValueError("search needs exactly one of text= or image=")
    if where is None:
        raise ValueError("no model directory holding an index: pass model_dir")
    si = load_index(where, column)
    raw = text if text is not None else image
    queries = list(raw) if isinstance(raw, list) else [raw]
    if image is not None:
        queries = [q if isinstance(q, bytes) else str(q) for q in queries]
    return search(art, si, queries, "text" if text is not None else "image", k, onnx=onnx)
