"""Caption head: teacher-forced training memorises a few captions, greedy and beam decoding
write them back; beam search finds sequences at least as likely as greedy; the vocabulary."""

import pandas as pd
import pytest
import torch

from polymodal.data.base import DataError
from polymodal.data.seq_targets import CaptionTargets, target_from_state
from polymodal.heads.caption import CaptionHead

CAPTIONS = ["red apple", "green apple", "a big red car", "blue car"]


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    vocab = CaptionTargets().fit(pd.Series(CAPTIONS, name="caption"))
    target = vocab.transform(pd.Series(CAPTIONS))
    head = CaptionHead(in_dim=8, num_outputs=vocab.num_outputs, d_model=32, ff_dim=64,
                       layers=1, dropout=0.0, max_length=6, label_smoothing=0.0)  # fmt: skip
    x = torch.randn(len(CAPTIONS), 8)
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(150):
        opt.zero_grad()
        loss = head.loss(head(x), target)
        loss.backward()
        opt.step()
    return head.eval(), vocab, x, float(loss.detach())


def test_teacher_forcing_memorises(trained):
    _, _, _, loss = trained
    assert loss < 0.05


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_decoding_writes_the_captions_back(trained, method):
    head, vocab, x, _ = trained
    pred = head.decode(head(x), method=method)["pred"]
    assert vocab.decode(pred) == CAPTIONS


def _logp(head, memory, seq):
    tokens = torch.cat([torch.full((len(seq), 1), 2), seq], 1)  # <bos> + sequence
    logp = torch.log_softmax(head.logits(memory, tokens[:, :-1]), -1)
    picked = logp.gather(2, tokens[:, 1:, None])[..., 0]
    return (picked * (tokens[:, 1:] != 0)).sum(1)


def test_wide_beam_finds_the_most_likely_sequence():
    """With max_length 1 (two steps) and a beam as wide as the vocabulary, beam search is exact:
    it matches brute force over every two-token sequence, and is never below greedy."""
    torch.manual_seed(1)
    head = CaptionHead(in_dim=8, num_outputs=12, d_model=16, ff_dim=32, max_length=1,
                       length_penalty=0.0).eval()  # fmt: skip
    memory = head(torch.randn(3, 8))
    allowed = [3, *range(4, 12)]  # <eos> and the words (pad, unk, bos are never generated)
    with torch.no_grad():
        beam = head.beam(memory, len(allowed))
        for i in range(3):
            seqs = [[a, 0] if a == 3 else [a, b] for a in allowed for b in allowed]
            scores = _logp(head, memory[i : i + 1].expand(len(seqs), -1, -1), torch.tensor(seqs))
            best = torch.tensor(seqs[int(scores.argmax())])
            assert torch.equal(beam[i, :2], best)
        greedy = _logp(head, memory, head.greedy(memory))
        assert (_logp(head, memory, beam) >= greedy - 1e-5).all()
        assert torch.equal(head.beam(memory, 1), head.greedy(memory))


def test_vocabulary_state_and_unknown_words():
    vocab = CaptionTargets().fit(pd.Series(CAPTIONS, name="caption"))
    again = target_from_state(vocab.state_dict())
    ids = again.transform(pd.Series(["Red zebra car"]))
    assert ids[0, 0] == 2 and ids[0, 2] == 1 and ids[0, -1] == 3  # <bos> red <unk> car <eos>
    assert again.decode(ids) == ["red <unk> car"]
    with pytest.raises(DataError, match=r"row 1, column 'caption'.*missing or empty"):
        vocab.transform(pd.Series(["ok", " "], name="caption"))


def test_unknown_decoding_is_rejected():
    with pytest.raises(ValueError, match="decoding must be one of"):
        CaptionHead(in_dim=4, num_outputs=8, decoding="sample")
