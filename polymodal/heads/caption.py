"""Captioning head: a small Transformer decoder that writes a text column word by word while
cross-attending to image (or fused) features.

The head's forward maps features to a few memory tokens; those are its "logits" (so the model,
its export and its batching stay unchanged). ``loss`` runs the decoder on the gold caption with
teacher forcing; ``decode`` generates greedily or by beam search. Token ids follow
:class:`~polymodal.data.seq_targets.CaptionTargets` (0 pad, 1 unknown, 2 begin, 3 end).

Retrieval-augmented (``retrieve: k``): the k training items nearest to the input in the source
encoder's (frozen) feature space are looked up in the head's :class:`NeighbourIndex`, and their
captions, encoded with their rank and similarity, join the memory, so the decoder can copy and
edit a neighbour's caption instead of writing from nothing (with ``copy``, a pointer over the
neighbours' words mixes into the vocabulary distribution, as in See et al. 2017). The memory then
carries one extra channel: each token's vocabulary id (-1 for feature tokens, 0 for padding), so
``loss`` and ``decode``, which see only the head's output, know which words they may copy.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.heads.neighbours import NeighbourIndex
from polymodal.registry import register

PAD, UNK, BOS, EOS = 0, 1, 2, 3
MAX_POSITIONS = 64  # longest token row the decoder reads (targets are cut to this)
DECODINGS = ("beam", "greedy")
FEATURE_ID = -1.0  # id channel of the memory tokens made from features (never copied)


@register("head", "caption")
class CaptionHead(nn.Module):
    """``source`` (an input name) makes the decoder read that input's own features; by default it
    reads the fused vector (or the per-modality tokens of decision-level fusion). ``retrieve``
    needs a source (the only input by default): its frozen features find the neighbours."""

    task: ClassVar[str] = "caption"

    def __init__(
        self,
        in_dim: int,
        num_outputs: int,  # vocabulary size, injected from the fitted caption vocabulary
        in_dims: dict[str, int] | None = None,
        source: str | None = None,  # read this input's features instead of the fused vector
        d_model: int = 256,
        layers: int = 2,
        heads: int = 4,
        ff_dim: int = 512,
        dropout: float = 0.1,
        memory_tokens: int = 4,  # feature vector -> this many cross-attention tokens
        max_length: int = 24,  # most words generated
        decoding: str = "beam",  # beam | greedy
        beam_size: int = 4,
        length_penalty: float = 0.6,  # beam score / length ** penalty (GNMT-style)
        no_repeat_ngram: int = 0,  # n > 0: never generate an n-gram twice in one caption
        label_smoothing: float = 0.1,
        retrieve: int = 0,  # k > 0: the k nearest training captions join the memory
        leave_out: str = "item",  # training neighbours exclude: the item | all of its caption
        copy: bool = True,  # retrieval: a pointer over the neighbours' words
        retrieve_layers: int = 1,  # Transformer layers encoding each neighbour's caption
    ) -> None:
        super().__init__()
        _check_options(decoding, max_length, no_repeat_ngram, retrieve_layers)
        source = _source(source, in_dims or {}, retrieve)
        if source is not None:
            in_dim = (in_dims or {})[source]
            self.reads = (source,)
        self.source = source
        self.vocab_size, self.d_model, self.memory_tokens = num_outputs, d_model, memory_tokens
        self.max_length, self.decoding, self.beam_size = max_length, decoding, beam_size
        self.length_penalty, self.label_smoothing = length_penalty, label_smoothing
        self.no_repeat_ngram, self.retrieve, self.copy = no_repeat_ngram, retrieve, copy
        self.memory = nn.Sequential(nn.Linear(in_dim, memory_tokens * d_model), nn.Dropout(dropout))
        self.memory_norm = nn.LayerNorm(d_model)
        self.embed = nn.Embedding(num_outputs, d_model, padding_idx=PAD)
        self.position = nn.Embedding(MAX_POSITIONS, d_model)
        layer = nn.TransformerDecoderLayer(
            d_model, heads, ff_dim, dropout, batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(d_model))
        self.out = nn.Linear(d_model, num_outputs)
        if retrieve:
            self._build_retrieval(
                in_dim, retrieve, leave_out, heads, ff_dim, dropout, retrieve_layers
            )

    def _build_retrieval(
        self, in_dim: int, k: int, leave_out: str, heads: int, ff_dim: int, dropout: float,
        layers: int,
    ) -> None:  # fmt: skip
        """The index, and the modules that turn neighbour captions into memory tokens."""
        d = self.d_model
        self.index = NeighbourIndex(in_dim, k, leave_out)
        self.index_input = self.source  # the trainer fills the index from this input's features
        self.rank = nn.Embedding(k, d)  # which neighbour (1st, 2nd...) a token comes from
        self.similarity = nn.Linear(1, d)  # how close that neighbour is
        layer = nn.TransformerEncoderLayer(d, heads, ff_dim, dropout, batch_first=True,
                                           norm_first=True)  # fmt: skip
        self.neighbour_encoder = (
            nn.TransformerEncoder(layer, layers, enable_nested_tensor=False) if layers else None
        )
        self.neighbour_norm = nn.LayerNorm(d)
        if self.copy:
            self.copy_query = nn.Linear(d, d)
            self.copy_gate = nn.Linear(d, 1)

    def fill_index(self, keys: Tensor, tokens: Tensor) -> None:
        """The training items' source features (N, D) and encoded captions (N, T)."""
        self.index.fill(keys, tokens)

    def forward(
        self, x: Tensor | dict[str, Tensor], masks: dict[str, Tensor] | None = None
    ) -> Tensor:
        """Features (B, D), per-modality tokens (B, M, D), or ``{source: (B, D)}`` -> memory
        (B, M * memory_tokens, d_model); with ``retrieve``, (B, S, d_model + 1) with the
        neighbours' tokens after the feature tokens and the id channel last."""
        if isinstance(x, dict):
            x = x[str(self.source)]
        tokens = x if x.dim() == 3 else x.unsqueeze(1)  # (B, M, D)
        mem = self.memory(tokens)  # (B, M, k * d)
        mem = self.memory_norm(mem.reshape(x.shape[0], -1, self.d_model))
        if not self.retrieve:
            return mem
        ids, sim = self.index.search(x, leave_self_out=self.training)  # (B, k, T), (B, k)
        feature_ids = mem.new_full((*mem.shape[:2], 1), FEATURE_ID)
        return torch.cat(
            [torch.cat([mem.float(), feature_ids.float()], -1), self._neighbours(ids, sim)], 1
        )

    def _neighbours(self, ids: Tensor, sim: Tensor) -> Tensor:
        """Neighbour captions (B, k, T) and similarities (B, k) -> memory tokens with their id
        channel (B, k * T, d_model + 1); padding is all zeros."""
        b, k, t = ids.shape
        h = self.embed(ids) * math.sqrt(self.d_model) + self.position(
            torch.arange(t, device=ids.device)
        )
        h = h + self.rank.weight[:k, None] + self.similarity(sim[..., None].to(h.dtype))[:, :, None]
        h, pad = h.reshape(b * k, t, self.d_model), ids.reshape(b * k, t) == PAD
        if self.neighbour_encoder is not None:
            pad_first = pad.clone()
            pad_first[:, 0] = False  # an empty slot attends to its first pad (then is zeroed)
            h = self.neighbour_encoder(h, src_key_padding_mask=pad_first)
        h = self.neighbour_norm(h).masked_fill(pad[..., None], 0.0)
        # float32: the id channel must hold vocabulary ids exactly (half precision cannot)
        ids_channel = ids.reshape(b * k, t, 1).float()
        return torch.cat([h.float(), ids_channel], -1).reshape(b, k * t, -1)

    def logits(self, memory: Tensor, tokens: Tensor) -> Tensor:
        """Next-token logits (B, T, V) for every prefix of ``tokens`` (B, T) (causal); with the
        copy pointer, log-probabilities (which are their own logits)."""
        t = tokens.shape[1]
        pos = torch.arange(t, device=tokens.device)
        h = self.embed(tokens) * math.sqrt(self.d_model) + self.position(pos)  # (B, T, d)
        causal = nn.Transformer.generate_square_subsequent_mask(t, device=tokens.device)
        if not self.retrieve:
            return self.out(self.decoder(h, memory, tgt_mask=causal, tgt_is_causal=True))
        mem, ids = memory[..., :-1], memory[..., -1].round().long()  # (B, S, d), (B, S)
        h = self.decoder(h, mem, tgt_mask=causal, tgt_is_causal=True,
                         memory_key_padding_mask=ids == PAD)  # fmt: skip
        return self._copy(h, mem, ids) if self.copy else self.out(h)

    def _copy(self, h: Tensor, mem: Tensor, ids: Tensor) -> Tensor:
        """Pointer-generator mixture: p = g * softmax(out(h)) + (1 - g) * (attention over the
        neighbours' tokens, summed per word). Returns log p (B, T, V)."""
        words = ids > 0  # neighbour tokens (feature tokens are -1, padding 0)
        score = self.copy_query(h) @ mem.transpose(1, 2) / math.sqrt(self.d_model)  # (B, T, S)
        attn = score.masked_fill(~words[:, None], -torch.inf).softmax(-1).nan_to_num(0.0)
        index = ids.clamp(min=0)[:, None].expand(-1, h.shape[1], -1)
        copied = torch.zeros(*h.shape[:2], self.vocab_size, device=h.device, dtype=attn.dtype)
        copied.scatter_add_(2, index, attn)  # (B, T, V)
        gate = self.copy_gate(h)  # (B, T, 1), logit of generating from the vocabulary
        generated = F.log_softmax(self.out(h), -1) + F.logsigmoid(gate)
        return torch.logaddexp(generated, copied.clamp(min=1e-12).log() + F.logsigmoid(-gate))

    def loss(self, logits: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
        """Teacher forcing: predict token t+1 from the gold tokens up to t; pads are ignored."""
        target = target[:, :MAX_POSITIONS].long()
        pred = self.logits(logits, target[:, :-1])  # (B, T-1, V)
        gold = target[:, 1:]
        per_token = F.cross_entropy(
            pred.transpose(1, 2),
            gold,
            ignore_index=PAD,
            reduction="none",
            label_smoothing=self.label_smoothing,
        )  # (B, T-1)
        count = (gold != PAD).sum(1).clamp(min=1)
        per_row = per_token.sum(1) / count
        return per_row.mean() if reduction == "mean" else per_row

    def _next_logp(self, memory: Tensor, tokens: Tensor) -> Tensor:
        """Log-probabilities of the next token (N, V); never pad, begin or unknown, nor (with
        ``no_repeat_ngram``) a token that would repeat an n-gram of ``tokens``."""
        logp = F.log_softmax(self.logits(memory, tokens)[:, -1].float(), dim=-1)
        logp[:, [PAD, UNK, BOS]] = -torch.inf
        if self.no_repeat_ngram:
            logp = logp.masked_fill(
                repeated_ngrams(tokens, self.no_repeat_ngram, logp.shape[1]), -torch.inf
            )
        return logp

    @torch.no_grad()
    def greedy(self, memory: Tensor) -> Tensor:
        b = memory.shape[0]
        seqs = torch.full((b, 1), BOS, dtype=torch.long, device=memory.device)
        done = torch.zeros(b, dtype=torch.bool, device=memory.device)
        for _ in range(self.max_length + 1):
            nxt = self._next_logp(memory, seqs).argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
            seqs = torch.cat([seqs, nxt[:, None]], dim=1)
            done |= nxt == EOS
            if bool(done.all()):
                break
        return seqs[:, 1:]  # (B, L) without <bos>

    @torch.no_grad()
    def beam(self, memory: Tensor, k: int) -> Tensor:
        """Batched beam search; finished beams carry pads at no cost; the best beam by
        log-probability / length ** ``length_penalty`` wins."""
        b, dev = memory.shape[0], memory.device
        mem = memory.repeat_interleave(k, dim=0)  # (B*k, M, d)
        seqs = torch.full((b * k, 1), BOS, dtype=torch.long, device=dev)
        scores = torch.full((b, k), -torch.inf, device=dev)
        scores[:, 0] = 0.0  # all beams start equal: keep one
        done = torch.zeros(b * k, dtype=torch.bool, device=dev)
        for _ in range(self.max_length + 1):
            logp = self._next_logp(mem, seqs)  # (B*k, V)
            logp[done] = -torch.inf
            logp[done, PAD] = 0.0
            cand = (scores.reshape(-1, 1) + logp).reshape(b, -1)  # (B, k*V)
            scores, flat = cand.topk(k, dim=1)
            parent = (torch.arange(b, device=dev)[:, None] * k + flat // self.vocab_size).reshape(
                -1
            )
            token = (flat % self.vocab_size).reshape(-1)
            seqs = torch.cat([seqs[parent], token[:, None]], dim=1)
            done = done[parent] | (token == EOS)
            if bool(done.all()):
                break
        length = ((seqs[:, 1:] != PAD) & (seqs[:, 1:] != EOS)).sum(1).clamp(min=1) + 1
        norm = scores / length.reshape(b, k).float() ** self.length_penalty
        best = torch.arange(b, device=dev) * k + norm.argmax(1)
        return seqs[best, 1:]  # (B, L) without <bos>

    def decode(self, logits: Tensor, method: str | None = None) -> dict[str, Tensor]:
        """Memory -> ``{"pred": token ids (B, L)}``, greedy or beam (default: ``decoding``)."""
        method = method or self.decoding
        if method not in DECODINGS:
            raise ValueError(f"caption head: decoding must be one of {DECODINGS}, got {method!r}")
        if method == "greedy" or self.beam_size <= 1:
            return {"pred": self.greedy(logits)}
        return {"pred": self.beam(logits, self.beam_size)}


def repeated_ngrams(tokens: Tensor, n: int, vocab: int) -> Tensor:
    """(N, T) prefixes -> (N, V) True for each next token that would complete an n-gram already
    in its prefix (``<eos>`` is always allowed, so a caption can end)."""
    banned = torch.zeros(tokens.shape[0], vocab, dtype=torch.bool, device=tokens.device)
    if tokens.shape[1] < n:
        return banned
    grams = tokens.unfold(1, n, 1)  # (N, G, n): every n-gram of the prefix
    if n == 1:
        hit = torch.ones(grams.shape[:2], dtype=torch.bool, device=tokens.device)
    else:
        hit = (grams[:, :, :-1] == tokens[:, None, tokens.shape[1] - n + 1 :]).all(-1)  # (N, G)
    last = grams[:, :, -1].masked_fill(~hit, PAD)  # banned completions; PAD is banned anyway
    banned.scatter_(1, last, True)
    banned[:, EOS] = False
    return banned


def _check_options(
    decoding: str, max_length: int, no_repeat_ngram: int, retrieve_layers: int
) -> None:
    if decoding not in DECODINGS:
        raise ValueError(f"caption head: decoding must be one of {DECODINGS}, got {decoding!r}")
    if not 0 < max_length < MAX_POSITIONS - 1:
        raise ValueError(f"caption head: max_length must be in 1..{MAX_POSITIONS - 2}")
    if no_repeat_ngram < 0 or retrieve_layers < 0:
        raise ValueError("caption head: no_repeat_ngram and retrieve_layers must be >= 0")


def _source(source: str | None, in_dims: dict[str, int], retrieve: int) -> str | None:
    """The input the head reads: ``source``, or with ``retrieve`` the only input there is."""
    if source is None and retrieve:
        if len(in_dims) != 1:
            raise ValueError(
                f"caption head: retrieve needs source, the input whose frozen features find the "
                f"neighbours; valid choices: {sorted(in_dims)}"
            )
        source = next(iter(in_dims))
    if source is not None and source not in in_dims:
        raise ValueError(
            f"caption head: source {source!r} is not an input; valid choices: {sorted(in_dims)}"
        )
    return source
