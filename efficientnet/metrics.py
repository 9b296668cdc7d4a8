"""FER validation metrics (accuracy, macro-F1, one-vs-rest macro ROC-AUC), gathered across
ranks with each sample counted once."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness import distributed as du
from harness.tasks import Evaluator


def classification_metrics(preds: np.ndarray, targets: np.ndarray, num_classes: int) -> dict[str, Any]:
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (targets, preds), 1)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    tp = np.diag(confusion)
    recall = np.divide(tp, support, out=np.zeros(num_classes), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(num_classes), where=predicted > 0)
    f1 = np.divide(
        2 * precision * recall, precision + recall, out=np.zeros(num_classes), where=(precision + recall) > 0
    )
    present = support > 0
    return {
        "accuracy": float(tp.sum() / max(1, confusion.sum())),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class_recall": recall.tolist(),
        "confusion": confusion.tolist(),
    }


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their mean rank (scipy's ``rankdata`` default), in
    numpy: scipy.stats costs every validating process a second of import."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts_group = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.flatnonzero(starts_group)
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = ((starts + 1 + ends) / 2.0)[np.cumsum(starts_group) - 1]
    return ranks


def _binary_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of one class: the Mann-Whitney U statistic with
    average ranks for ties (equal to the trapezoidal ROC area); NaN when a score is."""
    if np.isnan(scores).any():
        return float("nan")
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    ranks = average_ranks(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc_ovr(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """One-vs-rest ROC-AUC, macro-averaged over the classes that have both positive
    and negative samples (NaN when none has). ``probabilities``: (N, C)."""
    aucs = []
    for c in range(probabilities.shape[1]):
        positive = targets == c
        if 0 < positive.sum() < len(targets):
            aucs.append(_binary_auc(probabilities[:, c], positive))
    return float(np.mean(aucs)) if aucs else float("nan")


class FEREvaluator(Evaluator):
    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.reset()

    def reset(self) -> None:
        self.index: list[np.ndarray] = []
        self.pred: list[np.ndarray] = []
        self.target: list[np.ndarray] = []
        self.loss: list[np.ndarray] = []
        self.prob: list[np.ndarray] = []

    def process(self, batch: dict[str, Any], outputs: torch.Tensor) -> None:
        logits = outputs.float()
        self.index.append(batch["index"].cpu().numpy())
        self.pred.append(logits.argmax(dim=1).cpu().numpy())
        self.target.append(batch["target"].cpu().numpy())
        self.loss.append(F.cross_entropy(logits, batch["target"], reduction="none").cpu().numpy())
        self.prob.append(logits.softmax(dim=1).cpu().numpy())

    def evaluate(self) -> dict[str, Any]:
        columns = (self.index, self.pred, self.target, self.loss)
        local = [np.concatenate(x) if x else np.zeros(0) for x in columns]
        local.append(np.concatenate(self.prob) if self.prob else np.zeros((0, self.num_classes)))
        parts = du.gather_objects(local)
        index, pred, target, loss, prob = (np.concatenate([p[i] for p in parts]) for i in range(5))
        _, first = np.unique(index, return_index=True)  # each sample once, whatever the sharding
        pred, target, loss = pred[first].astype(np.int64), target[first].astype(np.int64), loss[first]
        metrics = classification_metrics(pred, target, self.num_classes)
        metrics["roc_auc"] = roc_auc_ovr(prob[first], target)
        metrics["loss"] = float(loss.mean()) if len(loss) else float("nan")
        metrics["samples"] = int(len(first))
        return metrics
