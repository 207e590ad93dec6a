"""Probes on captured activations: logistic regression and a small MLP, with honest statistics.

Read top to bottom:

1. :func:`load_probe_dataset` — one layer (and some positions) of an activations parquet,
   joined to a labels table, as a float32 matrix in a deterministic row order.
2. :func:`group_split` — a train/test split by prompt id (no prompt on both sides),
   stratified by class.
3. :func:`make_logreg` and :class:`MLPProbe` — the two probes, both sklearn estimators.
4. :func:`classification_metrics` — accuracy, per-class P/R/F1, macro AUROC, ECE, confusion
   matrix, and 95% bootstrap CIs that resample *prompts*, not rows.
5. :func:`majority_baseline`, :func:`shuffled_label_baseline` — what a probe must beat.
6. :func:`train_probes` (the probe stage) and :func:`layer_sweep` (one logreg per layer).

Activations parquet schema (written by the capture stage): ``prompt_id: str``,
``layer: int16``, ``position: str``, ``token_index: int32``,
``activation: fixed_size_list<float16>[d_model]``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import torch
from safetensors.numpy import load_file, save_file
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from interpflow import figures
from interpflow.artifacts import atomic_path, read_table, write_json, write_provenance

ACTIVATION_COLUMNS = ("prompt_id", "layer", "position", "token_index", "activation")

# --------------------------------------------------------------------------------------------
# 1. Dataset
# --------------------------------------------------------------------------------------------


@dataclass
class ProbeDataset:
    """Rows of one layer, sorted by ``(prompt_id, position, token_index)``."""

    X: np.ndarray  #: float32 ``[n, d_model]``
    y: np.ndarray  #: str ``[n]``, the target label of each row
    groups: np.ndarray  #: str ``[n]``, the prompt id of each row (the split/bootstrap unit)
    positions: np.ndarray  #: str ``[n]``, the position name of each row
    layer: int
    target: str
    position_names: list[str] = field(default_factory=list)  #: the positions kept, sorted
    n_dropped_null: int = 0  #: rows dropped because their prompt's target was null
    n_dropped_unlabeled: int = 0  #: rows dropped because their prompt had no labels row

    @property
    def n_prompts(self) -> int:
        return int(np.unique(self.groups).size)

    @property
    def classes(self) -> np.ndarray:
        return np.unique(self.y)


def _activation_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A (fixed-size or variable) list<float> column as a float32 ``[n, d]`` matrix."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    if arr.null_count:
        raise ValueError(f"activation column has {arr.null_count} null rows")
    if pa.types.is_fixed_size_list(arr.type):
        d = arr.type.list_size
    else:
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        if n and (lengths != lengths[0]).any():
            raise ValueError("activation vectors have different lengths")
        d = int(lengths[0]) if n else 0
    values = pc.list_flatten(arr).to_numpy(zero_copy_only=False)
    return values.astype(np.float32, copy=False).reshape(n, d)


def load_probe_dataset(
    activations_path: str | Path,
    labels: pl.DataFrame,
    target: str,
    layer: int,
    positions: Sequence[str] | None = None,
) -> ProbeDataset:
    """Load one layer of an activations parquet joined to ``labels[target]`` by ``prompt_id``.

    ``positions=None`` keeps every position. Rows whose target is null (a failed judge) or
    whose prompt has no labels row are dropped and counted. Raises ``ValueError`` naming what
    is available when the layer, the positions or the target column are absent.
    """
    if "prompt_id" not in labels.columns:
        raise ValueError(f"labels need a 'prompt_id' column; columns are {labels.columns}")
    if target not in labels.columns:
        avail = [c for c in labels.columns if c != "prompt_id"]
        raise ValueError(f"target column {target!r} not in labels; available: {avail}")
    lab = labels.select(pl.col("prompt_id").cast(pl.String), pl.col(target).alias("_target"))
    dup = lab.filter(pl.col("prompt_id").is_duplicated())["prompt_id"].unique().to_list()
    if dup:
        raise ValueError(f"labels have duplicate prompt_id rows, e.g. {sorted(dup)[:5]}")

    path = Path(activations_path)
    table = read_table(path, columns=list(ACTIVATION_COLUMNS), filters=[("layer", "=", layer)])
    if table.num_rows == 0:
        layers = read_table(path, columns=["layer"]).column("layer")
        avail = sorted(int(v) for v in pc.unique(layers).to_pylist())
        raise ValueError(f"layer {layer} not in {path}; available layers: {avail}")

    meta = pl.from_arrow(table.select(["prompt_id", "position", "token_index"]))
    meta = meta.with_columns(pl.col("prompt_id").cast(pl.String)).with_row_index("_row")
    avail_pos = sorted(meta["position"].unique().to_list())
    if positions is not None:
        positions = list(positions)
        missing = [p for p in positions if p not in avail_pos]
        if missing:
            raise ValueError(
                f"positions {missing} not at layer {layer} in {path}; available: {avail_pos}"
            )
        meta = meta.filter(pl.col("position").is_in(positions))

    meta = meta.join(lab, on="prompt_id", how="left")
    known = pl.col("prompt_id").is_in(lab["prompt_id"].implode())
    n_unlabeled = meta.filter(~known).height
    n_null = meta.filter(known & pl.col("_target").is_null()).height
    meta = meta.filter(pl.col("_target").is_not_null())
    if meta.height == 0:
        raise ValueError(
            f"no labelled rows at layer {layer} for target {target!r} "
            f"({n_null} null, {n_unlabeled} without a labels row)"
        )
    meta = meta.sort("prompt_id", "position", "token_index", "_row")

    rows = pa.array(meta["_row"].to_numpy())
    X = _activation_matrix(table.column("activation").take(rows))
    return ProbeDataset(
        X=X,
        y=meta["_target"].cast(pl.String).to_numpy().astype(str),
        groups=meta["prompt_id"].to_numpy().astype(str),
        positions=meta["position"].to_numpy().astype(str),
        layer=int(layer),
        target=target,
        position_names=sorted(meta["position"].unique().to_list()),
        n_dropped_null=n_null,
        n_dropped_unlabeled=n_unlabeled,
    )


# --------------------------------------------------------------------------------------------
# 2. Split
# --------------------------------------------------------------------------------------------


def _group_labels(groups: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique groups, each group's label (its most frequent one), and each row's group index."""
    uniq, row_group = np.unique(groups, return_inverse=True)
    classes, y_idx = np.unique(y, return_inverse=True)
    counts = np.zeros((uniq.size, classes.size), dtype=np.int64)
    np.add.at(counts, (row_group, y_idx), 1)
    return uniq, classes[counts.argmax(axis=1)], row_group


def group_split(
    groups: np.ndarray, y: np.ndarray, test_size: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split rows into train/test by group (prompt id), stratified by each group's label.

    Within each class the groups are shuffled (seeded) and ``round(test_size * n_groups)``
    go to test, clamped so that every class keeps at least one group in train (a class with a
    single group goes to train only). At least one group goes to test. Returns sorted row
    indices. A hand-written per-class shuffle rather than ``StratifiedGroupKFold`` because the
    latter fixes ``test_size`` to ``1/n_splits`` and cannot promise every class in train.
    """
    groups, y = np.asarray(groups), np.asarray(y)
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1); got {test_size}")
    uniq, glabel, row_group = _group_labels(groups, y)
    if uniq.size < 2:
        raise ValueError(f"need at least 2 groups to split; got {uniq.size}")
    rng = np.random.default_rng(seed)
    is_test = np.zeros(uniq.size, dtype=bool)
    for c in np.unique(glabel):
        members = np.flatnonzero(glabel == c)
        n_test = min(round(test_size * members.size), members.size - 1)
        if n_test > 0:
            is_test[rng.permutation(members)[:n_test]] = True
    if not is_test.any():  # tiny data: move one group of the largest class to test
        labels_, counts = np.unique(glabel, return_counts=True)
        candidates = np.flatnonzero(glabel == labels_[counts.argmax()])
        is_test[rng.choice(candidates)] = True
    test_rows = is_test[row_group]
    return np.flatnonzero(~test_rows), np.flatnonzero(test_rows)


# --------------------------------------------------------------------------------------------
# 3. Probes
# --------------------------------------------------------------------------------------------


def make_logreg(seed: int = 0, C: float = 1.0, max_iter: int = 2000) -> Pipeline:
    """``StandardScaler`` → ``LogisticRegression`` (multinomial for >2 classes)."""
    return Pipeline(
        [
            ("scaler", StandardScaler()),
            ("clf", LogisticRegression(C=C, max_iter=max_iter, random_state=seed)),
        ]
    )


def _classes_to_json(classes: np.ndarray) -> dict[str, Any]:
    classes = np.asarray(classes)
    dtype = "str" if classes.dtype.kind in "OUS" else classes.dtype.str
    return {"classes": classes.tolist(), "classes_dtype": dtype}


def _classes_from_json(meta: dict[str, Any]) -> np.ndarray:
    if meta["classes_dtype"] == "str":
        return np.asarray([str(c) for c in meta["classes"]])
    return np.asarray(meta["classes"], dtype=np.dtype(meta["classes_dtype"]))


def export_logreg(pipeline: Pipeline, out_dir: str | Path, name: str = "logreg") -> None:
    """Pickle-free copy of a fitted :func:`make_logreg` pipeline.

    ``<name>.safetensors`` holds ``scaler_mean``, ``scaler_scale``, ``coef``, ``intercept``
    (the fitted dtype); ``<name>.json`` holds the classes and the hyperparameters.
    """
    scaler, clf = pipeline.named_steps["scaler"], pipeline.named_steps["clf"]
    out_dir = Path(out_dir)
    tensors = {
        "scaler_mean": np.ascontiguousarray(scaler.mean_),
        "scaler_scale": np.ascontiguousarray(scaler.scale_),
        "coef": np.ascontiguousarray(clf.coef_),
        "intercept": np.ascontiguousarray(clf.intercept_),
    }
    with atomic_path(out_dir / f"{name}.safetensors") as tmp:
        save_file(tensors, str(tmp))
    meta = {
        "kind": "standard_scaler+logistic_regression",
        "n_features_in": int(scaler.n_features_in_),
        "params": {k: v for k, v in clf.get_params().items() if _jsonable(v)},
        **_classes_to_json(clf.classes_),
    }
    write_json(meta, out_dir / f"{name}.json")


def load_logreg_export(out_dir: str | Path, name: str = "logreg") -> Pipeline:
    """Rebuild a fitted pipeline from :func:`export_logreg` files (no pickle)."""
    out_dir = Path(out_dir)
    meta = json.loads((out_dir / f"{name}.json").read_text())
    t = load_file(str(out_dir / f"{name}.safetensors"))
    pipe = make_logreg()
    pipe.named_steps["clf"].set_params(**meta["params"])
    scaler, clf = pipe.named_steps["scaler"], pipe.named_steps["clf"]
    scaler.mean_, scaler.scale_ = t["scaler_mean"], t["scaler_scale"]
    scaler.var_ = t["scaler_scale"] ** 2
    scaler.n_features_in_ = clf.n_features_in_ = meta["n_features_in"]
    scaler.n_samples_seen_ = 0
    clf.coef_, clf.intercept_ = t["coef"], t["intercept"]
    clf.classes_ = _classes_from_json(meta)
    return pipe


def _jsonable(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


class MLPProbe(ClassifierMixin, BaseEstimator):
    """A 2-layer MLP classifier (``Linear → ReLU → Dropout → Linear``) trained in torch.

    An sklearn estimator: hyperparameters in ``__init__`` only, ``fit`` returns ``self``,
    learned state ends in ``_``. Inputs are standardised with statistics learned in ``fit``
    (``mean_``, ``scale_``). Training uses AdamW on cross-entropy with seeded init, shuffling
    and dropout (the global torch RNG is left untouched), so a fixed ``random_state`` gives
    identical weights. Weights are stored as numpy arrays (``W1_, b1_, W2_, b2_``) and
    inference runs in numpy, so the fitted probe pickles cheaply and :meth:`save` /
    :meth:`load` round-trip it through safetensors + JSON without pickle.
    """

    def __init__(
        self,
        hidden_size: int = 256,
        dropout: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        epochs: int = 50,
        batch_size: int = 256,
        random_state: int | None = 0,
        device: str = "cpu",
    ):
        self.hidden_size = hidden_size
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.random_state = random_state
        self.device = device

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if self.classes_.size < 2:
            raise ValueError(f"MLPProbe needs at least 2 classes in y; got 1 class {self.classes_}")
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0).astype(np.float32)
        Xs = (X - self.mean_) / self.scale_

        seed = 0 if self.random_state is None else int(self.random_state)
        device = torch.device(self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = torch.nn.Sequential(
                torch.nn.Linear(X.shape[1], self.hidden_size),
                torch.nn.ReLU(),
                torch.nn.Dropout(self.dropout),
                torch.nn.Linear(self.hidden_size, self.classes_.size),
            ).to(device)
            opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            gen = torch.Generator().manual_seed(seed)
            Xt = torch.from_numpy(np.ascontiguousarray(Xs)).to(device)
            yt = torch.from_numpy(y_idx.astype(np.int64)).to(device)
            n = Xt.shape[0]
            net.train()
            for _ in range(self.epochs):
                for batch in torch.randperm(n, generator=gen).split(self.batch_size):
                    batch = batch.to(device)
                    loss = torch.nn.functional.cross_entropy(net(Xt[batch]), yt[batch])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
        self.W1_ = net[0].weight.detach().cpu().numpy().copy()
        self.b1_ = net[0].bias.detach().cpu().numpy().copy()
        self.W2_ = net[3].weight.detach().cpu().numpy().copy()
        self.b2_ = net[3].bias.detach().cpu().numpy().copy()
        return self

    def _logits(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float32)
        h = np.maximum((X - self.mean_) / self.scale_ @ self.W1_.T + self.b1_, 0.0)
        return h @ self.W2_.T + self.b2_

    def decision_function(self, X) -> np.ndarray:
        """Logits ``[n, k]``; for two classes the logit margin of ``classes_[1]``, shape ``[n]``."""
        z = self._logits(X)
        return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z

    def predict_proba(self, X) -> np.ndarray:
        z = self._logits(X).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        z = self._logits(X)
        return self.classes_[z.argmax(axis=1)]

    def save(self, out_dir: str | Path, name: str = "mlp") -> None:
        """Write ``<name>.safetensors`` (weights + scaler stats) and ``<name>.json`` (params, classes)."""
        check_is_fitted(self)
        out_dir = Path(out_dir)
        tensors = {k: np.ascontiguousarray(getattr(self, f"{k}_")) for k in _MLP_TENSORS}
        with atomic_path(out_dir / f"{name}.safetensors") as tmp:
            save_file(tensors, str(tmp))
        meta = {
            "kind": "interpflow.MLPProbe",
            "params": self.get_params(),
            "n_features_in": int(self.n_features_in_),
            **_classes_to_json(self.classes_),
        }
        write_json(meta, out_dir / f"{name}.json")

    @classmethod
    def load(cls, out_dir: str | Path, name: str = "mlp") -> MLPProbe:
        """Restore a probe written by :meth:`save`; its predictions are identical."""
        out_dir = Path(out_dir)
        meta = json.loads((out_dir / f"{name}.json").read_text())
        probe = cls(**meta["params"])
        for k, v in load_file(str(out_dir / f"{name}.safetensors")).items():
            setattr(probe, f"{k}_", v)
        probe.n_features_in_ = meta["n_features_in"]
        probe.classes_ = _classes_from_json(meta)
        return probe


_MLP_TENSORS = ("mean", "scale", "W1", "b1", "W2", "b2")


# --------------------------------------------------------------------------------------------
# 4. Metrics
# --------------------------------------------------------------------------------------------


def expected_calibration_error(
    correct: np.ndarray, confidence: np.ndarray, n_bins: int = 15
) -> float:
    """ECE over ``n_bins`` equal-width confidence bins on [0, 1]: Σ |B|/n · |acc(B) − conf(B)|."""
    correct = np.asarray(correct, dtype=np.float64)
    confidence = np.asarray(confidence, dtype=np.float64)
    if correct.size == 0:
        return float("nan")
    # bin i holds (i/n_bins, (i+1)/n_bins]; confidence 0 falls in bin 0
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    acc = np.bincount(bins, weights=correct, minlength=n_bins)
    conf = np.bincount(bins, weights=confidence, minlength=n_bins)
    nz = count > 0
    return float(np.abs(acc[nz] - conf[nz]).sum() / correct.size)


def binary_auroc(positive: np.ndarray, score: np.ndarray) -> float:
    """AUROC of ``score`` for the boolean ``positive`` (Mann–Whitney U, ties count half).

    Same value as ``sklearn.metrics.roc_auc_score`` but cheap enough for thousands of
    bootstrap resamples. NaN when one side is empty.
    """
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def macro_auroc(y_idx: np.ndarray, proba: np.ndarray, required: np.ndarray | None = None) -> float:
    """Macro one-vs-rest AUROC over the classes present in ``y_idx`` (binary included).

    Returns NaN when fewer than 2 classes are present, or when a class index in ``required``
    is absent (used by the bootstrap to skip resamples that lost a class).
    """
    present = np.unique(y_idx)
    if present.size < 2 or (required is not None and not np.isin(required, present).all()):
        return float("nan")
    return float(np.mean([binary_auroc(y_idx == c, proba[:, c]) for c in present]))


def group_bootstrap_indices(
    groups: np.ndarray, n_bootstrap: int, seed: int = 0
) -> list[np.ndarray]:
    """``n_bootstrap`` row-index resamples that draw *groups* with replacement, keeping all rows.

    Each resample draws as many groups as there are, so rows that share a prompt rise and fall
    together and the CI reflects the number of independent prompts, not rows.
    """
    groups = np.asarray(groups)
    uniq, row_group = np.unique(groups, return_inverse=True)
    order = np.argsort(row_group, kind="stable")
    starts = np.searchsorted(row_group[order], np.arange(uniq.size + 1))
    members = [order[starts[g] : starts[g + 1]] for g in range(uniq.size)]
    rng = np.random.default_rng(seed)
    return [
        np.concatenate([members[g] for g in rng.integers(0, uniq.size, size=uniq.size)])
        for _ in range(n_bootstrap)
    ]


def _ci(values: Sequence[float]) -> list[float | None]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return [None, None]
    lo, hi = np.percentile(v, [2.5, 97.5])
    return [float(lo), float(hi)]


def _nan_to_none(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _macro_f1(y_idx: np.ndarray, pred_idx: np.ndarray, k: int) -> float:
    """Macro F1 over all ``k`` classes from a bincount confusion matrix (0 where undefined)."""
    cm = np.bincount(y_idx * k + pred_idx, minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # 2·tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    return float(f1.mean())


def classification_metrics(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: Sequence[str],
    groups: np.ndarray,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Scores of a probabilistic classifier with 95% CIs from a bootstrap over groups.

    ``proba[:, j]`` is the probability of ``classes[j]``. Returns ``accuracy``, ``macro_f1``,
    ``auroc`` (macro one-vs-rest over classes present in ``y_true``), ``ece`` (15 bins on the
    max-probability confidence), ``per_class`` precision/recall/F1/support, ``confusion``
    (rows true, columns predicted, in ``classes`` order), and ``<metric>_ci`` = [low, high]
    for accuracy, macro F1 and AUROC. Bootstrap resamples draw prompt ids (``groups``) with
    replacement; resamples that lose a class present in ``y_true`` are skipped for AUROC, and
    ``n_bootstrap_auroc`` says how many were used. NaNs are reported as None.
    """
    classes = np.asarray(classes)
    y_true, proba, groups = (
        np.asarray(y_true),
        np.asarray(proba, dtype=np.float64),
        np.asarray(groups),
    )
    k = classes.size
    if proba.shape != (y_true.size, k):
        raise ValueError(f"proba shape {proba.shape} != ({y_true.size}, {k})")
    unknown = np.setdiff1d(y_true, classes)
    if unknown.size:
        raise ValueError(f"y_true has labels {unknown.tolist()} not in classes {classes.tolist()}")
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    y_idx = np.array([lookup[c] for c in y_true.tolist()], dtype=np.int64)
    pred_idx = proba.argmax(axis=1)
    correct = pred_idx == y_idx
    present = np.unique(y_idx)

    prec, rec, f1, support = precision_recall_fscore_support(
        y_idx, pred_idx, labels=np.arange(k), zero_division=0
    )
    out: dict[str, Any] = {
        "n": int(y_true.size),
        "n_groups": int(np.unique(groups).size),
        "accuracy": float(correct.mean()),
        "macro_f1": float(f1.mean()),
        "auroc": _nan_to_none(macro_auroc(y_idx, proba)),
        "ece": _nan_to_none(expected_calibration_error(correct, proba.max(axis=1))),
        "per_class": {
            str(c): {
                "precision": float(prec[i]),
                "recall": float(rec[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes.tolist())
        },
        "confusion": confusion_matrix(y_idx, pred_idx, labels=np.arange(k)).tolist(),
        "classes": [str(c) for c in classes.tolist()],
    }
    accs, f1s, aucs = [], [], []
    for idx in group_bootstrap_indices(groups, n_bootstrap, seed):
        accs.append(correct[idx].mean())
        f1s.append(_macro_f1(y_idx[idx], pred_idx[idx], k))
        aucs.append(macro_auroc(y_idx[idx], proba[idx], required=present))
    out["accuracy_ci"] = _ci(accs)
    out["macro_f1_ci"] = _ci(f1s)
    out["auroc_ci"] = _ci(aucs)
    out["n_bootstrap"] = int(n_bootstrap)
    out["n_bootstrap_auroc"] = int(np.isfinite(np.asarray(aucs, dtype=np.float64)).sum())
    return out


# --------------------------------------------------------------------------------------------
# 5. Baselines
# --------------------------------------------------------------------------------------------


def majority_baseline(
    y_train: np.ndarray,
    y_test: np.ndarray,
    groups_test: np.ndarray,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy on test of always predicting the train set's most frequent class (with a CI)."""
    values, counts = np.unique(np.asarray(y_train), return_counts=True)
    majority = values[counts.argmax()]
    correct = np.asarray(y_test) == majority
    accs = [correct[idx].mean() for idx in group_bootstrap_indices(groups_test, n_bootstrap, seed)]
    return {"class": str(majority), "accuracy": float(correct.mean()), "accuracy_ci": _ci(accs)}


def permute_labels(y: np.ndarray, groups: np.ndarray, seed: int) -> np.ndarray:
    """Seeded label permutation. If every group has one label, labels are permuted among
    groups (rows of a prompt keep a shared label); otherwise rows are permuted."""
    y, groups = np.asarray(y), np.asarray(groups)
    rng = np.random.default_rng(seed)
    _, glabel, row_group = _group_labels(groups, y)
    if (glabel[row_group] == y).all():
        return rng.permutation(glabel)[row_group]
    return rng.permutation(y)


def shuffled_label_baseline(
    estimator: Any,
    X_train: np.ndarray,
    y_train: np.ndarray,
    groups_train: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    groups_test: np.ndarray,
    seed: int = 0,
    n_permutations: int = 3,
) -> dict[str, Any]:
    """Fit clones of ``estimator`` on permuted train labels; score them on the true test labels.

    A probe that only fits noise lands near chance. One permutation is a noisy null: when the
    activations cluster by class, a permutation that happens to agree with the truth on a few
    extra prompts gets amplified, so ``n_permutations`` (seeds ``seed``, ``seed+1``, …) are fit
    and their mean is reported beside each run's score.
    """
    classes = np.unique(y_train)
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    y_idx = np.array([lookup.get(c, -1) for c in np.asarray(y_test).tolist()])
    accs, aucs = [], []
    for i in range(n_permutations):
        y_perm = permute_labels(y_train, groups_train, seed + i)
        proba = _proba_for(clone(estimator).fit(X_train, y_perm), X_test, classes)
        accs.append(float((proba.argmax(axis=1) == y_idx).mean()))
        aucs.append(macro_auroc(y_idx[y_idx >= 0], proba[y_idx >= 0]))
    return {
        "accuracy": float(np.mean(accs)),
        "auroc": _nan_to_none(float(np.nanmean(aucs)) if np.isfinite(aucs).any() else np.nan),
        "accuracy_runs": accs,
        "auroc_runs": [_nan_to_none(a) for a in aucs],
        "n_permutations": int(n_permutations),
        "seeds": [seed + i for i in range(n_permutations)],
    }


def _proba_for(model: Any, X: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``predict_proba`` with columns re-ordered (zero-filled) onto ``classes``."""
    p = model.predict_proba(X)
    out = np.zeros((X.shape[0], len(classes)), dtype=np.float64)
    pos = {c: i for i, c in enumerate(np.asarray(classes).tolist())}
    for j, c in enumerate(np.asarray(model.classes_).tolist()):
        out[:, pos[c]] = p[:, j]
    return out


# --------------------------------------------------------------------------------------------
# 6. Stage entry points
# --------------------------------------------------------------------------------------------


def _fit_and_score(
    estimator: Any,
    ds: ProbeDataset,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    classes: np.ndarray,
    seed: int,
    n_bootstrap: int,
    n_permutations: int = 3,
) -> tuple[Any, dict[str, Any]]:
    model = clone(estimator).fit(ds.X[train_idx], ds.y[train_idx])
    proba = _proba_for(model, ds.X[test_idx], classes)
    m = classification_metrics(
        ds.y[test_idx], proba, classes, ds.groups[test_idx], n_bootstrap, seed
    )
    if n_permutations > 0:
        m["shuffled_label"] = shuffled_label_baseline(
            estimator,
            ds.X[train_idx],
            ds.y[train_idx],
            ds.groups[train_idx],
            ds.X[test_idx],
            ds.y[test_idx],
            ds.groups[test_idx],
            seed=seed,
            n_permutations=n_permutations,
        )
    return model, m


def train_probes(
    dataset: ProbeDataset,
    out_dir: str | Path,
    test_size: float = 0.2,
    seed: int = 0,
    n_bootstrap: int = 1000,
    mlp_params: dict[str, Any] | None = None,
    n_permutations: int = 3,
) -> dict[str, Any]:
    """Fit logreg and MLP probes on a group split of ``dataset``; write every artifact to ``out_dir``.

    Writes ``logreg.joblib``, ``logreg.safetensors``/``.json``, ``mlp.safetensors``/``.json``,
    ``label_classes.txt``, ``train_indices.npy``/``test_indices.npy`` (rows of ``dataset``),
    ``metrics.json`` (+ provenance sidecar), and ``confusion_{logreg,mlp}.{png,csv}``.
    Each probe's metrics carry a ``shuffled_label`` baseline (``n_permutations`` refits of the
    same estimator on permuted train labels). Returns the metrics dict written to ``metrics.json``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ds = dataset
    train_idx, test_idx = group_split(ds.groups, ds.y, test_size, seed)
    classes = np.unique(ds.y[train_idx])  # every class is in train by construction

    fit = (ds, train_idx, test_idx, classes, seed, n_bootstrap, n_permutations)
    logreg, m_log = _fit_and_score(make_logreg(seed), *fit)
    mlp, m_mlp = _fit_and_score(MLPProbe(**{"random_state": seed, **(mlp_params or {})}), *fit)

    with atomic_path(out_dir / "logreg.joblib") as tmp:
        joblib.dump(logreg, tmp)
    export_logreg(logreg, out_dir)
    mlp.save(out_dir)
    with atomic_path(out_dir / "label_classes.txt") as tmp:
        tmp.write_text("".join(f"{c}\n" for c in classes))
    for fname, idx in (("train_indices.npy", train_idx), ("test_indices.npy", test_idx)):
        with atomic_path(out_dir / fname) as tmp, open(tmp, "wb") as fh:
            np.save(fh, idx.astype(np.int64))
    for name, m in (("logreg", m_log), ("mlp", m_mlp)):
        figures.confusion_heatmap(
            np.asarray(m["confusion"]),
            classes,
            out_dir / f"confusion_{name}.png",
            out_dir / f"confusion_{name}.csv",
            title=f"{name} · layer {ds.layer} · {ds.target}",
        )

    metrics = {
        "target": ds.target,
        "layer": ds.layer,
        "positions": ds.position_names,
        "classes": [str(c) for c in classes],
        "seed": seed,
        "test_size": test_size,
        "n_bootstrap": n_bootstrap,
        "n_permutations": n_permutations,
        "n_dropped_null": ds.n_dropped_null,
        "n_dropped_unlabeled": ds.n_dropped_unlabeled,
        "n_train_rows": int(train_idx.size),
        "n_test_rows": int(test_idx.size),
        "n_train_prompts": int(np.unique(ds.groups[train_idx]).size),
        "n_test_prompts": int(np.unique(ds.groups[test_idx]).size),
        "mlp_params": mlp.get_params(),
        "probes": {"logreg": m_log, "mlp": m_mlp},
        "baselines": {
            "majority": majority_baseline(
                ds.y[train_idx], ds.y[test_idx], ds.groups[test_idx], n_bootstrap, seed
            ),
        },
    }
    write_json(metrics, out_dir / "metrics.json")
    write_provenance(
        out_dir / "metrics.json.provenance.json",
        stage="probes",
        target=ds.target,
        layer=ds.layer,
        positions=ds.position_names,
        seed=seed,
        test_size=test_size,
        mlp_params=mlp.get_params(),
    )
    return metrics


def layer_sweep(
    activations_path: str | Path,
    labels: pl.DataFrame,
    target: str,
    layers: Sequence[int],
    positions: Sequence[str] | None,
    test_size: float,
    seed: int,
    n_bootstrap: int,
    out_png: str | Path,
    out_csv: str | Path,
    estimator_factory: Callable[[int], Any] = make_logreg,
) -> pl.DataFrame:
    """One probe per layer (logreg by default) on the *same* prompt split; plot and tabulate.

    The split is drawn once (on the first layer's rows) as a set of test prompt ids and reused
    for every layer. Writes ``out_csv`` with columns ``layer, metric, value, ci_low, ci_high``
    (metrics ``accuracy``, ``auroc``, ``majority_accuracy``) and ``out_png`` (accuracy and
    AUROC by layer with CI bands, the majority baseline dashed). Returns the table.
    """
    if not layers:
        raise ValueError("layer_sweep needs at least one layer")
    records: list[dict[str, Any]] = []
    test_groups: np.ndarray | None = None
    for layer in layers:
        ds = load_probe_dataset(activations_path, labels, target, int(layer), positions)
        if test_groups is None:
            _, test_idx0 = group_split(ds.groups, ds.y, test_size, seed)
            test_groups = np.unique(ds.groups[test_idx0])
        is_test = np.isin(ds.groups, test_groups)
        train_idx, test_idx = np.flatnonzero(~is_test), np.flatnonzero(is_test)
        if test_idx.size == 0 or train_idx.size == 0:
            raise ValueError(f"layer {layer}: the shared prompt split leaves an empty side")
        classes = np.unique(ds.y[train_idx])
        _, m = _fit_and_score(
            estimator_factory(seed),
            ds,
            train_idx,
            test_idx,
            classes,
            seed,
            n_bootstrap,
            n_permutations=0,
        )
        base = majority_baseline(
            ds.y[train_idx], ds.y[test_idx], ds.groups[test_idx], n_bootstrap, seed
        )
        for metric, value, ci in (
            ("accuracy", m["accuracy"], m["accuracy_ci"]),
            ("auroc", m["auroc"], m["auroc_ci"]),
            ("majority_accuracy", base["accuracy"], base["accuracy_ci"]),
        ):
            records.append(
                {
                    "layer": int(layer),
                    "metric": metric,
                    "value": value,
                    "ci_low": ci[0],
                    "ci_high": ci[1],
                }
            )
    df = pl.DataFrame(
        records,
        schema={
            "layer": pl.Int64,
            "metric": pl.String,
            "value": pl.Float64,
            "ci_low": pl.Float64,
            "ci_high": pl.Float64,
        },
    )
    figures.metric_by_layer(
        df,
        out_png,
        out_csv,
        metrics=["accuracy", "auroc"],
        baselines=["majority_accuracy"],
        title=f"{target}: probe by layer",
    )
    return df.sort("metric", "layer")
