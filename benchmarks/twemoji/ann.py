"""ANN target: index and search 100,000 384-d unit vectors with polymodal's FAISS index kinds;
queries/s (2 threads, batches of 1,000 queries) and Recall@10 against the exact search.

Two collections: i.i.d. Gaussian vectors (the issue's "random vectors", the hardest case there
is: every point is nearly equidistant from every other) and clustered vectors (2,000 Gaussian
clusters, each point 0.5 noise around its centre: the structure real embeddings have).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from polymodal.export.index import make_index

DIM, QUERIES, K = 384, 2000, 10


def collection(kind: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "random":
        x = rng.standard_normal((n + QUERIES, DIM))
    else:
        centres = rng.standard_normal((2000, DIM))
        x = centres[rng.integers(0, 2000, n + QUERIES)] + 0.5 * rng.standard_normal(
            (n + QUERIES, DIM)
        )
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return x[:n], x[n:]


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, exact, strict=True)]))


def bench(n: int, kinds: tuple[str, ...] = ("flat", "hnsw", "ivf", "auto")) -> list[dict[str, Any]]:
    import faiss

    faiss.omp_set_num_threads(2)
    rows = []
    for data in ("random", "clustered"):
        base, queries = collection(data, n)
        exact = None
        for kind in kinds:
            t0 = time.perf_counter()
            index, _, params = make_index(base, kind)
            build = time.perf_counter() - t0
            t0 = time.perf_counter()
            found = np.concatenate(
                [index.search(queries[i : i + 1000], K)[1] for i in range(0, QUERIES, 1000)]
            )
            qps = QUERIES / (time.perf_counter() - t0)
            exact = found if kind == "flat" else exact
            r10 = recall(found, exact) if exact is not None else float("nan")
            rows.append({"data": data, "kind": kind, "n": n, "params": params,
                         "build_seconds": round(build, 1), "queries_per_s": round(qps),
                         "recall@10": round(r10, 4)})  # fmt: skip
            print(rows[-1], flush=True)
    return rows
