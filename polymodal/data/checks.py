"""Column checks that protect a user from a model that looks good and is not: a column that gives
the target away (a leak, or another target), identifiers read as numbers, constant and mostly
missing columns. ``init`` leaves such columns out and says why; ``train`` warns about any that a
config still reads."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from polymodal.config import InputConfig, OutputConfig

SAMPLE_ROWS = 20_000  # rows the statistics are computed on (a seeded sample)
LEAK_THRESHOLD = 0.5  # share of the target's information (entropy) one column carries
MOSTLY_MISSING = 0.95  # columns missing more often than this are left out
ID_NAME = re.compile(r"(?:^|[\s_\-.])(?:id|ids|uuid|guid|idx)$|^(?:id|uuid|guid)(?:[\s_\-.]|$)")
CAMEL_ID = re.compile(r"[a-z0-9](?:ID|Id)$")


@dataclass
class Finding:
    """Something a user should know about one column; ``drop``: left out by default."""

    column: str
    kind: str  # leak | identifier | constant | missing | unsupported | error | note
    message: str
    drop: bool = True


def sample(frame: pd.DataFrame, rows: int = SAMPLE_ROWS, seed: int = 0) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(rows, random_state=seed)


def missing_share(series: pd.Series) -> float:
    """Share of missing cells (None, NaN, blank strings)."""
    if not len(series):
        return 1.0
    blank = series.map(lambda v: isinstance(v, str) and not v.strip())
    return float((series.isna() | blank).mean())


def id_like_name(name: str) -> bool:
    """``id``, ``user_id``, ``Clothing ID``, ``ClothingId``, ``uuid``..."""
    return bool(ID_NAME.search(name.strip().lower()) or CAMEL_ID.search(name.strip()))


def identifier(series: pd.Series) -> str | None:
    """ "unique" for row identifiers (near-unique integers that are named like ids or run
    consecutively; near-unique short strings without spaces), "repeated" for id-named columns
    whose values repeat (item or user ids), else None."""
    values = series.dropna()
    if len(values) < 20 or pd.api.types.is_bool_dtype(values):
        return None
    name_like = id_like_name(str(series.name))
    distinct = int(values.nunique())
    integral = pd.api.types.is_integer_dtype(values) or (
        pd.api.types.is_float_dtype(values) and bool((values % 1 == 0).all())
    )
    if distinct >= 0.95 * len(values):
        if integral:
            span = float(values.max() - values.min()) + 1
            return "unique" if name_like or span <= 1.5 * distinct else None
        if pd.api.types.is_numeric_dtype(values):
            return None  # near-unique measurements are features
        texts = values.astype(str)
        if not texts.str.contains(r"\s", regex=True).any() and texts.str.len().median() <= 64:
            return "unique"
        return None
    if name_like and distinct > 20 and (integral or not pd.api.types.is_numeric_dtype(values)):
        return "repeated"
    return None


def _codes(series: pd.Series, bins: int = 10) -> np.ndarray:
    """Integer codes: quantile bins for many-valued numbers, one code per value otherwise
    (missing is a value of its own)."""
    if pd.api.types.is_numeric_dtype(series) and series.nunique() > bins:
        ranks = series.rank(method="first")
        binned = pd.qcut(ranks, bins, labels=False, duplicates="drop")
        return np.asarray(binned.fillna(-1), dtype=np.int64)
    return pd.factorize(series.astype(str).where(series.notna(), "<missing>"))[0]


def _mutual_info(x: np.ndarray, y: np.ndarray) -> float:
    joint = pd.crosstab(x, y).to_numpy(dtype=np.float64)
    p = joint / joint.sum()
    px, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / (px @ py)[nz])).sum())


def _entropy(codes: np.ndarray) -> float:
    p = np.bincount(codes - codes.min()) / len(codes)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def shared_information(column: pd.Series, target: pd.Series, seed: int = 0) -> float:
    """How much of the target's (or the column's, if smaller) information the column carries:
    mutual information minus its value under shuffling (the bias of a finite sample), over the
    smaller entropy. 0: independent; 1: one determines the other. Symmetric, so it flags a
    column that gives the target away and one the target gives away (another target)."""
    keep = target.notna().to_numpy()
    x, y = _codes(column[keep]), _codes(target[keep])
    h = min(_entropy(x), _entropy(y)) if len(x) > 1 else 0.0
    if h <= 1e-9:
        return 0.0
    rng = np.random.default_rng(seed)
    chance = np.mean([_mutual_info(rng.permutation(x), y) for _ in range(3)])
    return max(0.0, (_mutual_info(x, y) - float(chance)) / h)


def alone_score(column: pd.Series, target: pd.Series, seed: int = 0) -> tuple[str, float] | None:
    """The target predicted from this column alone, fitted on one half of the rows and scored on
    the other: ("ROC-AUC", auc) for two classes, ("accuracy", acc) otherwise."""
    keep = target.notna().to_numpy()
    x = pd.Series(_codes(column[keep]))
    y = pd.Series(pd.factorize(target[keep].astype(str))[0])
    if y.nunique() < 2 or len(y) < 20:
        return None
    half = np.random.default_rng(seed).random(len(y)) < 0.5
    if y.nunique() == 2:
        from sklearn.metrics import roc_auc_score

        rate = y[half].groupby(x[half]).mean()
        score = x[~half].map(rate).fillna(float(y[half].mean()))
        if y[~half].nunique() < 2:
            return None
        auc = float(roc_auc_score(y[~half], score))
        return "ROC-AUC", max(auc, 1 - auc)
    majority = y[half].groupby(x[half]).agg(lambda v: v.value_counts().index[0])
    pred = x[~half].map(majority).fillna(y[half].value_counts().index[0])
    return "accuracy", float((pred.to_numpy() == y[~half].to_numpy()).mean())


def leak(column: pd.Series, target: pd.Series) -> Finding | None:
    """A finding when ``column`` carries most of ``target``'s information."""
    share = shared_information(column, target)
    if share < LEAK_THRESHOLD:
        return None
    alone = alone_score(column, target)
    told = f"; {alone[0]} {alone[1]:.3f} from this column alone" if alone else ""
    return Finding(
        str(column.name),
        "leak",
        f"shares {share:.0%} of the information of target {target.name!r}{told}: a leak or "
        "another target, which a deployed model would not have",
    )


def column_findings(
    frame: pd.DataFrame, columns: list[str], kinds: dict[str, str], targets: list[str]
) -> list[Finding]:
    """Identifier, mostly-missing and leak findings for ``columns`` (their inferred ``kinds``)
    against each classification/regression target, on a seeded sample of rows."""
    part = sample(frame)
    found: list[Finding] = []
    for col in columns:
        series, kind = part[col], kinds.get(col, "")
        if kind == "numeric" and not pd.api.types.is_numeric_dtype(series):
            series = pd.to_numeric(series, errors="coerce")  # numbers written as text
        share = missing_share(series)
        if share >= MOSTLY_MISSING:
            found.append(Finding(col, "missing", f"{share:.0%} of its cells are missing"))
            continue
        ident = identifier(series) if kind in ("numeric", "categorical", "text") else None
        if ident == "unique":
            found.append(Finding(col, "identifier", "a row identifier (one value per row)"))
            continue
        if ident == "repeated":
            msg = "an identifier: read as a category (an embedding per value), not a number"
            found.append(Finding(col, "identifier", msg, drop=False))
        if kind in ("numeric", "categorical") and series.nunique() <= 1000:
            found += [f for t in targets if (f := leak(series, part[t])) is not None]
    return found


def config_findings(
    frame: pd.DataFrame, inputs: list[InputConfig], outputs: list[OutputConfig]
) -> list[Finding]:
    """What ``train`` warns about in a config's own inputs: leaks into a classification or
    regression target, row identifiers, identifiers read as numbers, mostly missing columns."""
    kinds: dict[str, str] = {c: i.type for i in inputs for c in i.cols if c in frame.columns}
    tasks = ("binary", "multiclass", "regression")
    targets = [o.name for o in outputs if o.task in tasks and o.name in frame.columns]
    found = column_findings(frame, list(kinds), kinds, targets)
    return [f for f in found if f.drop or kinds.get(f.column) == "numeric"]
