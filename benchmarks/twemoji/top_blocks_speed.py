"""One training step of EfficientNet-Lite0 with its top block training (``train_top_blocks: 1``)
on 128 images at 224 px, 1 thread: the whole network (no cache) against the top block alone
from the cached trunk map (what the feature cache serves after an image's first pass).

    python benchmarks/twemoji/top_blocks_speed.py
"""

import time

import torch

from polymodal.encoders.efficientnet import EfficientNetLite

torch.set_num_threads(1)
torch.manual_seed(0)
enc = EfficientNetLite(train_top_blocks=1).train()
x = torch.rand(128, 3, 224, 224) * 2 - 1
trunk = enc.cached_stage()
assert trunk is not None
with torch.no_grad():
    maps = trunk(x)  # (128, 192, 7, 7): what the cache keeps per image


def whole() -> None:
    enc.zero_grad()
    enc(x).sum().backward()


def top_only() -> None:
    enc.zero_grad()
    enc.from_pieces(maps, x).sum().backward()


for step in (whole, top_only):
    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(3):
        step()
    print(f"{step.__name__}: {(time.perf_counter() - t0) / 3:.2f} s per step of 128 images")
