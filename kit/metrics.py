"""Competition metrics in one place — what picks the best epoch, what reports and `kit runs` show, what
`kit score` computes — and the decisions tuned on validation that turn probabilities into an answer: per-tag
thresholds (multi-label) and the probability below which the unknown class (Humpback's new_whale) goes first.

Truth is an array of class indices (one label per row; -1 for a label that is not a class) or a 0/1 matrix of
tags (multi-label); probabilities are one row per image, one column per class or tag. NumPy only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

MAP_AT = re.compile(r"map@([1-9][0-9]?)$")  # MAP@K, K = 1..99
TAG_METRICS = {"f1": 1.0, "f2": 2.0}  # mean F-beta over images (Planet's "mean F2 score"): the beta of each
SINGLE_METRICS = ("accuracy", "f1_macro", "log_loss", "auc", "qwk")
METRIC_WORDS = "auto, accuracy, f1_macro, log_loss, auc, qwk, map@K (e.g. map@5), f1 or f2"
INTEGER = re.compile(r"-?[0-9]+$")  # class names qwk can order: integer grades (APTOS' 0-4)
EPS = 1e-15  # probabilities are clipped to EPS..1-EPS inside log loss, as scikit-learn and Kaggle do


def check_metric(name: str) -> str:
    if name in ("auto", *SINGLE_METRICS, *TAG_METRICS) or MAP_AT.match(name):
        return name
    raise ConfigError(f"--metric {name!r}: expected one of {METRIC_WORDS}")


def map_k(metric: str) -> int:
    """K of map@K (0 for other metrics)."""
    found = MAP_AT.match(metric)
    return int(found.group(1)) if found else 0


def lower_is_better(metric: str) -> bool:
    return metric == "log_loss"


@dataclass(frozen=True)
class Decision:
    """How probabilities become the written answer, tuned on validation (or out-of-fold) predictions."""

    thresholds: tuple[float, ...] = ()  # multi-label: one per tag, in class order
    unknown_threshold: float | None = None  # top-k: the unknown class goes first below this top probability

    def to_json(self, class_names: list[str]) -> dict:
        return {"thresholds": dict(zip(class_names, self.thresholds)), "unknown_threshold": self.unknown_threshold}

    @classmethod
    def from_json(cls, values: dict, class_names: list[str]) -> "Decision":
        tags = values.get("thresholds") or {}
        return cls(tuple(float(tags[c]) for c in class_names) if tags else (), values.get("unknown_threshold"))


# ------------------------------------------------------------------------------------ answers from probabilities


def chosen_tags(probs: np.ndarray, thresholds) -> np.ndarray:
    """Tags at or above their threshold; an image none reaches gets its most probable tag (never an empty answer)."""
    chosen = probs >= np.asarray(thresholds if len(thresholds) else [0.5] * probs.shape[1])
    chosen[np.arange(len(probs)), probs.argmax(1)] |= ~chosen.any(1)
    return chosen


def ranked(probs: np.ndarray, k: int, unknown: int | None = None, threshold: float | None = None,
           top: np.ndarray | None = None) -> np.ndarray:
    """The k most probable classes per row, best first; with an unknown class and a threshold, the unknown class
    is ranked by the rule instead of its own probability: first where the best other class is below the threshold,
    else after the classes at or above it. `top`: _top(probs, k + 1), when already computed."""
    top = _top(probs, k + 1) if top is None else top
    if unknown is None or threshold is None:
        return top[:, :k]
    rows = []
    for row, p in zip(top, probs):
        others = [c for c in row if c != unknown][:k]
        place = sum(p[c] >= threshold for c in others)
        rows.append((others[:place] + [unknown] + others[place:])[:k])
    return np.asarray(rows, dtype=int).reshape(len(probs), k)


def _top(probs: np.ndarray, n: int) -> np.ndarray:
    """The n most probable classes per row, best first (ties: the lower index first), without sorting whole rows
    of thousands of classes."""
    n = min(n, probs.shape[1])
    candidates = np.argpartition(-probs, n - 1, axis=1)[:, :n] if probs.shape[1] > n else \
        np.tile(np.arange(probs.shape[1]), (len(probs), 1))
    values = np.take_along_axis(probs, candidates, 1)
    order = np.lexsort((candidates, -values), axis=1)
    return np.take_along_axis(candidates, order, 1)


# ---------------------------------------------------------------------------------------------------- metrics


def accuracy(y: np.ndarray, probs: np.ndarray) -> float:
    return float((probs.argmax(1) == y).mean()) if len(y) else 0.0


def f1_macro(y: np.ndarray, probs: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, probs.argmax(1), average="macro", zero_division=0)) if len(y) else 0.0


def log_loss(truth: np.ndarray, probs: np.ndarray) -> float:
    """Multiclass log loss, or for tags the mean binary cross-entropy over every image and tag."""
    p = np.clip(probs, EPS, 1 - EPS)
    if truth.ndim == 2:
        return float(-np.mean(truth * np.log(p) + (1 - truth) * np.log(1 - p)))
    return float(-np.mean(np.log(p[np.arange(len(truth)), truth]))) if len(truth) else 0.0


def auc(y: np.ndarray, probs: np.ndarray, positive: int) -> float:
    """ROC AUC of P(positive); 0.5 when validation holds one class only (nothing to rank)."""
    from sklearn.metrics import roc_auc_score

    truth = y == positive
    return float(roc_auc_score(truth, probs[:, positive])) if 0 < truth.sum() < len(truth) else 0.5


def mean_auc(y: np.ndarray, probs: np.ndarray) -> float:
    """Mean over classes of one-vs-rest ROC AUC (Plant Pathology's "mean column-wise ROC AUC"); a class absent
    from the truth, or present in every row, has nothing to rank and is left out; 0.5 when none is left."""
    from sklearn.metrics import roc_auc_score

    scores = [roc_auc_score(y == c, probs[:, c]) for c in range(probs.shape[1]) if 0 < (y == c).sum() < len(y)]
    return float(np.mean(scores)) if scores else 0.5


def grades_of(class_names: list[str]) -> list[int] | None:
    """The classes as integer grades, or None when a class name is not an integer (qwk cannot order them)."""
    return [int(c) for c in class_names] if class_names and all(INTEGER.match(c.strip()) for c in class_names) \
        else None


def qwk(y: np.ndarray, predicted: np.ndarray, grades: list[int]) -> float:
    """Quadratic weighted Cohen's kappa of class indices, the classes ordered by their integer grade (so "10"
    comes after "9"), as sklearn's cohen_kappa_score(labels=classes in that order, weights="quadratic"); rows
    whose truth is not a class (-1) are left out; 0.0 when there is no disagreement to expect (one grade)."""
    rank = np.argsort(np.argsort(np.asarray(grades), kind="stable"))  # class index -> position in numeric order
    keep = y >= 0
    a, b, n = rank[y[keep]], rank[predicted[keep]], len(grades)
    observed = np.zeros((n, n))
    np.add.at(observed, (a, b), 1.0)
    expected = np.outer(observed.sum(1), observed.sum(0)) / max(observed.sum(), 1.0)
    weights = (np.arange(n)[:, None] - np.arange(n)[None, :]) ** 2
    chance = float((weights * expected).sum())
    return 1.0 - float((weights * observed).sum()) / chance if chance > 0 else 0.0


def mean_average_precision(y: np.ndarray, guesses: np.ndarray) -> float:
    """MAP@k with one true class per row: 1/rank of the true class among the guesses, 0 when it is not there."""
    hits = guesses == y[:, None]
    return float((hits / np.arange(1, guesses.shape[1] + 1)).sum(1).mean()) if len(y) else 0.0


def f_beta_samples(truth: np.ndarray, chosen: np.ndarray, beta: float) -> float:
    """Mean over images of F-beta between true and chosen tags (an image with neither scores 1)."""
    truth, chosen = truth.astype(bool), chosen.astype(bool)
    tp, fp, fn = (truth & chosen).sum(1), (~truth & chosen).sum(1), (truth & ~chosen).sum(1)
    b2 = beta * beta
    denominator = (1 + b2) * tp + b2 * fn + fp
    scores = np.where(denominator > 0, (1 + b2) * tp / np.maximum(denominator, 1), 1.0)
    return float(scores.mean()) if len(scores) else 0.0


# ---------------------------------------------------------------------------------------------------- tuning


THRESHOLD_GRID = np.round(np.arange(0.02, 0.99, 0.02), 2)


def tune_thresholds(truth: np.ndarray, probs: np.ndarray, beta: float, rounds: int = 2) -> tuple[float, ...]:
    """Per-tag thresholds maximising mean F-beta over images: each tag's threshold in turn, the others held
    (coordinate ascent from 0.5, as Planet's winners tuned theirs); a tie keeps the threshold nearest 0.5."""
    thresholds = np.full(probs.shape[1], 0.5)
    for _ in range(rounds):
        for tag in range(probs.shape[1]):
            scores = []
            for t in THRESHOLD_GRID:
                thresholds[tag] = t
                scores.append(f_beta_samples(truth, chosen_tags(probs, thresholds), beta))
            best = np.flatnonzero(np.isclose(scores, max(scores)))
            thresholds[tag] = THRESHOLD_GRID[best[np.argmin(np.abs(THRESHOLD_GRID[best] - 0.5))]]
    return tuple(float(t) for t in thresholds)


def tune_unknown(y: np.ndarray, probs: np.ndarray, k: int, unknown: int) -> float | None:
    """The top-probability threshold below which the unknown class goes first, chosen for MAP@k on validation;
    None when ranking the unknown class by its own probability scores at least as well."""
    top = _top(probs, k + 1)
    best, chosen = mean_average_precision(y, top[:, :k]), None
    for t in np.unique(np.quantile(probs.max(1), np.linspace(0.02, 0.98, 49))):
        score = mean_average_precision(y, ranked(probs, k, unknown, float(t), top))
        if score > best:
            best, chosen = score, float(t)
    return chosen


# ------------------------------------------------------------------------------------------- one entry point


def evaluate(metric: str, truth: np.ndarray, probs: np.ndarray, positive: int | None = None,
             unknown: int | None = None, decision: Decision | None = None,
             grades: list[int] | None = None) -> tuple[float, Decision]:
    """The metric's value on these predictions, with the decision it was scored under (tuned here when not
    given): per-tag thresholds for f1/f2, the unknown class' threshold for map@K with an unknown class.
    grades: the classes as integers (qwk orders them by it)."""
    if metric in TAG_METRICS:
        if truth.ndim != 2:
            raise ConfigError(f"--metric {metric}: scores tags (multi-label); this target has one label per image")
        thresholds = decision.thresholds if decision and decision.thresholds else \
            tune_thresholds(truth, probs, TAG_METRICS[metric])
        return f_beta_samples(truth, chosen_tags(probs, thresholds), TAG_METRICS[metric]), Decision(thresholds)
    if metric == "log_loss":
        return log_loss(truth, probs), decision or Decision()
    if truth.ndim == 2:
        raise ConfigError(f"--metric {metric}: the target is tags (multi-label); use f1, f2 or log_loss")
    if metric == "auc":  # P(positive) of a two-class target, else the mean one-vs-rest AUC over classes
        if positive is not None and probs.shape[1] == 2:
            return auc(truth, probs, positive), decision or Decision()
        return mean_auc(truth, probs), decision or Decision()
    if metric == "qwk":  # the predicted grade is the most probable one: no thresholds on an expected grade
        if grades is None or len(grades) != probs.shape[1]:
            raise ConfigError("--metric qwk: scores integer grades; the class names are not all integers")
        return qwk(truth, probs.argmax(1), grades), decision or Decision()
    k = map_k(metric)
    if k:
        threshold = decision.unknown_threshold if decision else \
            (tune_unknown(truth, probs, k, unknown) if unknown is not None else None)
        return mean_average_precision(truth, ranked(probs, k, unknown, threshold)), Decision((), threshold)
    if metric == "f1_macro":
        return f1_macro(truth, probs), decision or Decision()
    return accuracy(truth, probs), decision or Decision()


def run_scores(metric: str, truth: np.ndarray, probs: np.ndarray, positive: int | None = None,
               unknown: int | None = None, p_true: np.ndarray | None = None,
               grades: list[int] | None = None) -> tuple[dict, Decision]:
    """A run's validation numbers: the competition metric (under its tuned decision), the loss, and accuracy
    (exact tag sets for multi-label). p_true: each row's probability of its true class, when `probs` holds only
    each row's top classes (thousands of classes)."""
    value, decision = evaluate(metric, truth, probs, positive, unknown, grades=grades)
    if truth.ndim == 2:
        if not decision.thresholds:  # written tags need thresholds whatever the metric: F1's
            decision = Decision(tune_thresholds(truth, probs, 1.0))
        exact = float((chosen_tags(probs, decision.thresholds) == truth.astype(bool)).all(1).mean())
        loss = log_loss(truth, probs)
    else:
        exact = accuracy(truth, probs)
        loss = float(-np.mean(np.log(np.clip(p_true, EPS, 1)))) if p_true is not None else log_loss(truth, probs)
    return {"metric": metric, "val_score": value, "val_accuracy": exact, "val_loss": loss,
            f"val_{metric}": value}, decision
