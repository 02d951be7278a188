"""Retrieval head and metrics: InfoNCE behaviour, positives that share a cell, missing sides,
Recall@k and median rank."""

import numpy as np
import torch

from polymodal.evaluation.metrics import first_positive_ranks, retrieval_metrics
from polymodal.heads.retrieval import RetrievalHead

N, D = 6, 4


def _head(**kw):
    return RetrievalHead(in_dims={"img": D, "txt": D}, pair=["img", "txt"], dim=D, hidden=0, **kw)


def _pair(a, b):
    return torch.stack(
        [torch.nn.functional.normalize(a, dim=-1), torch.nn.functional.normalize(b, dim=-1)], 1
    )


def test_aligned_pairs_have_lower_loss_than_shuffled():
    torch.manual_seed(0)
    head = _head()
    a = torch.randn(N, D)
    ids = torch.arange(N).repeat(2, 1).T
    aligned = head.loss(_pair(a, a + 0.01 * torch.randn(N, D)), ids)
    shuffled = head.loss(_pair(a, a[torch.randperm(N)]), ids)
    assert aligned < 0.5 < shuffled


def test_rows_sharing_a_cell_are_not_negatives():
    head = _head()
    v = torch.nn.functional.normalize(torch.randn(1, D), dim=-1)
    out = torch.cat([v, v]).unsqueeze(1).expand(2, 2, D)  # two rows, identical embeddings
    distinct = head.loss(out, torch.tensor([[0, 0], [1, 1]]))  # told they are different
    shared = head.loss(out, torch.tensor([[0, 0], [1, 0]]))  # same text: both positives
    assert distinct > 0.6 and shared < 1e-5


def test_missing_side_is_left_out_of_loss_and_decode():
    torch.manual_seed(0)
    head = _head()
    feats = {"img": torch.randn(N, D), "txt": torch.randn(N, D)}
    masks = {"img": torch.ones(N, dtype=torch.bool), "txt": torch.ones(N, dtype=torch.bool)}
    masks["txt"][0] = False
    out = head(feats, masks)
    assert out[0, 1].abs().sum() == 0
    per_row = head.loss(out, torch.arange(N).repeat(2, 1).T, reduction="none")
    assert per_row[0] == 0 and (per_row[1:] > 0).all()
    sim = head.decode(out)["pred"]
    assert torch.isnan(sim[0]) and torch.isfinite(sim[1:]).all()


def test_temperature_is_learnable_or_fixed():
    assert _head().log_scale.requires_grad
    fixed = _head(learn_temperature=False)
    assert not any(p is fixed.log_scale for p in fixed.parameters())
    assert torch.isclose(fixed.scale(), torch.tensor(1 / 0.07))


def test_ranks_and_recall():
    a = np.eye(3, dtype=np.float32)
    b = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]], dtype=np.float32)  # rows 1 and 2 swapped
    ids = np.array([[0, 0], [1, 1], [2, 2]])
    assert first_positive_ranks(a, b, ids).tolist() == [1, 2, 2]
    m = retrieval_metrics(a, b, ids, ("img", "txt"))
    assert m["img_to_txt_R@1"] == 1 / 3 and m["img_to_txt_R@5"] == 1.0
    assert m["txt_to_img_median_rank"] == 2.0 and m["n_pairs"] == 3
    same_text = np.array([[0, 0], [1, 1], [2, 1]])  # rows 1, 2 share their text: both correct
    assert retrieval_metrics(a, b, same_text, ("img", "txt"))["img_to_txt_R@1"] == 1.0
