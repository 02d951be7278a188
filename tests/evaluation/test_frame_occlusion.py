"""Per-frame occlusion: only the frames the prediction depends on get a non-zero value."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from polymodal.evaluation.frames import part_occlusion


class ThirdFrame(nn.Module):
    """An encoder that looks at frame 2 of a clip only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 2].mean(dim=(1, 2, 3))[:, None]  # (B, 1)


@pytest.mark.parametrize("task", ["multiclass", "binary", "regression"])
def test_only_the_frame_that_matters_moves_the_prediction(task):
    clip = torch.ones(1, 5, 3, 4, 4)
    scores = lambda z: torch.cat([-z, z], dim=1) * 3  # noqa: E731  (class 1 likes bright frames)
    drops = part_occlusion(ThirdFrame(), clip, scores, task, target=1)
    assert len(drops) == 5 and drops[2] > 0.4
    assert all(abs(d) < 1e-6 for i, d in enumerate(drops) if i != 2)
