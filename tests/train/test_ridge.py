"""Closed-form ridge heads (``trainer.head_solver: ridge``): the solution and the penalty chosen
by leave-one-out error equal scikit-learn's RidgeClassifierCV (dual and primal forms), the
temperature makes the scores sensible logits, heads that cannot be solved are refused, and a
MiniRocket model fitted with ``epochs: 0`` learns its series."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import RidgeClassifierCV, RidgeCV
from sklearn.preprocessing import StandardScaler

from polymodal import Predictor
from polymodal.train.ridge import ALPHAS, indicators, solve, temperature
from tests.tables import add_series, make_table, series_config


@pytest.mark.parametrize("features", [300, 12])  # dual (rows < features) and primal forms
def test_solve_is_scikit_learns_ridge_classifier_cv(features):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, features)) * rng.uniform(0.1, 10, features) + 3.0
    y = ((x[:, :3] / x[:, :3].std(0)) @ [1.0, -2.0, 0.5] + rng.normal(size=60) > 0).astype(int)
    y[::7] = 2  # three classes
    fit = solve(torch.from_numpy(x), indicators("multiclass", torch.from_numpy(y), 3))
    scaled = StandardScaler().fit(x)
    ref = RidgeClassifierCV(alphas=np.array(ALPHAS)).fit(scaled.transform(x), y)
    assert fit["alpha"] == pytest.approx(ref.alpha_)
    test = rng.normal(size=(20, features)) * x.std(0) + x.mean(0)
    ours = (torch.from_numpy(test) @ fit["weight"] + fit["bias"]).numpy()
    np.testing.assert_allclose(ours, ref.decision_function(scaled.transform(test)), atol=1e-6)


@pytest.mark.parametrize("features", [300, 12])  # dual and primal forms
def test_leave_one_group_out_equals_refitting_without_the_group(features):
    """Windows of one row leave together: the closed-form residuals equal those of a ridge
    refitted (same penalty, the same standardisation) without the group's rows."""
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.normal(size=(45, features)) + 1.0)
    t = indicators("multiclass", torch.from_numpy(rng.integers(0, 3, 45)), 3)
    groups = torch.arange(45) // 4  # 12 groups (the last of 1)
    alpha = (10.0,)
    fit = solve(x, t, alphas=alpha, groups=groups)
    mean, std = x.mean(0), x.std(0, correction=0)
    xs = (x - mean) / std
    for g in (0, 5, 11):  # the scaling stays all rows' (as in scikit-learn's leave-one-out)
        out = groups == g
        refit = solve_fixed_scale(xs[~out], t[~out], alpha[0])
        np.testing.assert_allclose(fit["loo"][out], refit(xs[out]), atol=1e-8)
    single = solve(x, t, alphas=alpha)  # without groups: every row alone
    assert not torch.allclose(single["loo"], fit["loo"])


def solve_fixed_scale(xs: torch.Tensor, t: torch.Tensor, alpha: float):
    """Ridge with an unpenalised intercept on features used as they are (no rescaling)."""
    xm, tm = xs.mean(0), t.mean(0)
    a = (xs - xm).T @ (xs - xm) + alpha * torch.eye(xs.shape[1], dtype=xs.dtype)
    w = torch.linalg.solve(a, (xs - xm).T @ (t - tm))
    return lambda z: (z - xm) @ w + tm


def test_regression_targets_and_temperature():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 5))
    y = x @ [1.0, 0.0, -1.0, 2.0, 0.5] + 0.1 * rng.normal(size=80)
    fit = solve(torch.from_numpy(x), indicators("regression", torch.from_numpy(y), 1))
    ref = RidgeCV(alphas=np.array(ALPHAS)).fit(StandardScaler().fit_transform(x), y)
    assert fit["alpha"] == pytest.approx(ref.alpha_)
    assert temperature("regression", fit["loo"], torch.from_numpy(y)) == 1.0
    scores = torch.tensor([[2.0, -2.0], [-2.0, 2.0]] * 10, dtype=torch.float64)
    right = torch.tensor([0, 1] * 10)
    assert temperature("multiclass", scores, right) < 0.1  # always right: sharpen
    wrong = torch.tensor([0, 1] * 5 + [1, 0] * 5)
    assert temperature("multiclass", scores, wrong) > 1.0  # right half the time: soften


def light_config() -> dict:
    cfg = series_config("concat", epochs=0, encoder="minirocket")
    cfg["inputs"] = [i for i in cfg["inputs"] if i["name"] in ("motion", "numeric")]
    cfg["outputs"] = [{"name": "label", "task": "multiclass", "head": {"dropout": 0.0}}]
    cfg["trainer"] |= {"head_solver": "ridge", "feature_cache": False}
    return cfg


def test_a_minirocket_model_solved_in_closed_form(tmp_path):
    frame = add_series(make_table(tmp_path, n=72), tmp_path)
    pred = Predictor(light_config()).fit(frame.iloc[:54], test=frame.iloc[54:], base_dir=tmp_path)
    assert pred.metrics_["test"]["label"]["accuracy"] >= 0.9  # 18 unseen rows, chance 1/3
    proba = pred.predict_proba(frame.iloc[54:], base_dir=tmp_path).to_numpy()
    assert np.allclose(proba.sum(1), 1.0) and 0.34 < proba.max(1).mean() < 1.0  # softened scores
    cfg = light_config()
    cfg["outputs"][0]["head"]["hidden"] = 8
    with pytest.raises(ValueError, match=r"output 'label' \(multiclass\) needs a linear head"):
        Predictor(cfg).fit(frame, base_dir=tmp_path)
