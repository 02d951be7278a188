"""How fast the MiniRocket encoder transforms windows of 6 channels x 200 steps (issue 19's
target: >= 1,000 windows/s on 2 cores).

Windows are cut from the shared smartwatch recordings (4 s at 50 Hz, stride 100 steps),
standardised by the timeseries preprocessor; the encoder is fitted on 32 of them (its default
reference sample). Reports wall-clock windows/s with ``--threads`` threads (median of
``--repeats`` passes over all windows, batches of ``--batch``), and the single-thread CPU time
per window, which a busy shared machine disturbs less.

    python scripts/minirocket_speed.py [--threads 2] [--batch 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from polymodal.data.preprocess.series import SeriesPreprocessor
from polymodal.encoders.minirocket import MiniRocket

WATCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "watch" / "recordings.parquet"


def windows(length: int = 200, stride: int = 100) -> pd.DataFrame:
    """Every window of every recording, as a one-column table of inline series."""
    cells = []
    for signal in pd.read_parquet(WATCH)["signal"]:
        steps = np.stack(signal)
        cells += [steps[s : s + length] for s in range(0, len(steps) - length + 1, stride)]
    return pd.DataFrame({"signal": cells})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    table = windows()
    pre = SeriesPreprocessor(max_length=200, reference_rows=32).fit(table, ["signal"], Path())
    x = pre.transform(table, ["signal"], Path()).rows(torch.arange(len(table)))  # (N, 200, 7)
    t0 = time.perf_counter()
    encoder = MiniRocket(**pre.spec()).eval()
    built = time.perf_counter() - t0
    batches = x.split(args.batch)
    walls = []
    with torch.no_grad():
        torch.set_num_threads(args.threads)
        encoder(batches[0])  # warm-up
        for _ in range(args.repeats):
            t = time.perf_counter()
            for b in batches:
                encoder(b)
            walls.append(time.perf_counter() - t)
        torch.set_num_threads(1)
        cpu = []
        for _ in range(args.repeats):
            t = time.process_time()
            encoder(batches[0])
            cpu.append((time.process_time() - t) / len(batches[0]))
    rate = len(x) / statistics.median(walls)
    print(f"{len(x)} windows of {x.shape[2] - 1} channels x {x.shape[1]} steps, "
          f"{encoder.out_dim} features, built in {built:.2f} s")  # fmt: skip
    print(f"{args.threads} threads: {rate:,.0f} windows/s (median of {args.repeats} passes; "
          f"best {len(x) / min(walls):,.0f})")  # fmt: skip
    print(f"1 thread: {min(cpu) * 1e3:.2f} ms CPU per window -> {2 / min(cpu):,.0f} windows/s "
          "on 2 cores if they scale perfectly")  # fmt: skip


if __name__ == "__main__":
    main()
