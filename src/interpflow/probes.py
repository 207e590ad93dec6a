"""Probes on captured activations: logistic regression and a small MLP, scored honestly.

The engine every probe study uses; read top to bottom:

1. :func:`load_probe_dataset` — one layer (and some positions) of an activations parquet,
   joined to a labels table, as a float32 matrix in a deterministic row order.
2. :func:`group_split` — a train/test split by prompt id (no prompt on both sides),
   stratified by class.
3. :func:`make_logreg` and :class:`MLPProbe` — the two probes, both sklearn estimators, each
   with a pickle-free export (safetensors + JSON).
4. :func:`fit_and_score` — fit on train, score on test with :mod:`interpflow.metrics`
   (accuracy, macro F1, AUROC, ECE, confusion, bootstrap CIs over prompts), beside a
   shuffled-label baseline.

The metrics of :mod:`interpflow.metrics` are importable from here too. The stages that write
probe files live with their study (e.g. :mod:`interpflow.deception.probes`).

Activations parquet schema (written by the capture stage): ``prompt_id: str``,
``layer: int16``, ``position: str``, ``token_index: int32``,
``activation: fixed_size_list<float16>[d_model]``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import torch
from safetensors.numpy import load_file, save_file
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from interpflow.artifacts import atomic_path, read_table, write_json
from interpflow.metrics import (
    binary_auroc,
    ci95,
    classification_metrics,
    expected_calibration_error,
    group_bootstrap_indices,
    group_labels,
    macro_auroc,
    majority_baseline,
    nan_to_none,
    paired_margin,
    permute_labels,
    proba_for,
    shuffled_label_baseline,
)

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
    uniq, glabel, row_group = group_labels(groups, y)
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


def export_logreg(pipeline: Pipeline, tensors: str | Path, meta: str | Path) -> None:
    """Pickle-free copy of a fitted :func:`make_logreg` pipeline.

    ``tensors`` (safetensors) holds ``scaler_mean``, ``scaler_scale``, ``coef``,
    ``intercept`` (the fitted dtype); ``meta`` (JSON) holds the classes and the
    hyperparameters.
    """
    scaler, clf = pipeline.named_steps["scaler"], pipeline.named_steps["clf"]
    arrays = {
        "scaler_mean": np.ascontiguousarray(scaler.mean_),
        "scaler_scale": np.ascontiguousarray(scaler.scale_),
        "coef": np.ascontiguousarray(clf.coef_),
        "intercept": np.ascontiguousarray(clf.intercept_),
    }
    with atomic_path(tensors) as tmp:
        save_file(arrays, str(tmp))
    info = {
        "kind": "standard_scaler+logistic_regression",
        "n_features_in": int(scaler.n_features_in_),
        "params": {k: v for k, v in clf.get_params().items() if _jsonable(v)},
        **_classes_to_json(clf.classes_),
    }
    write_json(info, meta)


def load_logreg_export(tensors: str | Path, meta: str | Path) -> Pipeline:
    """Rebuild a fitted pipeline from :func:`export_logreg` files (no pickle)."""
    info = json.loads(Path(meta).read_text())
    t = load_file(str(tensors))
    pipe = make_logreg()
    pipe.named_steps["clf"].set_params(**info["params"])
    scaler, clf = pipe.named_steps["scaler"], pipe.named_steps["clf"]
    scaler.mean_, scaler.scale_ = t["scaler_mean"], t["scaler_scale"]
    scaler.var_ = t["scaler_scale"] ** 2
    scaler.n_features_in_ = clf.n_features_in_ = info["n_features_in"]
    scaler.n_samples_seen_ = 0
    clf.coef_, clf.intercept_ = t["coef"], t["intercept"]
    clf.classes_ = _classes_from_json(info)
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

    def save(self, tensors: str | Path, meta: str | Path) -> None:
        """Write ``tensors`` (safetensors: weights + scaler stats) and ``meta`` (JSON: params,
        classes)."""
        check_is_fitted(self)
        arrays = {k: np.ascontiguousarray(getattr(self, f"{k}_")) for k in _MLP_TENSORS}
        with atomic_path(tensors) as tmp:
            save_file(arrays, str(tmp))
        info = {
            "kind": "interpflow.MLPProbe",
            "params": self.get_params(),
            "n_features_in": int(self.n_features_in_),
            **_classes_to_json(self.classes_),
        }
        write_json(info, meta)

    @classmethod
    def load(cls, tensors: str | Path, meta: str | Path) -> MLPProbe:
        """Restore a probe written by :meth:`save`; its predictions are identical."""
        info = json.loads(Path(meta).read_text())
        probe = cls(**info["params"])
        for k, v in load_file(str(tensors)).items():
            setattr(probe, f"{k}_", v)
        probe.n_features_in_ = info["n_features_in"]
        probe.classes_ = _classes_from_json(info)
        return probe


_MLP_TENSORS = ("mean", "scale", "W1", "b1", "W2", "b2")


# --------------------------------------------------------------------------------------------
# 4. Fit and score
# --------------------------------------------------------------------------------------------


def fit_and_score(
    estimator: Any,
    ds: ProbeDataset,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    classes: np.ndarray,
    seed: int,
    n_bootstrap: int,
    n_permutations: int = 3,
) -> tuple[Any, dict[str, Any]]:
    """Fit a clone of ``estimator`` on the ``train_idx`` rows of ``ds``; score it on the
    ``test_idx`` rows (:func:`~interpflow.metrics.classification_metrics`, probabilities in
    ``classes`` order, bootstrap over prompts) and, when ``n_permutations`` > 0, beside a
    shuffled-label baseline. Returns (the fitted model, its metrics)."""
    model = clone(estimator).fit(ds.X[train_idx], ds.y[train_idx])
    proba = proba_for(model, ds.X[test_idx], classes)
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


__all__ = [
    "ACTIVATION_COLUMNS",
    "MLPProbe",
    "ProbeDataset",
    "binary_auroc",
    "ci95",
    "classification_metrics",
    "expected_calibration_error",
    "export_logreg",
    "fit_and_score",
    "group_bootstrap_indices",
    "group_labels",
    "group_split",
    "load_logreg_export",
    "load_probe_dataset",
    "macro_auroc",
    "majority_baseline",
    "make_logreg",
    "nan_to_none",
    "paired_margin",
    "permute_labels",
    "proba_for",
    "shuffled_label_baseline",
]
