"""Decision-level (late) fusion: every modality gets its own prediction, then the predictions are
combined by a rule: mean or product of probabilities, majority vote, or learned weights.

``forward`` returns one token per modality (B, M, D); the model applies each head to every token
and calls :meth:`LateFusion.combine`. Training uses each modality's own loss (see
``MultimodalModel.loss``), so the per-modality experts stay independent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.fusion._common import mask_stack, sorted_names
from polymodal.registry import register

RULES = ("mean", "product", "vote", "learned")
EPS = 1e-6


@register("fusion", "late")
class LateFusion(nn.Module):
    decision_level = True

    def __init__(
        self, in_dims: dict[str, int], rule: str = "product", dim: int = 64, dropout: float = 0.1
    ) -> None:
        super().__init__()
        if rule not in RULES:
            raise ValueError(
                f"late fusion: unknown rule {rule!r}; valid choices: {', '.join(RULES)}"
            )
        self.names = sorted_names(in_dims)
        self.rule = rule
        self.proj = nn.ModuleDict(
            {
                n: nn.Sequential(nn.Linear(in_dims[n], dim), nn.GELU(), nn.Dropout(dropout))
                for n in self.names
            }
        )
        self.weight_logits = nn.Parameter(torch.zeros(len(self.names)))  # used by rule "learned"
        self.out_dim = dim

    def forward(self, features: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        return torch.stack([self.proj[n](features[n]) for n in self.names], dim=1)  # (B, M, D)

    def mask_stack(self, mask: dict[str, Tensor]) -> Tensor:
        return mask_stack(mask, self.names)

    def combine(self, logits: Tensor, present: Tensor, task: str) -> Tensor:
        """(B, M, C) per-modality logits -> (B, C) combined logits, over present modalities."""
        w = present.to(logits.dtype)  # (B, M)
        if self.rule == "learned":
            w = w * torch.softmax(self.weight_logits, 0)
        if task == "regression":
            norm = w / w.sum(1, keepdim=True).clamp(min=EPS)
            return (norm.unsqueeze(-1) * logits).sum(1)
        if task == "multiclass":
            logp = F.log_softmax(logits, dim=-1)  # (B, M, C)
            return self._combine_logp(logp, w)
        # binary / multilabel: independent sigmoids, combined as 2-class problems per logit
        logp1, logp0 = F.logsigmoid(logits), F.logsigmoid(-logits)
        lp1 = self._combine_logp(torch.stack([logp0, logp1], -1), w.unsqueeze(-1))
        return lp1[..., 1] - lp1[..., 0]  # logit of the combined probability

    def _combine_logp(self, logp: Tensor, w: Tensor) -> Tensor:
        """``logp`` (B, M, ..., C) log-probabilities, ``w`` (B, M, ...) weights -> (B, ..., C)."""
        wk = w.unsqueeze(-1)
        norm = wk / wk.sum(1, keepdim=True).clamp(min=EPS)
        if self.rule in ("product", "learned"):
            # sum of (weighted) log-probabilities, renormalised; all missing -> uniform
            return F.log_softmax((wk * logp).sum(1), dim=-1)
        if self.rule == "mean":
            mean = (norm * logp.exp()).sum(1)
            uniform = 1.0 / logp.shape[-1]
            total = wk.sum(1)
            return torch.log(torch.where(total > 0, mean, torch.full_like(mean, uniform)) + EPS)
        # vote: one-hot of each modality's argmax, ties broken by the mean probability
        votes = F.one_hot(logp.argmax(-1), logp.shape[-1]).to(logp.dtype)
        frac = (norm * votes).sum(1) + 1e-3 * (norm * logp.exp()).sum(1)
        frac = torch.where(wk.sum(1) > 0, frac, torch.full_like(frac, 1.0 / logp.shape[-1]))
        return torch.log(frac / frac.sum(-1, keepdim=True) + EPS)


__all__ = ["RULES", "LateFusion"]
