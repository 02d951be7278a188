"""Captioning head: a small Transformer decoder that writes a text column word by word while
cross-attending to image (or fused) features.

The head's forward maps features to a few memory tokens; those are its "logits" (so the model,
its export and its batching stay unchanged). ``loss`` runs the decoder on the gold caption with
teacher forcing; ``decode`` generates greedily or by beam search. Token ids follow
:class:`~polymodal.data.seq_targets.CaptionTargets` (0 pad, 1 unknown, 2 begin, 3 end).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.registry import register

PAD, UNK, BOS, EOS = 0, 1, 2, 3
MAX_POSITIONS = 64  # longest token row the decoder reads (targets are cut to this)
DECODINGS = ("beam", "greedy")


@register("head", "caption")
class CaptionHead(nn.Module):
    """``source`` (an input name) makes the decoder read that input's own features; by default it
    reads the fused vector (or the per-modality tokens of decision-level fusion)."""

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
        label_smoothing: float = 0.1,
    ) -> None:
        super().__init__()
        if decoding not in DECODINGS:
            raise ValueError(f"caption head: decoding must be one of {DECODINGS}, got {decoding!r}")
        if not 0 < max_length < MAX_POSITIONS - 1:
            raise ValueError(f"caption head: max_length must be in 1..{MAX_POSITIONS - 2}")
        if source is not None:
            if source not in (in_dims or {}):
                raise ValueError(
                    f"caption head: source {source!r} is not an input; valid choices: {sorted(in_dims or {})}"
                )
            in_dim = (in_dims or {})[source]
            self.reads = (source,)
        self.source = source
        self.vocab_size, self.d_model, self.memory_tokens = num_outputs, d_model, memory_tokens
        self.max_length, self.decoding, self.beam_size = max_length, decoding, beam_size
        self.length_penalty, self.label_smoothing = length_penalty, label_smoothing
        self.memory = nn.Sequential(nn.Linear(in_dim, memory_tokens * d_model), nn.Dropout(dropout))
        self.memory_norm = nn.LayerNorm(d_model)
        self.embed = nn.Embedding(num_outputs, d_model, padding_idx=PAD)
        self.position = nn.Embedding(MAX_POSITIONS, d_model)
        layer = nn.TransformerDecoderLayer(
            d_model, heads, ff_dim, dropout, batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(d_model))
        self.out = nn.Linear(d_model, num_outputs)

    def forward(
        self, x: Tensor | dict[str, Tensor], masks: dict[str, Tensor] | None = None
    ) -> Tensor:
        """Features (B, D), per-modality tokens (B, M, D), or ``{source: (B, D)}`` -> memory
        (B, M * memory_tokens, d_model)."""
        if isinstance(x, dict):
            x = x[str(self.source)]
        tokens = x if x.dim() == 3 else x.unsqueeze(1)  # (B, M, D)
        mem = self.memory(tokens)  # (B, M, k * d)
        return self.memory_norm(mem.reshape(x.shape[0], -1, self.d_model))

    def logits(self, memory: Tensor, tokens: Tensor) -> Tensor:
        """Next-token logits (B, T, V) for every prefix of ``tokens`` (B, T) (causal)."""
        t = tokens.shape[1]
        pos = torch.arange(t, device=tokens.device)
        h = self.embed(tokens) * math.sqrt(self.d_model) + self.position(pos)  # (B, T, d)
        causal = nn.Transformer.generate_square_subsequent_mask(t, device=tokens.device)
        return self.out(self.decoder(h, memory, tgt_mask=causal, tgt_is_causal=True))

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
        """Log-probabilities of the next token (N, V); never pad, begin or unknown."""
        logp = F.log_softmax(self.logits(memory, tokens)[:, -1].float(), dim=-1)
        logp[:, [PAD, UNK, BOS]] = -torch.inf
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
