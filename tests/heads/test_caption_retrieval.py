"""Retrieval-augmented caption head: the neighbour index (search, leave-one-out, saved sizes,
missing index), copying from neighbours, no-repeat n-grams, and option errors."""

import pytest
import torch

from polymodal.heads.caption import CaptionHead, repeated_ngrams
from polymodal.heads.neighbours import NeighbourIndex
from polymodal.utils.errors import ArtifactError

BOS, EOS = 2, 3


def _captions(rows: list[list[int]]) -> torch.Tensor:
    """Word ids (>= 4) -> <bos> .. <eos> rows padded with 0."""
    out = torch.zeros(len(rows), max(map(len, rows)) + 2, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r) + 2] = torch.tensor([BOS, *r, EOS])
    return out


def test_search_nearest_first_and_leave_one_out():
    keys = torch.eye(4)
    keys[1] = torch.tensor([0.9, 0.1, 0.0, 0.0])  # item 1 is close to item 0
    index = NeighbourIndex(4, k=2)
    index.fill(keys, _captions([[4], [5, 6], [7], [8]]))
    tokens, sim = index.search(keys[:1], leave_self_out=False)
    assert tokens[0, 0].tolist() == [4, EOS, 0] and tokens[0, 1].tolist() == [5, 6, EOS]
    assert sim[0, 0] == pytest.approx(1.0) and sim[0, 1] < 1
    tokens, sim = index.search(keys[:1], leave_self_out=True)  # never itself
    assert tokens[0, 0].tolist() == [5, 6, EOS] and sim[0, 0] < 0.9999


def test_leave_out_caption_drops_every_item_of_the_same_caption():
    keys = torch.tensor([[1.0, 0.0], [0.95, 0.05], [0.0, 1.0]])
    captions = _captions([[4, 5], [4, 5], [6]])  # items 0 and 1 share a caption (a variant)
    by_item, by_caption = NeighbourIndex(2, 1, "item"), NeighbourIndex(2, 1, "caption")
    by_item.fill(keys, captions)
    by_caption.fill(keys, captions)
    assert by_item.search(keys[:1], True)[0][0, 0].tolist() == [4, 5, EOS]  # the variant
    assert by_caption.search(keys[:1], True)[0][0, 0].tolist() == [6, EOS, 0]
    assert by_caption.search(keys[:1], False)[0][0, 0].tolist() == [4, 5, EOS]  # prediction


def test_fewer_items_than_k_are_padded():
    index = NeighbourIndex(3, k=3)
    index.fill(torch.randn(2, 3), _captions([[4], [5]]))
    tokens, sim = index.search(torch.randn(1, 3), leave_self_out=False)
    assert tokens.shape == (1, 3, 2) and tokens[0, 2].eq(0).all() and sim[0, 2] == 0


def test_missing_index_and_empty_caption_are_clear_errors():
    head = CaptionHead(in_dim=4, num_outputs=10, in_dims={"photo": 4}, retrieve=2, d_model=8,
                       ff_dim=16, heads=2).eval()  # fmt: skip
    with pytest.raises(ArtifactError, match=r"retrieve: 2 needs the neighbour index.*holds none"):
        head({"photo": torch.randn(1, 4)})
    with pytest.raises(ValueError, match="training item 1 has an empty caption"):
        head.fill_index(torch.randn(2, 4), torch.tensor([[BOS, 4, EOS], [BOS, EOS, 0]]))


def test_retrieve_needs_a_source_among_several_inputs():
    with pytest.raises(ValueError, match=r"retrieve needs source.*\['a', 'b'\]"):
        CaptionHead(in_dim=4, num_outputs=10, in_dims={"a": 4, "b": 4}, retrieve=2)
    head = CaptionHead(in_dim=4, num_outputs=10, in_dims={"a": 3}, retrieve=2)
    assert head.reads == ("a",) and head.index_input == "a"


def test_saved_index_loads_into_a_fresh_head():
    """A fresh head's index is empty; loading a fitted one's state takes its sizes."""
    torch.manual_seed(0)
    opts = {"in_dim": 6, "num_outputs": 12, "in_dims": {"x": 6}, "retrieve": 2, "d_model": 16,
            "ff_dim": 32, "heads": 2, "max_length": 4}  # fmt: skip
    head = CaptionHead(**opts)
    head.fill_index(torch.randn(5, 6), _captions([[4], [5, 6], [7, 8, 9], [10], [11, 4]]))
    fresh = CaptionHead(**opts)
    fresh.load_state_dict(head.state_dict())
    x = {"x": torch.randn(3, 6)}
    assert torch.equal(head.eval().decode(head(x))["pred"], fresh.eval().decode(fresh(x))["pred"])


def _copy_task(head: CaptionHead, steps: int) -> float:
    """Queries near the index keys must write their neighbour's caption; the captions are drawn
    afresh every step, so only copying (not memorising a key) can lower the loss."""
    gen = torch.Generator().manual_seed(0)
    keys = torch.randn(6, 8, generator=gen)
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(steps):
        words = torch.randint(4, 16, (6, 2), generator=gen)
        head.fill_index(keys, _captions(words.tolist()))
        x = keys + 0.05 * torch.randn(keys.shape, generator=gen)
        opt.zero_grad()
        loss = head.loss(head({"x": x}), _captions(words.tolist()))
        loss.backward()
        opt.step()
    return float(loss.detach())


def test_head_copies_its_nearest_neighbour():
    torch.manual_seed(0)
    head = CaptionHead(in_dim=8, num_outputs=16, in_dims={"x": 8}, retrieve=2, d_model=32,
                       ff_dim=64, heads=2, layers=1, dropout=0.0, max_length=4,
                       label_smoothing=0.0, retrieve_layers=0)  # fmt: skip
    assert _copy_task(head, 130) < 0.2
    keys = head.index.keys.clone()
    new = [[5, 9], [7, 7], [12, 4], [15, 6], [8, 11], [10, 13]]  # captions never trained on
    head.fill_index(keys, _captions(new))
    head.eval()
    pred = head.decode(head({"x": keys + 0.05 * torch.randn(keys.shape)}), "beam")["pred"]
    assert pred[:, :3].tolist() == [[*w, EOS] for w in new]


def test_without_copy_the_memory_still_holds_the_neighbours():
    head = CaptionHead(in_dim=4, num_outputs=10, in_dims={"x": 4}, retrieve=3, copy=False,
                       d_model=8, ff_dim=16, heads=2).eval()  # fmt: skip
    head.fill_index(torch.randn(5, 4), _captions([[4], [5, 6], [7], [8], [9]]))
    memory = head({"x": torch.randn(2, 4)})  # 4 feature tokens + 3 neighbours x 3 tokens
    assert memory.shape == (2, 4 + 9, 9) and memory[:, :4, -1].eq(-1).all()
    assert head.logits(memory, torch.full((2, 1), BOS)).shape == (2, 1, 10)


def test_repeated_ngrams():
    prefix = torch.tensor([[BOS, 5, 6, 5], [BOS, 5, 6, 7]])
    banned = repeated_ngrams(prefix, 2, 10)
    assert banned[0].nonzero().flatten().tolist() == [0, 6]  # "5 6" again; pad never matters
    assert banned[1].nonzero().flatten().tolist() == [0]
    once = repeated_ngrams(prefix, 1, 10)
    assert once[1].nonzero().flatten().tolist() == [2, 5, 6, 7] and not once[:, EOS].any()


def test_no_repeat_ngram_in_decoding():
    """An untrained decoder tends to repeat itself; with no_repeat_ngram 1 no word repeats."""
    torch.manual_seed(3)
    head = CaptionHead(in_dim=4, num_outputs=7, d_model=16, ff_dim=32, heads=2, max_length=8,
                       no_repeat_ngram=1).eval()  # fmt: skip
    memory = head(torch.randn(5, 4))
    for method in ("greedy", "beam"):
        for row in head.decode(memory, method)["pred"].tolist():
            words = [t for t in row if t > EOS]
            assert len(words) == len(set(words))
