"""Closed-form ridge heads (``trainer.head_solver: ridge``): each linear head's weights solved
from the features it receives, as MiniRocket's reference classifier does (scikit-learn's
``RidgeClassifierCV``: ridge regression of +-1 class indicators on standardised features, the
penalty chosen by leave-one-out error over the training rows, in closed form).

With frozen encoders (MiniRocket, a frozen pretrained model) the features are fixed, so this is
the whole fit (``epochs: 0``); with trainable ones it starts gradient training from the ridge
solution. Ridge scores are not log-odds: a temperature fitted on the leave-one-out scores (by
log-likelihood) turns them into logits, so probabilities stay sensible; the predicted class is
the ridge one. Class weights and label smoothing do not apply here.

Windows of one row (a recording cut into overlapping windows) are not independent: leaving one
window out still leaves its overlapping neighbours in, so its leave-one-out score is nearly a
training score, the penalty comes out too small and the temperature too cold (probabilities of 0
and 1, which the mean log-probability over a row's windows then turns into a veto). With windows
the left-out unit is the row: all its windows at once (the same closed form, block by block).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from polymodal.data.dataset import TableDataset, collate_batch
from polymodal.utils import dist

log = logging.getLogger("polymodal.train")

ALPHAS = tuple(float(a) for a in np.logspace(-3, 6, 19))  # penalties tried (standardised X)
TEMPERATURES = torch.logspace(-3, 2, 61, dtype=torch.float64)
TASKS = ("binary", "multiclass", "multilabel", "regression")
MAX_SIDE = 12_000  # min(rows, features) beyond this: a (side x side) eigenproblem is too big


@torch.no_grad()
def fused_features(
    model: nn.Module, data: Any, device: torch.device | str, batch_size: int = 256
) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
    """(N, D) fused features (what the heads read), the targets of every training row (or
    window) and, for windows, the table row each came from (None otherwise), the model in eval
    mode. ``data``: a dataset in memory (every rank holds every row)
    or a loader of a streamed table's shard (gathered from all ranks)."""
    was = model.training
    model.eval()
    shard = not isinstance(data, TableDataset)
    if not shard:
        data = DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collate_batch)
    feats: list[Tensor] = []
    targets: dict[str, list[Tensor]] = {}
    for batch in data:
        features = {k: v.to(device) for k, v in batch["features"].items()}
        masks = {k: v.to(device).bool() for k, v in batch["masks"].items()}
        emb = model.encode(features)  # type: ignore[operator]
        feats.append(model.fusion(emb, masks).double().cpu())  # type: ignore[operator]
        for k, v in batch["targets"].items():
            targets.setdefault(k, []).append(v.cpu())
    model.train(was)
    x, y = torch.cat(feats), {k: torch.cat(v) for k, v in targets.items()}
    if shard:
        x, y = dist.gather_rows(x), {k: dist.gather_rows(v) for k, v in y.items()}
    return x, y, None if shard else data.dataset.row_of


def indicators(task: str, target: Tensor, outputs: int) -> Tensor:
    """Targets as ridge regression targets (N, K): +-1 class / label indicators, or the
    (already scaled) regression values."""
    if task == "multiclass":
        return F.one_hot(target.long(), outputs).double() * 2 - 1
    if task in ("binary", "multilabel"):
        return target.double().reshape(len(target), -1) * 2 - 1
    return target.double().reshape(len(target), -1)


def solve(
    x: Tensor, t: Tensor, alphas: tuple[float, ...] = ALPHAS, groups: Tensor | None = None
) -> dict[str, Any]:
    """Ridge of ``t`` (N, K) on standardised ``x`` (N, D), the penalty with the smallest
    leave-one-out squared error (leaving out a whole group at once where ``groups`` (N,) is
    given): ``weight`` (D, K) and ``bias`` (K,) for raw ``x``, ``alpha``, and the leave-one-out
    predictions ``loo`` (N, K)."""
    n, d = x.shape
    if min(n, d) > MAX_SIDE:
        raise ValueError(
            f"head_solver ridge: {n} training rows x {d} features; a closed-form fit needs "
            f"at most {MAX_SIDE} of one of them (use head_solver: gradient)"
        )
    mean, std = x.mean(0), x.std(0, correction=0)  # as StandardScaler
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    xs, t_mean = (x - mean) / std, t.mean(0)
    tc = t - t_mean
    if n <= d:  # dual: (N x N) kernel
        lam, q = torch.linalg.eigh(xs @ xs.T)
        proj, basis = q, None
    else:  # primal: (D x D) covariance
        lam, v = torch.linalg.eigh(xs.T @ xs)
        proj, basis = xs @ v, v
    lam = lam.clamp(min=0)
    qt = proj.T @ tc  # (r, K)
    # the intercept is not penalised: in the dual, the constant direction (an eigenvector of
    # the centred kernel, eigenvalue 0) drops out of (I - hat) = alpha Q diag(1 / (lam +
    # alpha)) Q^T; in the primal, the hat matrix gains 1 / n
    free = (proj.T @ torch.ones(n, dtype=x.dtype)).abs().argmax() if basis is None else None
    best: dict[str, Any] = {}
    for alpha in alphas:
        inv = 1.0 / (lam + alpha)
        if basis is None:  # residual_i = c_i / G_ii, c = G t, G = (K + alpha)^-1
            inv[free] = 0.0
            coef = proj @ (inv[:, None] * qt)  # dual coefficients (N, K)
            resid = coef / ((proj**2) @ inv).clamp(min=1e-300)[:, None]
            if groups is not None:
                resid = _grouped(proj, alpha * inv, alpha * coef, groups)
        else:  # residual_i = (t_i - fitted_i) / (1 - hat_ii)
            fitted, hat = proj @ (inv[:, None] * qt), (proj**2) @ inv + 1.0 / n
            resid = (tc - fitted) / (1 - hat).clamp(min=1e-12)[:, None]
            if groups is not None:
                resid = _grouped(proj, -inv, tc - fitted, groups, n)
        err = float(resid.pow(2).mean())
        if not best or err < best["error"]:
            weight = xs.T @ coef if basis is None else basis @ (inv[:, None] * qt)  # (D, K)
            best = {"alpha": alpha, "error": err, "resid": resid, "coef": weight}
    w = best["coef"] / std[:, None]  # (D, K) for raw features
    return {"weight": w, "bias": t_mean - mean @ w, "alpha": best["alpha"],
            "loo": t - best["resid"], "loo_error": best["error"]}  # fmt: skip


def _grouped(
    proj: Tensor, weights: Tensor, resid: Tensor, groups: Tensor, primal_rows: int = 0
) -> Tensor:
    """Leave-one-group-out residuals (N, K) of a linear smoother: for each group g,
    (I - H)_gg^-1 (t - H t)_g, given ``resid`` = t - H t. (I - H) is proj diag(weights)
    proj^T in the dual, and I - 1/n - proj diag(-weights) proj^T with the primal's unpenalised
    intercept (``primal_rows`` = n)."""
    out = torch.empty_like(resid)
    for g in torch.unique(groups):
        at = (groups == g).nonzero().flatten()
        block = (proj[at] * weights) @ proj[at].T
        if primal_rows:
            block = block + torch.eye(len(at), dtype=block.dtype) - 1.0 / primal_rows
        out[at] = torch.linalg.lstsq(block, resid[at]).solution
    return out


def temperature(task: str, scores: Tensor, target: Tensor) -> float:
    """The divisor of ridge scores that makes them the best logits (lowest negative
    log-likelihood of the leave-one-out scores); 1 for regression."""
    if task == "regression":
        return 1.0
    losses = []
    for temp in TEMPERATURES:
        z = scores / temp
        if task == "multiclass":
            losses.append(float(F.cross_entropy(z, target.long())))
        else:
            y = target.double().reshape(z.shape)
            losses.append(float(F.binary_cross_entropy_with_logits(z, y)))
    return float(TEMPERATURES[int(np.argmin(losses))])


def ridge_heads(model: nn.Module) -> dict[str, nn.Linear]:
    """The last Linear of every head that reads the fused vector (a linear head: ``hidden: 0``);
    a clear error for heads ridge cannot fit."""
    if getattr(model, "decision_level", False):
        raise ValueError("head_solver ridge: decision-level fusion (late) has per-modality heads")
    out = {}
    for name, head in model.heads.items():  # type: ignore[operator,union-attr]
        if getattr(head, "reads", None) is not None:
            continue
        linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
        if head.task not in TASKS or len(linears) != 1:
            raise ValueError(
                f"head_solver ridge: output {name!r} ({head.task}) needs a linear head "
                f"(hidden: 0) of task {', '.join(TASKS)}"
            )
        out[name] = linears[0]
    return out


def fit_ridge_heads(model: nn.Module, data: Any, device: torch.device | str) -> dict[str, Any]:
    """Solve every linear head of ``model`` in closed form on the training rows ``data``
    (in place); returns, per output, the penalty, temperature and leave-one-out accuracy."""
    linears = ridge_heads(model)
    if not linears:
        return {}
    x, targets, groups = fused_features(model, data, device)
    heads: Any = model.heads
    info: dict[str, Any] = {}
    for name, linear in linears.items():
        task = str(heads[name].task)
        fit = solve(x, indicators(task, targets[name], linear.out_features), groups=groups)
        temp = temperature(task, fit["loo"], targets[name])
        with torch.no_grad():
            linear.weight.copy_((fit["weight"].T / temp).to(linear.weight))
            linear.bias.copy_((fit["bias"] / temp).to(linear.bias))
        info[name] = {"alpha": fit["alpha"], "temperature": temp, "rows": len(x)}
        if task in ("multiclass", "binary"):
            loo = fit["loo"].argmax(1) if task == "multiclass" else (fit["loo"][:, 0] > 0).long()
            info[name]["loo_accuracy"] = float((loo == targets[name].long()).double().mean())
        log.info("ridge head %s: %s", name, info[name])
    return info


__all__ = ["fit_ridge_heads", "indicators", "ridge_heads", "solve", "temperature"]
